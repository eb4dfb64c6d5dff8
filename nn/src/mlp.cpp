// CombaMLP: SwiGLU.
#include "comba/nn/mlp.h"

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

torch::Tensor CombaMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace comba::nn
