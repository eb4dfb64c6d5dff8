// Instantiations of the fused recurrent forward (and the decode step) for __half inputs.
#include "recurrent_decode_kernel.cuh"
#include "recurrent_fwd_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __half
COMBA_INSTANTIATE_RECURRENT_FWD()
COMBA_INSTANTIATE_RECURRENT_DECODE()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
