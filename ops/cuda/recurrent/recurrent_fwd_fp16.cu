// Instantiations of the fused recurrent forward for __half inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __half
COMBA_INSTANTIATE_RECURRENT_FWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
