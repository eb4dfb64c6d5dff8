// CombaModel: embeddings -> CombaBlocks -> final RMSNorm (fla's CombaModel, same names:
// embeddings, layers.{i}, norm).
#pragma once
#include "comba/nn/block.h"
#include "comba/nn/cache.h"
#include "comba/nn/config.h"
#include "comba/nn/rms_norm.h"

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <string>

namespace comba::nn {

struct ModelInputs {
  TORCH_ARG(torch::Tensor, attention_mask);  // [B, T_mask], see CombaLayerInputs
  TORCH_ARG(torch::Tensor, cu_seqlens);      // int64 [N + 1], B must be 1
  TORCH_ARG(CombaCachePtr, cache) = nullptr;   // read and updated in place; nullptr = none
};

class CombaModelImpl : public torch::nn::Module {
 public:
  explicit CombaModelImpl(const CombaConfig& config);
  // SPEC section 3 initialisation: Linear, conv and embedding weights normal(0,
  // initializer_range), biases zero, norm weights one, layer-owned A_log/dt_bias/D/decay.
  void init_weights();

  // input_ids int64 [B, T] -> last hidden states [B, T, hidden] (after the final norm).
  torch::Tensor forward(const torch::Tensor& input_ids, const ModelInputs& inputs = {});

  const CombaConfig& config() const { return config_; }

  // Activation recompute in training with gradients (activation_checkpoint.h): kBlock
  // keeps only each block's input and runs the whole block again in backward (Hugging
  // Face's gradient_checkpointing); kMixer runs only the mixer branch again (attn_norm ->
  // attn: most of the activation memory for less of the compute); kChunkWorkspace keeps
  // every activation but the operator's chunk workspace, which the operator's backward
  // recomputes (CombaOptions::kept_workspace = kNone); kChunkStates keeps every activation
  // and, of the workspace, only the per-chunk states (kept_workspace = kStates: the
  // backward redoes the parallel chunk preparation, not the serial scan). Same numbers
  // either way. Off by default; never used with a decode cache.
  enum class Recompute { kNone, kChunkStates, kChunkWorkspace, kMixer, kBlock };
  void set_recompute(Recompute policy);
  Recompute recompute() const { return recompute_; }
  void set_gradient_checkpointing(bool enabled) { set_recompute(enabled ? Recompute::kBlock : Recompute::kNone); }
  bool gradient_checkpointing() const { return recompute_ == Recompute::kBlock; }
  // Every Comba layer's operator split (CombaOptions::split_length): sequences longer than
  // `length` tokens run as segments side by side; 0 never splits, unset leaves it to the
  // operator's automatic choice. The same numbers either way.
  void set_split_length(c10::optional<int64_t> length);

  torch::nn::Embedding embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  CombaConfig config_;
  Recompute recompute_ = Recompute::kNone;
};
TORCH_MODULE(CombaModel);

// "none" | "chunk_states" | "chunk_workspace" | "mixer" | "block" -> the policy; anything else throws
// std::invalid_argument naming `key` (the config key or argument the name came from).
CombaModelImpl::Recompute parse_recompute(const std::string& name, const std::string& key = "recompute");

// SPEC section 3 initialisation of every Comba module under `root`: Linear, embedding and
// short-conv weights normal(0, std) (fla's _init_weights treats the convs as nn.Conv1d),
// biases zero, norm weights one, and each CombaLayer's A_log, dt_bias, D and decay.
// Attention layers (hybrids) are Linear layers only: q/k/v/o weights normal(0, std), qkv
// biases zero; o_proj is not rescaled, in either kind of layer, as fla's _init_weights
// leaves it without a prenorm_residual_strategy (its default).
void init_comba_weights(torch::nn::Module& root, double std);

}  // namespace comba::nn
