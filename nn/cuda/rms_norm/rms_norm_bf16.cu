// Instantiations of the RMSNorm kernels for __nv_bfloat16 inputs.
#include "rms_norm_kernel.cuh"

namespace comba::nn::cuda {
COMBA_INSTANTIATE_RMS_NORM(__nv_bfloat16)
}  // namespace comba::nn::cuda
