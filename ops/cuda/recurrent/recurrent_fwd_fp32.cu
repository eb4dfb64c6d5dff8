// Instantiations of the fused recurrent forward for float inputs.
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT float
COMBA_INSTANTIATE_RECURRENT_FWD()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
