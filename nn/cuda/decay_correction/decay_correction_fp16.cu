// Instantiations of the decay / correction kernels for __half inputs.
#include "decay_correction_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_DECAY_CORRECTION(__half)
}  // namespace comba::nn::cuda
