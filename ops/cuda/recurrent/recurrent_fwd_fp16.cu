// Instantiations of the fused recurrent forward for __half inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_FWD(__half)
}  // namespace comba::cuda
