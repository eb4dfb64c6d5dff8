// Instantiations of the RMSNorm kernels for float inputs.
#include "rms_norm_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_RMS_NORM(float)
}  // namespace comba::nn::cuda
