// Instantiations of the decode steps (fp32 and bf16 state) for float inputs.
#include "recurrent_decode_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT float
COMBA_INSTANTIATE_RECURRENT_DECODE()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
