// Arguments of the Comba gate kernels, filled once by the host launcher
// (nn/src/launch/comba_gates_cuda.cpp). Plain data: no torch, shared by host and device.
//
// Over [rows, heads] (rows = B * T), with h the column:
//   g = -exp(A_log[h]) * softplus(a + dt_bias[h]),  beta = sigmoid(b)
// softplus as torch's (beta 1, threshold 20: z > 20 gives z). fp32 math and outputs.
// Backward, with z = a + dt_bias[h]:
//   da = dg * (-exp(A_log[h])) * softplus'(z),  db = dbeta * beta (1 - beta),
//   dA_log[h] = sum_rows dg * g,  ddt_bias[h] = sum_rows da (in fp32, before rounding da).
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct CombaGatesParams {
  const void* a = nullptr;         // [rows, heads] contiguous, element type `dtype`
  const void* b = nullptr;         // [rows, heads] contiguous, `dtype`
  const float* A_log = nullptr;    // [heads] fp32
  const float* dt_bias = nullptr;  // [heads] fp32
  float* g = nullptr;              // [rows, heads] fp32 (forward)
  float* beta = nullptr;           // [rows, heads] fp32 (forward)

  const float* dg = nullptr;     // [rows, heads] fp32, or null (= zero)
  const float* dbeta = nullptr;  // [rows, heads] fp32, or null (= zero)
  void* da = nullptr;            // [rows, heads], `dtype`
  void* db = nullptr;            // [rows, heads], `dtype`
  float* partial = nullptr;      // [comba_gates_bwd_blocks(rows, heads), 2 * heads]
  float* d_params = nullptr;     // [2 * heads]: dA_log then ddt_bias (partial summed in a fixed order)

  int64_t rows = 0;
  int heads = 0;
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// The vectorised forward needs rows * heads divisible by CombaGatesTraits::kVec and
// pointers aligned to kVec elements; `vectorized` false takes one element per access.
// The backward needs heads <= CombaGatesTraits::kMaxHeads.
int launch_comba_gates_fwd(const CombaGatesParams& params, bool vectorized, void* stream);
int launch_comba_gates_bwd(const CombaGatesParams& params, void* stream);

}  // namespace comba::nn::cuda
