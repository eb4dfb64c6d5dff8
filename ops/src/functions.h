// Autograd Functions of the operator: save the inputs, call the *_fwd / *_bwd stages.
// Inputs arrive validated; p, beta, initial_state and cu_seqlens may be undefined.
#pragma once
#include <torch/autograd.h>

#include "stages.h"

namespace comba::detail {

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

struct ChunkForm {
  static constexpr const char* kName = "chunk_comba";
  // In-chunk sums of g turn -inf into -inf - (-inf) = NaN: clamp first (comba.h,
  // kMinLogDecay). clamp_min is recorded by autograd, so g's gradient below the floor is
  // 0, the recurrence's exp(g) <dS, S_{t-1}> at exp(g) = 0.
  static at::Tensor gate(const at::Tensor& g) { return g.clamp_min(kMinLogDecay); }
  static CombaForward fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward) {
    return chunk_comba_fwd(pb, in, for_backward);
  }
  static InputGrads bwd(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& d_o,
                        const at::Tensor& d_final, std::vector<at::Tensor> saved) {
    return chunk_comba_bwd(pb, in, d_o, d_final, std::move(saved));
  }
};

struct FusedRecurrentForm {
  static constexpr const char* kName = "fused_recurrent_comba";
  static at::Tensor gate(const at::Tensor& g) { return g; }  // exp(-inf) = 0 is exact here
  static CombaForward fwd(const CombaProblem& pb, const CombaInputs& in, bool for_backward) {
    return fused_recurrent_comba_fwd(pb, in, for_backward);
  }
  static InputGrads bwd(const CombaProblem& pb, const CombaInputs& in, const at::Tensor& d_o,
                        const at::Tensor& d_final, std::vector<at::Tensor> saved) {
    return fused_recurrent_comba_bwd(pb, in, d_o, d_final, std::move(saved));
  }
};

using ChunkCombaFunction = CombaFunction<ChunkForm>;
using FusedRecurrentCombaFunction = CombaFunction<FusedRecurrentForm>;

}  // namespace comba::detail
