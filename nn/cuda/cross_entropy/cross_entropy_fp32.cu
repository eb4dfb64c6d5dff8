// Instantiations of the cross-entropy row kernels for float logits.
#include "cross_entropy_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_CROSS_ENTROPY(float)
}  // namespace comba::nn::cuda
