// Instantiations of the SwiGLU kernels for __nv_bfloat16 inputs.
#include "swiglu_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SWIGLU(__nv_bfloat16)
}  // namespace comba::nn::cuda
