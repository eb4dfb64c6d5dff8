// Instantiations of the fused recurrent backward for __half inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_BWD(__half)
}  // namespace comba::cuda
