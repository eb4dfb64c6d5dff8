// Instantiations of the cross-entropy row kernels for __half logits.
#include "cross_entropy_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_CROSS_ENTROPY(__half)
}  // namespace comba::nn::cuda
