// Instantiations of the fused recurrent forward for float inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
COMBA_INSTANTIATE_RECURRENT_FWD(float)
}  // namespace comba::cuda
