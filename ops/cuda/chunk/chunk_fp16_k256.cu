// Instantiations of the chunked kernels for __half inputs, key tile 256.
#include "chunk_launch.cuh"

namespace comba::cuda::chunk {
COMBA_INSTANTIATE_CHUNK(__half, 256)
}  // namespace comba::cuda::chunk
