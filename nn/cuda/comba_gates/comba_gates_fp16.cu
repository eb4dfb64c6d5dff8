// Instantiations of the Comba gate kernels for __half inputs.
#include "comba_gates_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_COMBA_GATES(__half)
}  // namespace comba::nn::cuda
