// Arguments of the SwiGLU kernels, filled once by the host launcher
// (nn/src/launch/swiglu_cuda.cpp). Plain data: no torch, shared by host and device.
//
//   y = silu(a) * b,  da = dy b s (1 + a (1 - s)),  db = dy a s,  s = sigmoid(a)
// elementwise over [rows, dim]; fp32 math, everything in one element type. Rows may be
// strided (unit column stride), so that a and b can be the two halves of one [rows, 2 dim]
// GEMM output and da, db the two halves of its gradient.
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct SwiGLUParams {
  const void* a = nullptr;  // [rows, dim] with row stride a_stride
  const void* b = nullptr;  // [rows, dim] with row stride b_stride
  void* y = nullptr;        // [rows, dim] contiguous: the forward's output; in the backward,
                            // when non-null, the output recomputed beside the gradients (so a
                            // following GEMM's weight gradient needs no kept copy of it)

  const void* dy = nullptr;  // [rows, dim] contiguous (backward)
  void* da = nullptr;        // [rows, dim] with row stride da_stride
  void* db = nullptr;        // [rows, dim] with row stride db_stride

  int64_t rows = 0;
  int64_t dim = 0;
  int64_t a_stride = 0, b_stride = 0, da_stride = 0, db_stride = 0;  // in elements
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// The vectorised form needs dim and every row stride divisible by 16 / sizeof(element) and
// 16-byte aligned pointers; `vectorized` false takes one element per access.
int launch_swiglu_fwd(const SwiGLUParams& params, bool vectorized, void* stream);
int launch_swiglu_bwd(const SwiGLUParams& params, bool vectorized, void* stream);

}  // namespace comba::nn::cuda
