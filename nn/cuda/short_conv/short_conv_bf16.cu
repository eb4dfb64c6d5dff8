// Instantiations of the short-convolution kernels for __nv_bfloat16 inputs.
#include "short_conv_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SHORT_CONV(__nv_bfloat16)
}  // namespace comba::nn::cuda
