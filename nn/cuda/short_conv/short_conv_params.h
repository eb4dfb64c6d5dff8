// Arguments of the causal depthwise short-convolution kernels, filled once by the host
// launcher (nn/src/launch/short_conv_cuda.cpp). Plain data: no torch, shared by host and
// device (and by the CPU emulation in the tests).
//
// Tokens are rows of a [tokens, C] channels-last matrix: B * T rows of dense sequences of
// length T, or the packed sequences of cu_seqlens (B = 1). Sequence n reads its own
// carried inputs (initial_state[n], oldest first) before its first token, never the
// previous sequence's tokens.
#pragma once
#include <cstdint>

#include "comba/core/element_type.h"

namespace comba::nn::cuda {

struct ShortConvParams {
  // Forward inputs and outputs (element type `dtype` unless noted), contiguous.
  const void* x = nullptr;              // [tokens, C]
  const float* weight = nullptr;        // [C, taps] fp32
  const float* bias = nullptr;          // [C] fp32, or null
  const void* initial_state = nullptr;  // [N, C, taps - 1], or null (zeros)
  void* y = nullptr;                    // [tokens, C]
  void* final_state = nullptr;          // [N, C, taps - 1], or null (not wanted)

  // Backward (dy given; dx, partial sums and d_initial_state written).
  const void* dy = nullptr;             // [tokens, C]
  const void* d_final_state = nullptr;  // [N, C, taps - 1], or null (zero)
  void* dx = nullptr;                   // [tokens, C]
  float* d_initial_state = nullptr;     // [N, C, taps - 1] fp32, or null (not wanted)
  // Per token-block partial sums of the weight and bias grads, [token_blocks, kMaxTaps + 1, C]:
  // row j < kMaxTaps is the tap aligned to the window's end (see ShortConvTraits), row
  // kMaxTaps the bias. Reduced in a fixed order afterwards (deterministic).
  float* dw_partial = nullptr;
  float* dw_total = nullptr;  // [kMaxTaps + 1, C]: dw_partial summed over token blocks

  const int64_t* cu_seqlens = nullptr;  // [N + 1] on the device, or null (dense)
  int64_t tokens = 0;                   // rows of x
  int64_t seq_len = 0;                  // T of dense sequences (unused with cu_seqlens)
  int num_seqs = 0;                     // N
  int channels = 0;                     // C
  int taps = 0;                         // kernel size, 1..kMaxTaps
  bool silu = true;
  core::ElementType dtype = core::ElementType::kFloat32;
};

// Launch on `stream` (a cudaStream_t); return the launch's cudaError_t (0 = success).
// The vectorised form needs C % ShortConvTraits::kVec == 0 and 16-byte aligned rows;
// `vectorized` false takes one channel per thread.
int launch_short_conv_fwd(const ShortConvParams& params, bool vectorized, void* stream);
int launch_short_conv_bwd(const ShortConvParams& params, bool vectorized, void* stream);


}  // namespace comba::nn::cuda
