// Instantiations of the fused recurrent backward for __nv_bfloat16 inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __nv_bfloat16
COMBA_INSTANTIATE_RECURRENT_BWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
