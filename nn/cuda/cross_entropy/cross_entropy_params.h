// Arguments of the cross-entropy row kernels, filled once by the host launcher
// (nn/src/launch/cross_entropy_cuda.cpp). Plain data: no torch, shared by host and device.
//
// Per row r of logits x [rows, vocab] with target t = targets[r]:
//   lse = log sum_j exp(x_j),   row_loss = lse - x_t,
//   d row_loss / d x_j = exp(x_j - lse) - [j == t].
// A row whose target is ignore_index counts nothing (loss 0, gradient 0); a target outside
// [0, vocab) gives NaN (loss and gradient), never a device fault.
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct CrossEntropyParams {
  void* logits = nullptr;             // [rows, vocab] `dtype`, contiguous; overwritten by the
                                      // gradient when `grad` (the logits are read first)
  const int64_t* targets = nullptr;   // [rows]
  float* row_loss = nullptr;          // [rows]
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t ignore_index = -100;
  bool grad = false;
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// The vectorised form needs vocab divisible by 16 / sizeof(element) and 16-byte aligned
// logits; `vectorized` false takes one element per access.
int launch_cross_entropy_rows(const CrossEntropyParams& params, bool vectorized, void* stream);

}  // namespace comba::nn::cuda
