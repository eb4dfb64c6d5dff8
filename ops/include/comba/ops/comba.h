// The Comba operator: a gated delta rule with state-feedback correction (SPEC section 1).
//
// Per sequence and value head, with S_0 = initial_state (or zeros), S in R^{K x V}:
//   x <- x / sqrt(sum(x*x) + 1e-6) for x in q_t, k_t, p_t      (use_qk_l2norm_in_kernel)
//   S_t = exp(g_t) * S_{t-1} + beta_t * k_t (v_t - S_{t-1}^T p_t)^T
//   o_t = S_t^T (scale * q_t)
//
// Shapes (fla's): q, k, p [B, T, H, K]; v [B, T, HV, V]; g, beta [B, T, HV];
// state [N, HV, K, V] fp32 (fp64 for fp64 inputs); output o [B, T, HV, V] in q's dtype.
// HV must be a multiple of H: value head j reads query/key head j / (HV / H).
// With cu_seqlens (int64 [N+1], 0 = cu[0] <= ... <= cu[N] = T) B must be 1 and each
// segment is an independent sequence. Both functions are differentiable in every
// floating input; gradients come back in each input's dtype. On CUDA the backward frees
// the forward's saved kernel workspace as it goes; a graph kept with retain_graph can be
// walked again (that second backward recomputes the workspace: same gradients, slower).
// Double backward (create_graph=true through the operator) is not supported: an error.
//
// g <= 0 is the log decay. g = -inf is allowed (a hard reset: exp(g) = 0, the old state
// is dropped; the update's correction still reads it) and gives finite results and
// gradients in both forms, g's gradient 0 there. chunk_comba takes g below kMinLogDecay
// as kMinLogDecay (see there). g = +inf or NaN is not checked (that would cost a device
// sync per call): the results are then non-finite.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <tuple>

namespace comba {

// What the chunked form's training forward keeps for its backward, from fastest to
// smallest. Each gives the gradients of the same function (to the kernels' rounding).
enum class KeptWorkspace {
  // The per-chunk operands (W, Mqk, T), V' = U - W S and the per-chunk states: the
  // backward only reads them. 16-bit values per token and value head: K + 128 + V + K V / 64
  // (plus 16 of row padding in W and Mqk on the CUDA kernels).
  kAll,
  // The per-chunk states alone (K V / 64 values per token and value head; half of kAll at
  // K = 128, V = 256) and, for packed sequences, the chunk numbering (no host read of
  // cu_seqlens in the backward): the backward runs the chunk preparation again and forms
  // V' from the states, every chunk in parallel, without repeating the serial scan.
  kStates,
  // Nothing: the backward runs the whole forward again.
  kNone,
};

struct CombaOptions {
  // Multiplies q; defaults to K^-0.5.
  TORCH_ARG(c10::optional<double>, scale) = c10::nullopt;
  // [N, HV, K, V] float32 (float64 for float64 inputs); undefined means zeros.
  TORCH_ARG(at::Tensor, initial_state);
  // Return the state after the last token of each sequence (else the second result is
  // an undefined tensor).
  TORCH_ARG(bool, output_final_state) = false;
  // L2-normalise q, k and p per token and head inside the operator.
  TORCH_ARG(bool, use_qk_l2norm_in_kernel) = false;
  // int64 [N + 1] boundaries of packed sequences (B must be 1); undefined means dense.
  TORCH_ARG(at::Tensor, cu_seqlens);
  // Run the ATen reference implementation instead of the CUDA kernels: any device,
  // exact in the compute dtype, slow. For checking the kernels against it.
  TORCH_ARG(bool, use_reference_path) = false;
  // What a training forward keeps of its kernel workspace for the backward (see
  // KeptWorkspace). The ATen reference path keeps none either way.
  TORCH_ARG(KeptWorkspace, kept_workspace) = KeptWorkspace::kAll;
  // Intra-GPU sequence parallelism (chunk_comba only; fused_recurrent_comba ignores it):
  // sequences longer than this many tokens (a positive multiple of kChunkSize) are cut
  // into segments of it, whose transitions are computed side by side, joined by a short
  // scan over segments, and whose outputs then run side by side again: for long sequences
  // with too few heads to fill the GPU. Exact up to rounding (the same function and
  // gradients). 0: never split. Unset: the automatic choice, which is never (on an H200
  // the split was slower than none at every shape timed: benchmarks/NOTES.md, stop 33).
  TORCH_ARG(c10::optional<int64_t>, split_length) = c10::nullopt;
};

// Chunked (training) form. `p` defaults to k, `beta` to ones. Returns (o, final_state).
std::tuple<at::Tensor, at::Tensor> chunk_comba(const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& v,
                                               const c10::optional<at::Tensor>& p,
                                               const at::Tensor& g,
                                               const c10::optional<at::Tensor>& beta,
                                               const CombaOptions& options = {});

// Token-by-token (decode) form; same arguments, same numbers to dtype tolerance.
std::tuple<at::Tensor, at::Tensor> fused_recurrent_comba(const at::Tensor& q,
                                                         const at::Tensor& k,
                                                         const at::Tensor& v,
                                                         const c10::optional<at::Tensor>& p,
                                                         const at::Tensor& g,
                                                         const c10::optional<at::Tensor>& beta,
                                                         const CombaOptions& options = {});

// Chunk length of the chunked form (positions per WY block).
inline constexpr int64_t kChunkSize = 64;

// chunk_comba clamps g from below at this log decay, with zero gradient below it: the
// chunked form works with in-chunk sums of g, and -inf - (-inf) would be NaN. exp(-40)
// = 4.2e-18 is below fp64's unit roundoff (1.1e-16), so a clamped step keeps a share of
// the old state that no result can resolve (unless the old state outweighs the new one
// by 1e10 or more); the gradient it drops, exp(g) <dS, S_{t-1}>, is as small. A lower
// floor costs precision: after a clamped step the in-chunk sums have magnitude >= |floor|,
// which fp32 resolves only to ulp(|floor|) (3.8e-6 at 40, 1.5e-5 at 128), an error every
// later decay factor of the chunk inherits.
inline constexpr double kMinLogDecay = -40.0;

}  // namespace comba
