// Instantiations of the Comba gate kernels for __nv_bfloat16 inputs.
#include "comba_gates_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_COMBA_GATES(__nv_bfloat16)
}  // namespace comba::nn::cuda
