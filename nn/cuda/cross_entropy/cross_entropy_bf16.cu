// Instantiations of the cross-entropy row kernels for __nv_bfloat16 logits.
#include "cross_entropy_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_CROSS_ENTROPY(__nv_bfloat16)
}  // namespace comba::nn::cuda
