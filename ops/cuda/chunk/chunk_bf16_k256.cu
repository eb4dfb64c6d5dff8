// Instantiations of the chunked kernels for __nv_bfloat16 inputs, key tile 256.
#include "chunk_launch.cuh"

namespace comba::cuda::chunk {
COMBA_INSTANTIATE_CHUNK(__nv_bfloat16, 256)
}  // namespace comba::cuda::chunk
