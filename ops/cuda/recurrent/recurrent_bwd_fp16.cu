// Instantiations of the fused recurrent backward for __half inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __half
COMBA_INSTANTIATE_RECURRENT_BWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
