// Instantiations of the RMSNorm kernels for __half inputs.
#include "rms_norm_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_RMS_NORM(__half)
}  // namespace comba::nn::cuda
