// Instantiations of the chunked kernels for __half inputs, key tile 64.
#include "chunk_launch.cuh"

namespace comba::cuda::chunk {
COMBA_INSTANTIATE_CHUNK(__half, 64)
}  // namespace comba::cuda::chunk
