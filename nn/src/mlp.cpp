// CombaMLP: SwiGLU, with the gate and up projections as one GEMM.
#include "comba/nn/mlp.h"

#include "comba/nn/swiglu.h"

#include <torch/torch.h>

namespace comba::nn {

CombaMLPImpl::CombaMLPImpl(const CombaMLPOptions& options_) : options(options_) { reset(); }

void CombaMLPImpl::reset() {
  TORCH_CHECK(options.hidden_size() > 0 && options.intermediate_size() > 0,
              "CombaMLP: options `hidden_size` and `intermediate_size` expected > 0, got ",
              options.hidden_size(), " and ", options.intermediate_size());
  const auto linear = [&](const char* name, int64_t in, int64_t out) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
  };
  gate_proj = linear("gate_proj", options.hidden_size(), options.intermediate_size());
  up_proj = linear("up_proj", options.hidden_size(), options.intermediate_size());
  down_proj = linear("down_proj", options.intermediate_size(), options.hidden_size());
}

// x @ [W_gate; W_up]^T in one GEMM (one read of x, one launch) and the fused SwiGLU on its
// two halves. The weights stay two parameters (checkpoint names unchanged); concatenating
// them costs one copy of 2 x intermediate x hidden per call (a few microseconds).
torch::Tensor CombaMLPImpl::gate_up_weight() const { return torch::cat({gate_proj->weight, up_proj->weight}, 0); }

torch::Tensor CombaMLPImpl::forward(const torch::Tensor& x) {
  const auto gate_up = torch::nn::functional::linear(x, gate_up_weight());
  return swiglu_linear(gate_up, down_proj->weight);
}

torch::Tensor CombaMLPImpl::forward_normalized(const torch::Tensor& x, const RMSNormImpl& norm) {
  const auto gate_up = rms_norm_linear(x, norm.weight, norm.options.eps(), {}, gate_up_weight());
  return swiglu_linear(gate_up, down_proj->weight);
}

}  // namespace comba::nn
