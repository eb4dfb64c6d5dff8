// Launch error reporting of the host-side CUDA launchers (ops and nn). The kernel families
// return their launch status as an int so that their headers carry no CUDA types; this
// turns a failed one into an error naming the operation and the kernel. CUDA builds only.
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

namespace comba::core {

// Throws "<op>: CUDA kernel (<kernel>) launch failed: <CUDA error>" when err != 0.
inline void check_launch(int err, const char* op, const char* kernel) {
  TORCH_CHECK(err == 0, op, ": CUDA kernel (", kernel, ") launch failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(err)));
}

}  // namespace comba::core
