// Instantiations of the SwiGLU kernels for float inputs.
#include "swiglu_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_SWIGLU(float)
}  // namespace comba::nn::cuda
