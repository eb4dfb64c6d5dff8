// Instantiations of the decode steps (fp32 and bf16 state) for __nv_bfloat16 inputs.
#include "recurrent_decode_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __nv_bfloat16
COMBA_INSTANTIATE_RECURRENT_DECODE()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
