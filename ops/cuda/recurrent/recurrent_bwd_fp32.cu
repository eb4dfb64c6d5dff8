// Instantiations of the fused recurrent backward for float inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT float
COMBA_INSTANTIATE_RECURRENT_BWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
