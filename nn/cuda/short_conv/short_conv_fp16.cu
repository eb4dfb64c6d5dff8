// Instantiations of the short-convolution kernels for __half inputs.
#include "short_conv_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SHORT_CONV(__half)
}  // namespace comba::nn::cuda
