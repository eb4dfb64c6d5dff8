// CombaForCausalLM: CombaModel + lm_head (fla's CombaForCausalLM: parameter names
// model.* and lm_head.weight), next-token cross-entropy loss and the weight-decay rule.
//
// Tied embeddings (config.tie_word_embeddings): no lm_head module is registered, so
// named_parameters() has no lm_head.weight; logits use model.embeddings.weight. (fla's
// state_dict also lists lm_head.weight for a tied model, with the same values: a loader
// skips it.)
#pragma once
#include "comba/nn/cache.h"
#include "comba/nn/config.h"
#include "comba/nn/labels.h"
#include "comba/nn/model.h"

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

namespace comba::nn {

struct CausalLMOutput {
  torch::Tensor logits;  // [B, T, vocab] (or [B, logits_to_keep, vocab]) in the model dtype
  torch::Tensor loss;    // fp32 scalar; undefined without labels
};

struct LMInputs {
  // int64 [B, T]; position t predicts labels[t + 1] (shifted inside, like HF/fla); -100 is
  // ignored. Loss = mean cross entropy over non-ignored targets in fp32 (0 if none).
  TORCH_ARG(torch::Tensor, labels);
  TORCH_ARG(torch::Tensor, attention_mask);  // [B, T_mask], nonzero = token, 0 = padding
  TORCH_ARG(torch::Tensor, cu_seqlens);      // int64 [N + 1] packed sequences, B must be 1
  TORCH_ARG(CombaCachePtr, cache) = nullptr;   // decode cache, read and updated; nullptr = none
  // Compute logits for the last `logits_to_keep` positions only (0 = all); for decoding.
  TORCH_ARG(int64_t, logits_to_keep) = 0;
};

class CombaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit CombaForCausalLMImpl(const CombaConfig& config);
  // SPEC section 3 initialisation of every weight (the constructor calls it).
  void init_weights();

  CausalLMOutput forward(const torch::Tensor& input_ids, const LMInputs& inputs = {});

  // The sum over counted targets of the next-token cross entropy against inputs.labels()
  // (required; shifted inside, -100 ignored), in fp32, through linear_cross_entropy: the
  // [B, T, vocab] logits and their gradient are never materialised. Training minimises
  // this divided by the number of counted targets; equal to causal_lm_loss(logits) times
  // that number within the dtype's rounding.
  torch::Tensor summed_next_token_loss(const torch::Tensor& input_ids, const LMInputs& inputs);

  // The output projection weight [vocab, hidden] (the embedding weight when tied).
  torch::Tensor output_weight() const;
  const CombaConfig& config() const { return config_; }
  CombaCache make_cache() const { return CombaCache(config_.num_hidden_layers); }

  CombaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  CombaConfig config_;
};
TORCH_MODULE(CombaForCausalLM);

// Next-token cross entropy: logits [B, T, V] at t against labels[t + 1], -100 ignored,
// summed over counted targets; in fp64 for fp64 logits, else fp32. The one shifted loss of
// materialised logits: causal_lm_loss and the trainer's evaluation both use it.
torch::Tensor summed_causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// summed_causal_lm_loss divided by the number of counted targets (0 when there are none).
torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// False for parameters that take no weight decay: A_log, dt_bias, D, decay, every norm
// weight and every bias. Embeddings and lm_head return true (the trainer decides).
bool takes_weight_decay(const std::string& parameter_name);

// Names of module's parameters for which takes_weight_decay is false.
std::vector<std::string> no_weight_decay_parameter_names(const torch::nn::Module& module);

}  // namespace comba::nn
