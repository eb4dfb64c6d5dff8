// c10d::ProcessGroupNCCL for one rank, behind a function so that only nccl_backend.cpp sees
// the NCCL headers (compiled when CMake finds nccl.h matching torch's NCCL; COMBA_WITH_NCCL).
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace comba::train {

// NVLink multicast is off unless the environment says otherwise: NCCL_NVLS_ENABLE=0,
// TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1 are set when unset.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    const c10::Device& device,
                                                    std::chrono::milliseconds timeout);

}  // namespace comba::train
