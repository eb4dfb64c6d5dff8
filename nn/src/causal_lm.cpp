// CombaForCausalLM: the language-model head, its loss and the weight-decay rule.
#include "comba/nn/causal_lm.h"

#include "comba/core/checks.h"
#include "comba/nn/linear_cross_entropy.h"
#include "comba/nn/model_size.h"

#include <torch/torch.h>

namespace comba::nn {

CombaForCausalLMImpl::CombaForCausalLMImpl(const CombaConfig& config) : config_(config) {
  // With lm_head, before CombaModel allocates anything (see CombaModelImpl's constructor).
  check_parameters_fit(config_, c10::typeMetaToScalarType(c10::get_default_dtype()), c10::kCPU);
  model = register_module("model", CombaModel(config_));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, config_.vocab_size).bias(false)));
  }
  init_weights();
}

void CombaForCausalLMImpl::init_weights() { init_comba_weights(*this, config_.initializer_range); }

torch::Tensor CombaForCausalLMImpl::output_weight() const {
  return lm_head ? lm_head->weight : model->embeddings->weight;
}

namespace {

void check_lm_inputs(const core::ArgChecker& check, const torch::Tensor& input_ids, const LMInputs& inputs) {
  check.rank(input_ids, "input_ids", 2, "[B, T]");
  check.require(inputs.logits_to_keep() >= 0, "argument `logits_to_keep` expected >= 0, got ",
                inputs.logits_to_keep());
  if (inputs.labels().defined()) {
    check.shape(inputs.labels(), "labels", input_ids.sizes(), "like input_ids [B, T]");
    check.dtype_in(inputs.labels(), "labels", {torch::kLong});
    check.require(inputs.logits_to_keep() == 0, "argument `logits_to_keep` expected 0 with labels, got ",
                  inputs.logits_to_keep());
  }
}

ModelInputs model_inputs(const LMInputs& inputs) {
  return ModelInputs().attention_mask(inputs.attention_mask()).cu_seqlens(inputs.cu_seqlens()).cache(inputs.cache());
}

}  // namespace

CausalLMOutput CombaForCausalLMImpl::forward(const torch::Tensor& input_ids, const LMInputs& inputs) {
  const core::ArgChecker check("CombaForCausalLM::forward");
  check_lm_inputs(check, input_ids, inputs);
  auto hidden = model(input_ids, model_inputs(inputs));
  const int64_t seq_len = hidden.size(1);
  if (inputs.logits_to_keep() > 0 && inputs.logits_to_keep() < seq_len) {
    hidden = hidden.slice(1, seq_len - inputs.logits_to_keep());
  }
  CausalLMOutput out;
  out.logits = lm_head ? lm_head(hidden) : torch::nn::functional::linear(hidden, model->embeddings->weight);
  if (inputs.labels().defined()) out.loss = causal_lm_loss(out.logits, inputs.labels());
  return out;
}

torch::Tensor CombaForCausalLMImpl::summed_next_token_loss(const torch::Tensor& input_ids, const LMInputs& inputs) {
  const core::ArgChecker check("CombaForCausalLM::summed_next_token_loss");
  check.defined(inputs.labels(), "labels");
  check_lm_inputs(check, input_ids, inputs);
  const auto hidden = model(input_ids, model_inputs(inputs));
  const int64_t seq_len = hidden.size(1);
  // Position t predicts labels[t + 1]: the last position predicts nothing.
  const auto predicting = hidden.slice(1, 0, std::max<int64_t>(seq_len - 1, 0)).reshape({-1, hidden.size(2)});
  const auto targets = inputs.labels().slice(1, 1).reshape({-1}).to(hidden.device());
  return linear_cross_entropy(predicting, output_weight(), targets,
                              LinearCrossEntropyOptions().ignore_index(kIgnoreIndex));
}

namespace {

// The summed loss, its argument errors naming `caller`.
torch::Tensor summed_loss(const char* caller, const torch::Tensor& logits, const torch::Tensor& labels) {
  const core::ArgChecker check(caller);
  check.rank(logits, "logits", 3, "[B, T, V]").floating(logits, "logits");
  check.shape(labels, "labels", {logits.size(0), logits.size(1)}, "[B, T]");
  check.dtype_in(labels, "labels", {torch::kLong});
  const int64_t vocab = logits.size(2), seq_len = logits.size(1);
  const auto predictions = logits.slice(1, 0, std::max<int64_t>(seq_len - 1, 0)).to(torch::promote_types(logits.scalar_type(), torch::kFloat)).reshape({-1, vocab});
  const auto targets = labels.slice(1, 1).reshape({-1}).to(logits.device());
  return torch::nn::functional::cross_entropy(
      predictions, targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
}

}  // namespace

torch::Tensor summed_causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return summed_loss("summed_causal_lm_loss", logits, labels);
}

torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto total = summed_loss("causal_lm_loss", logits, labels);
  // Mean over counted targets; an all-ignored batch gives 0 rather than 0 / 0.
  const auto counted = labels.slice(1, 1).ne(kIgnoreIndex).sum().to(logits.device()).to(torch::kFloat).clamp_min(1.0);
  return total / counted;
}

bool takes_weight_decay(const std::string& parameter_name) {
  const auto ends_with = [&parameter_name](const std::string& suffix) {
    return parameter_name.size() >= suffix.size() &&
           parameter_name.compare(parameter_name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  const auto leaf_start = parameter_name.rfind('.');
  const std::string leaf = leaf_start == std::string::npos ? parameter_name : parameter_name.substr(leaf_start + 1);
  if (leaf == "A_log" || leaf == "dt_bias" || leaf == "D" || leaf == "decay" || leaf == "bias") return false;
  // Norm weights: attn_norm, mlp_norm, o_norm and the final model.norm.
  if (ends_with("norm.weight")) return false;
  return true;
}

std::vector<std::string> no_weight_decay_parameter_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (!takes_weight_decay(item.key())) names.push_back(item.key());
  }
  return names;
}

}  // namespace comba::nn
