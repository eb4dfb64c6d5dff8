// Instantiations of the fused recurrent backward for float inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_BWD(float)
}  // namespace comba::cuda
