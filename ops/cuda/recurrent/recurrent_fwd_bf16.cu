// Instantiations of the fused recurrent forward for __nv_bfloat16 inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __nv_bfloat16
COMBA_INSTANTIATE_RECURRENT_FWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
