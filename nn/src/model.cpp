// CombaModel: embeddings, the stack of blocks (each with its own decode state) and the
// final norm; init_weights implements SPEC section 3's initialisation for the whole tree.
#include "comba/nn/model.h"

#include "comba/core/checks.h"
#include "comba/nn/activation_checkpoint.h"
#include "comba/nn/model_size.h"
#include "comba/nn/padding.h"

#include <torch/torch.h>

#include <stdexcept>

namespace comba::nn {

CombaModelImpl::CombaModelImpl(const CombaConfig& config) : config_(config) {
  // Validates, and refuses (naming the bytes) a model the host memory cannot hold before
  // allocating any of it: parameters are created on the CPU in the default dtype.
  check_parameters_fit(config_, c10::typeMetaToScalarType(c10::get_default_dtype()), c10::kCPU,
                       /*with_lm_head=*/false);
  embeddings = register_module("embeddings", torch::nn::Embedding(config_.vocab_size, config_.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) layers->push_back(CombaBlock(config_, i));
  norm = register_module("norm", RMSNorm(RMSNormOptions(config_.hidden_size).eps(config_.norm_eps)));
  init_weights();
}

void CombaModelImpl::set_recompute(Recompute policy) {
  recompute_ = policy;
  // Only kChunkStates and kChunkWorkspace drop (part of) the workspace: under kMixer and
  // kBlock the operator runs again right before its backward, which then uses what that
  // run kept. Attention layers have no chunk workspace (ATen's attention keeps what its
  // backward needs).
  const auto kept = policy == Recompute::kChunkStates      ? comba::KeptWorkspace::kStates
                    : policy == Recompute::kChunkWorkspace ? comba::KeptWorkspace::kNone
                                                           : comba::KeptWorkspace::kAll;
  for (const auto& block : *layers) {
    auto* b = block->as<CombaBlockImpl>();
    if (b->attn) b->attn->set_kept_workspace(kept);
  }
}

void CombaModelImpl::set_split_length(c10::optional<int64_t> length) {
  for (const auto& block : *layers) {
    auto* b = block->as<CombaBlockImpl>();
    if (b->attn) b->attn->set_split_length(length);
  }
}

CombaModelImpl::Recompute parse_recompute(const std::string& name, const std::string& key) {
  if (name == "none") return CombaModelImpl::Recompute::kNone;
  if (name == "chunk_states") return CombaModelImpl::Recompute::kChunkStates;
  if (name == "chunk_workspace") return CombaModelImpl::Recompute::kChunkWorkspace;
  if (name == "mixer") return CombaModelImpl::Recompute::kMixer;
  if (name == "block") return CombaModelImpl::Recompute::kBlock;
  throw std::invalid_argument(key + ": expected one of none, chunk_states, chunk_workspace, mixer, block, got \"" + name + "\"");
}

namespace {

void init_module(torch::nn::Module& module, double std) {
  if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(&module)) {
    embedding->weight.normal_(0.0, std);
  } else if (auto* conv = dynamic_cast<ShortConvolutionImpl*>(&module)) {
    // fla's _init_weights treats the short convs as nn.Conv1d: normal weights, zero bias.
    conv->weight.normal_(0.0, std);
    if (conv->bias.defined()) conv->bias.zero_();
  } else if (auto* norm = dynamic_cast<RMSNormImpl*>(&module)) {
    norm->reset_parameters();
  } else if (auto* gated_norm = dynamic_cast<GatedRMSNormImpl*>(&module)) {
    gated_norm->reset_parameters();
  } else if (auto* layer = dynamic_cast<CombaLayerImpl*>(&module)) {
    layer->reset_parameters();
  }
}

}  // namespace

void init_comba_weights(torch::nn::Module& root, double std) {
  torch::NoGradGuard no_grad;
  // modules(include_self) needs a shared_ptr root, which a constructor does not have yet.
  init_module(root, std);
  for (const auto& module : root.modules(/*include_self=*/false)) init_module(*module, std);
}

void CombaModelImpl::init_weights() { init_comba_weights(*this, config_.initializer_range); }

torch::Tensor CombaModelImpl::forward(const torch::Tensor& input_ids, const ModelInputs& inputs) {
  const core::ArgChecker check("CombaModel::forward");
  check.rank(input_ids, "input_ids", 2, "[B, T]").dtype_in(input_ids, "input_ids", {torch::kLong, torch::kInt});
  if (inputs.cache()) {
    check.require(inputs.cache()->num_layers() == config_.num_hidden_layers, "argument `cache` expected ",
                  config_.num_hidden_layers, " layers, got ", inputs.cache()->num_layers());
  }
  const int64_t batch = input_ids.size(0), seq_len = input_ids.size(1);
  auto hidden = embeddings(input_ids);
  // Padding is removed once for the whole stack (every block is per-token outside the
  // mixer), so the blocks see packed sequences and padding positions cost nothing.
  Unpadding unpadding;
  auto cu_seqlens = inputs.cu_seqlens();
  if (inputs.attention_mask().defined()) {
    check.require(!cu_seqlens.defined(),
                  "arguments `attention_mask` and `cu_seqlens` expected one or the other, got both");
    unpadding = unpad_from_mask(inputs.attention_mask(), batch, seq_len, hidden.device(), "CombaModel::forward");
    if (unpadding.has_padding()) {
      hidden = unpadding.pack(hidden);
      cu_seqlens = unpadding.cu_seqlens;
    }
  }
  const auto recompute = is_training() && !inputs.cache() ? recompute_ : Recompute::kNone;
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const auto layer_inputs = CombaLayerInputs()
                                  .cu_seqlens(cu_seqlens)
                                  .state(inputs.cache() ? &inputs.cache()->layer(i) : nullptr);
    auto block = layers->ptr<CombaBlockImpl>(static_cast<size_t>(i));
    if (recompute == Recompute::kBlock) {
      // Captured by value: the backward runs the block again after this frame is gone.
      hidden = activation_checkpoint([block, layer_inputs](const torch::Tensor& x) { return block->forward(x, layer_inputs); },
                                     hidden);
    } else if (recompute == Recompute::kMixer) {
      hidden = block->forward_recomputing_mixer(hidden, layer_inputs);
    } else {
      hidden = block->forward(hidden, layer_inputs);
    }
  }
  if (inputs.cache()) inputs.cache()->add_seen_tokens(seq_len);
  hidden = norm(hidden);
  // Padding positions come back as zeros (so their logits are zeros too).
  return unpadding.has_padding() ? unpadding.unpack(hidden) : hidden;
}

}  // namespace comba::nn
