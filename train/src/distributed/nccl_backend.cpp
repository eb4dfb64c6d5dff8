// The NCCL process group (see nccl_backend.h).
#include "nccl_backend.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdlib>

namespace comba::train {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    const c10::Device& device,
                                                    std::chrono::milliseconds timeout) {
  // NVLink multicast (NVLS / SHARP) stays off unless the user turns it on: on shared
  // machines a program using it can take the host's GPUs out of service, and ours require
  // it off. Set before the communicator exists (NCCL and NVSHMEM read them at init).
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", /*overwrite=*/0);
  setenv("NVSHMEM_DISABLE_NVLS", "1", /*overwrite=*/0);
  c10::cuda::set_device(device.index());
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  // Bind the group to this rank's GPU and create the communicator now, so that a broken
  // setup fails here rather than inside the first backward pass.
  group->setBoundDeviceId(device);
  group->eagerConnectSingleDevice(device);
  return group;
}

}  // namespace comba::train
