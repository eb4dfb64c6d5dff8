// Peak memory (see memory_stats.h). CUDA statistics only in CUDA builds.
#include "comba/train/metrics/memory_stats.h"

#include <sys/resource.h>

#ifdef COMBA_TRAIN_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace comba::train {

#ifdef COMBA_TRAIN_CUDA
namespace {
// "cuda" without an index means the current device (the allocator wants a real index).
c10::DeviceIndex device_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
}  // namespace
#endif

double peak_memory_bytes(const torch::Device& device) {
#ifdef COMBA_TRAIN_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_index(device));
    return static_cast<double>(stats.allocated_bytes[0].peak);  // [0]: all pools together
  }
#endif
  (void)device;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

void reset_peak_memory(const torch::Device& device) {
#ifdef COMBA_TRAIN_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device_index(device));
#endif
  (void)device;
}

}  // namespace comba::train
