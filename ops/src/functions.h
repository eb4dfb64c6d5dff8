// The operator below the public functions: each form's forward and backward (defined in
// chunk_comba.cpp and fused_recurrent_comba.cpp), and the autograd Function that saves the
// inputs and calls them. Inputs arrive validated; p, beta, initial_state and cu_seqlens
// may be undefined.
#pragma once
#include <torch/autograd.h>

#include <vector>

#include "layout.h"

namespace comba::detail {

// keep: what to return in CombaForward::saved for the backward to reuse (KeptWorkspace::kNone
// for an inference forward); the backward takes it back, by value so that it can free each
// buffer once its kernels are done with it, and recomputes what it was not given.
CombaForward chunk_comba_fwd(const CombaProblem& pb, const CombaInputs& in, KeptWorkspace keep);
InputGrads chunk_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                           const at::Tensor& grad_o, const at::Tensor& grad_final,
                           std::vector<at::Tensor> saved);
// Keeps state checkpoints unless keep is kNone (kStates keeps them too: they are states).
CombaForward fused_recurrent_comba_fwd(const CombaProblem& pb, const CombaInputs& in,
                                       KeptWorkspace keep);
InputGrads fused_recurrent_comba_bwd(const CombaProblem& pb, const CombaInputs& in,
                                     const at::Tensor& grad_o, const at::Tensor& grad_final,
                                     std::vector<at::Tensor> saved);

// A form, as the Function's policy: its name in messages, the gate it runs on, its forward
// and backward.
struct ChunkForm {
  static constexpr const char* kName = "chunk_comba";
  // In-chunk sums of g turn -inf into -inf - (-inf) = NaN: clamp first (comba.h,
  // kMinLogDecay). clamp_min is recorded by autograd, so g's gradient below the floor is
  // 0, the recurrence's exp(g) <dS, S_{t-1}> at exp(g) = 0.
  static at::Tensor gate(const at::Tensor& g) { return g.clamp_min(kMinLogDecay); }
  static constexpr auto fwd = &chunk_comba_fwd;
  static constexpr auto bwd = &chunk_comba_bwd;
};

struct FusedRecurrentForm {
  static constexpr const char* kName = "fused_recurrent_comba";
  static at::Tensor gate(const at::Tensor& g) { return g; }  // exp(-inf) = 0 is exact here
  static constexpr auto fwd = &fused_recurrent_comba_fwd;
  static constexpr auto bwd = &fused_recurrent_comba_bwd;
};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Forward outputs: {o [B, T, HV, V], final_state [N, HV, K, V]}.
template <typename Form>
class CombaFunction : public torch::autograd::Function<CombaFunction<Form>> {
 public:
  using FormType = Form;
  // Optional tensors travel as c10::optional: autograd::Function rejects undefined inputs.
  using OptTensor = c10::optional<at::Tensor>;
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const OptTensor& p, const at::Tensor& g,
                               const OptTensor& beta, const OptTensor& initial_state,
                               const OptTensor& cu_seqlens, const CombaOptions& options);
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs);
};

using ChunkCombaFunction = CombaFunction<ChunkForm>;
using FusedRecurrentCombaFunction = CombaFunction<FusedRecurrentForm>;

}  // namespace comba::detail
