// Arguments of the (gated) RMSNorm kernels, filled once by the host launcher
// (nn/src/launch/rms_norm_cuda.cpp). Plain data: no torch, shared by host and device.
//
//   y = x * rstd * weight * sigmoid(gate),  rstd = 1 / sqrt(mean(x^2) + eps)
// over the last dim of [rows, dim] (no gate: plain RMSNorm); fp32 math, y in x's dtype.
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct RMSNormParams {
  const void* x = nullptr;     // [rows, dim], element type `dtype`
  const void* gate = nullptr;  // [rows, dim] in `dtype` (or fp32 when gate_fp32), or null
  bool gate_fp32 = false;
  const float* weight = nullptr;  // [dim] fp32
  void* y = nullptr;              // [rows, dim], `dtype`: the forward's output; in the backward,
                                  // when non-null, the output recomputed beside the gradients
  float* rstd = nullptr;          // [rows]: written by the forward, read by the backward

  const void* dy = nullptr;    // [rows, dim], `dtype`
  void* dx = nullptr;          // [rows, dim], `dtype`
  void* d_gate = nullptr;      // [rows, dim] like gate (null without gate)
  float* dw_partial = nullptr; // [rms_norm_bwd_partial_rows(*this, vectorized), dim]: one row per block
  float* dw = nullptr;         // [dim]: dw_partial summed in a fixed order

  int64_t rows = 0;
  int dim = 0;
  float eps = 1e-6f;
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// The vectorised form needs dim % (16 / sizeof(element)) == 0 and 16-byte aligned
// tensors; `vectorized` false takes one element per lane access.
int launch_rms_norm_fwd(const RMSNormParams& params, bool vectorized, void* stream);
int launch_rms_norm_bwd(const RMSNormParams& params, bool vectorized, void* stream);

// Rows of dw_partial launch_rms_norm_bwd writes (one per block of the kernel it picks for
// params.dtype, params.dim, params.rows and `vectorized`).
int64_t rms_norm_bwd_partial_rows(const RMSNormParams& params, bool vectorized);

}  // namespace comba::nn::cuda
