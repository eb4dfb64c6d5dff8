// Instantiations of the fused recurrent forward for __nv_bfloat16 inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_FWD(__nv_bfloat16)
}  // namespace comba::cuda
