// Instantiations of the chunked kernels for __nv_bfloat16 inputs, key tile 128.
#include "chunk_launch.cuh"

namespace comba::cuda::chunk {
COMBA_INSTANTIATE_CHUNK(__nv_bfloat16, 128)
}  // namespace comba::cuda::chunk
