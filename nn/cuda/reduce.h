// Deterministic column sums of a [rows, cols] fp32 matrix: the second stage of every
// weight-grad reduction in nn/cuda (kernels write per-block partial rows, this sums them
// in a fixed order, so results are bitwise reproducible run to run). No torch.
#pragma once
#include <cstdint>

namespace comba::nn::cuda {

// out[c] = sum over r of in[r * cols + c], in the same order on every call. Launched on
// `stream` (a cudaStream_t); returns the launch's cudaError_t.
int launch_column_sum(const float* in, int64_t rows, int64_t cols, float* out, void* stream);

}  // namespace comba::nn::cuda
