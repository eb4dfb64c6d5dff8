// Instantiations of the short-convolution kernels for float inputs.
#include "short_conv_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SHORT_CONV(float)
}  // namespace comba::nn::cuda
