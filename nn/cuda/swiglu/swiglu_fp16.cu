// Instantiations of the SwiGLU kernels for __half inputs.
#include "swiglu_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SWIGLU(__half)
}  // namespace comba::nn::cuda
