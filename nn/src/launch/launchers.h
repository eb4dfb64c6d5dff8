// Host side of the nn CUDA kernels (nn/cuda/): torch tensors in, kernel parameters filled
// in one place, launch on the current stream, errors checked. Compiled only when the build
// has CUDA (COMBA_WITH_CUDA). Arguments arrive checked by the public functions
// (short_convolution, rms_norm, swiglu, comba_gates); these only make layouts kernel-ready.
#pragma once
#include <ATen/ATen.h>

namespace comba::nn::detail::cuda {

// ---- causal depthwise short convolution on [B, T, C] (channels last) ----

// Whether the kernels take this input: a CUDA tensor of float32/float16/bfloat16 and
// 1 <= taps <= kMaxTaps.
bool short_conv_supported(const at::Tensor& x, int64_t taps);

struct ShortConvFwd {
  at::Tensor y;            // [B, T, C], x's dtype
  at::Tensor final_state;  // [N, C, taps - 1], x's dtype
};

// x [B, T, C] contiguous; weight [C, taps] fp32; bias [C] fp32 or undefined;
// initial_state [N, C, taps - 1] in x's dtype or undefined; cu_seqlens int64 [N + 1] on
// x's device or undefined.
ShortConvFwd short_conv_fwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& initial_state, const at::Tensor& cu_seqlens, bool silu);

struct ShortConvGrads {
  at::Tensor x;              // [B, T, C], x's dtype
  at::Tensor weight;         // [C, taps] fp32
  at::Tensor bias;           // [C] fp32
  at::Tensor initial_state;  // [N, C, taps - 1] fp32; undefined unless wanted
};

// Same arguments as the forward, plus dy [B, T, C] and d_final_state [N, C, taps - 1]
// (both in x's dtype; d_final_state may be undefined = zero).
ShortConvGrads short_conv_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& initial_state, const at::Tensor& cu_seqlens, bool silu,
                              const at::Tensor& dy, const at::Tensor& d_final_state,
                              bool want_initial_state_grad);

// ---- RMSNorm / gated RMSNorm over the last dim ----

// Whether the kernels take this input: CUDA, float32/float16/bfloat16, dim <= kMaxDim,
// and a gate (if any) in x's dtype or float32.
bool rms_norm_supported(const at::Tensor& x, const at::Tensor& gate);

struct RMSNormFwd {
  at::Tensor y;     // [rows, dim], x's dtype
  at::Tensor rstd;  // [rows] fp32
};

// x [rows, dim] contiguous; weight [dim] fp32; gate [rows, dim] contiguous or undefined.
RMSNormFwd rms_norm_fwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& gate, double eps);

struct RMSNormGrads {
  at::Tensor x;       // [rows, dim], x's dtype
  at::Tensor weight;  // [dim] fp32
  at::Tensor gate;    // [rows, dim], gate's dtype; undefined without gate
  at::Tensor y;       // [rows, dim], x's dtype: the forward's output, recomputed (when asked)
};

RMSNormGrads rms_norm_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& gate,
                          const at::Tensor& rstd, const at::Tensor& dy, bool recompute_output = false);

// ---- SwiGLU y = silu(a) * b ----

// Whether the kernels take these inputs: CUDA tensors of one dtype among
// float32/float16/bfloat16, last dim >= 1.
bool swiglu_supported(const at::Tensor& a, const at::Tensor& b);

// a, b [rows, dim] with unit column stride (rows may be strided, e.g. the two halves of one
// [rows, 2 dim] tensor) -> y [rows, dim] contiguous, a's dtype.
at::Tensor swiglu_fwd(const at::Tensor& a, const at::Tensor& b);

// Writes da and db ([rows, dim], unit column stride, a's dtype: e.g. the two halves of one
// [rows, 2 dim] gradient) from dy [rows, dim] contiguous in a's dtype; and, when y is
// defined ([rows, dim] contiguous), the forward's output recomputed.
void swiglu_bwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& dy, const at::Tensor& da,
                const at::Tensor& db, const at::Tensor& y = at::Tensor());

// ---- Comba gates g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b) ----

// Whether the kernels take these inputs: CUDA a and b of one dtype among
// float32/float16/bfloat16, 1 <= heads (last dim) <= kMaxHeads.
bool comba_gates_supported(const at::Tensor& a, const at::Tensor& b);

struct CombaGatesFwd {
  at::Tensor g;     // [rows, heads] fp32
  at::Tensor beta;  // [rows, heads] fp32
};

// a, b [rows, heads] contiguous; A_log, dt_bias [heads] fp32 contiguous.
CombaGatesFwd comba_gates_fwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                              const at::Tensor& dt_bias);

struct CombaGatesGrads {
  at::Tensor a, b;            // [rows, heads], a's dtype
  at::Tensor A_log, dt_bias;  // [heads] fp32, summed over rows in a fixed order
};

// Same arguments as the forward, plus dg and dbeta [rows, heads] fp32 contiguous (either
// may be undefined = zero).
CombaGatesGrads comba_gates_bwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& A_log,
                                const at::Tensor& dt_bias, const at::Tensor& dg, const at::Tensor& dbeta);

// ---- the layer's inner decay and output correction: p = k sigmoid(decay), q' = q - D p ----

// Whether the kernels take these inputs: CUDA q, k of one dtype among float32/float16/
// bfloat16, [..., heads, dim] with heads x dim small enough for the backward's block.
bool decay_correction_supported(const at::Tensor& q, const at::Tensor& k);

struct DecayCorrectionFwd {
  at::Tensor q;  // q' [rows, heads, dim], k's dtype
  at::Tensor p;  // [rows, heads, dim], k's dtype
};

// q, k [rows, heads, dim] contiguous; decay, D [heads] fp32 contiguous.
DecayCorrectionFwd decay_correction_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& decay,
                                        const at::Tensor& D);

struct DecayCorrectionGrads {
  at::Tensor k;         // [rows, heads, dim], k's dtype: through p only (dq = dq' needs no kernel)
  at::Tensor D, decay;  // [heads] fp32, summed over rows in a fixed order
};

// dq (of q') and dp [rows, heads, dim] contiguous in k's dtype, either undefined (= zero).
DecayCorrectionGrads decay_correction_bwd(const at::Tensor& k, const at::Tensor& decay, const at::Tensor& D,
                                          const at::Tensor& dq, const at::Tensor& dp);

// ---- cross entropy over rows of logits (the sliced linear + cross entropy) ----

// Whether the row kernels take these logits: a CUDA [rows, vocab] tensor of float32/
// float16/bfloat16 with fewer than 2^31 rows.
bool cross_entropy_rows_supported(const at::Tensor& logits);

// Writes row_loss [rows] fp32 (lse - logit of the target; 0 for ignore_index; NaN for a
// target outside [0, vocab)) and, when `grad`, overwrites logits with the gradient of the
// summed loss (softmax - one_hot(target), zero on ignored rows). logits contiguous,
// targets int64 [rows].
void cross_entropy_rows(const at::Tensor& logits, const at::Tensor& targets, int64_t ignore_index,
                        const at::Tensor& row_loss, bool grad);

}  // namespace comba::nn::detail::cuda
