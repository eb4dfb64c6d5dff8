// Instantiations of the fused recurrent backward for __nv_bfloat16 inputs.
#include "recurrent_bwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_BWD(__nv_bfloat16)
}  // namespace comba::cuda
