// Instantiations of the decode steps (per-matrix and persistent; fp32 and bf16 state) for __nv_bfloat16 inputs.
#include "recurrent_decode_kernel.cuh"
#include "recurrent_decode_persistent_kernel.cuh"

namespace comba::cuda {
#define COMBA_ELEMENT __nv_bfloat16
COMBA_INSTANTIATE_RECURRENT_DECODE()
COMBA_INSTANTIATE_RECURRENT_DECODE_PERSISTENT()
#undef COMBA_ELEMENT
}  // namespace comba::cuda
