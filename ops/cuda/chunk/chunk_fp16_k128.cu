// Instantiations of the chunked kernels for __half inputs, key tile 128.
#include "chunk_launch.cuh"

namespace comba::cuda::chunk {
COMBA_INSTANTIATE_CHUNK(__half, 128)
}  // namespace comba::cuda::chunk
