// Instantiations of the decay / correction kernels for float inputs.
#include "decay_correction_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_DECAY_CORRECTION(float)
}  // namespace comba::nn::cuda
