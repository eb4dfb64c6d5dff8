// Instantiations of the Comba gate kernels for float inputs.
#include "comba_gates_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_COMBA_GATES(float)
}  // namespace comba::nn::cuda
