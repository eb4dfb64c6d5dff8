// Instantiations of the decay / correction kernels for __nv_bfloat16 inputs.
#include "decay_correction_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_DECAY_CORRECTION(__nv_bfloat16)
}  // namespace comba::nn::cuda
