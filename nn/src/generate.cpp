// Generation: prefill the (left-padded) prompt once with the cache, then decode one token
// per step; token selection is greedy or temperature / top-k / top-p sampling.
#include "comba/nn/generate.h"

#include "comba/core/checks.h"

#include <torch/torch.h>

#include <limits>
#include <memory>
#include <vector>

#ifdef COMBA_WITH_CUDA
#include "launch/decode_graph.h"
#endif

namespace comba::nn {

torch::Tensor select_next_tokens(const torch::Tensor& logits, const GenerationOptions& options) {
  const core::ArgChecker check("select_next_tokens");
  check.rank(logits, "logits", 2, "[B, V]").floating(logits, "logits");
  auto scores = logits.to(torch::kFloat);
  if (!options.do_sample()) return scores.argmax(-1);
  check.require(options.temperature() > 0, "option `temperature` expected > 0 when sampling, got ",
                options.temperature());
  check.require(options.top_k() >= 0, "option `top_k` expected >= 0 (0 = off), got ", options.top_k());
  check.require(options.top_p() > 0 && options.top_p() <= 1, "option `top_p` expected in (0, 1], got ",
                options.top_p());
  constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
  scores = scores / options.temperature();
  const int64_t vocab = scores.size(1);
  if (options.top_k() > 0 && options.top_k() < vocab) {
    const auto kth_best = std::get<0>(scores.topk(options.top_k(), -1)).slice(1, options.top_k() - 1);
    scores = scores.masked_fill(scores < kth_best, kMinusInf);
  }
  if (options.top_p() < 1.0) {
    auto [sorted, order] = scores.sort(-1, /*descending=*/true);
    const auto probs = sorted.softmax(-1);
    // Drop a token once the tokens before it already hold top_p of the mass; the best
    // token always stays.
    const auto mass_before = probs.cumsum(-1) - probs;
    sorted = sorted.masked_fill(mass_before >= options.top_p(), kMinusInf);
    scores = torch::full_like(scores, kMinusInf).scatter(-1, order, sorted);
  }
  return torch::multinomial(scores.softmax(-1), 1, /*replacement=*/false, options.generator()).squeeze(1);
}

namespace {

// The model's decode steps (one token per sequence, with the cache): eager forwards, or
// replays of a CUDA graph of one step (GenerationOptions::cuda_graph).
class DecodeSteps {
 public:
  DecodeSteps(CombaForCausalLM& model, CombaCache& cache, const torch::Tensor& input_ids,
              const GenerationOptions& options)
      : model_(model), cache_(cache) {
#ifdef COMBA_WITH_CUDA
    if (options.cuda_graph() && input_ids.is_cuda() && !model->config().is_hybrid()) {
      graph_ = std::make_unique<detail::DecodeGraph>(model, cache);
    }
#else
    (void)input_ids, (void)options;
#endif
  }

  bool used_graph() const {
#ifdef COMBA_WITH_CUDA
    return graph_ && graph_->captured();
#else
    return false;
#endif
  }

  // Logits [B, vocab] after ids [B, 1] (valid until the next call).
  torch::Tensor next_logits(const torch::Tensor& ids) {
#ifdef COMBA_WITH_CUDA
    if (graph_) return graph_->step(ids);
#endif
    return model_->forward(ids, LMInputs().cache(&cache_)).logits.select(1, -1);
  }

 private:
  CombaForCausalLM& model_;
  CombaCache& cache_;
#ifdef COMBA_WITH_CUDA
  std::unique_ptr<detail::DecodeGraph> graph_;
#endif
};

// GenerationOptions::bf16_decode_state: the prefill's fp32 recurrent states to bf16.
void recurrent_states_to_bf16(CombaCache& cache) {
  for (int64_t i = 0; i < cache.num_layers(); ++i) {
    auto& state = cache.layer(i).recurrent;
    if (state.defined() && state.scalar_type() == torch::kFloat) state = state.to(torch::kBFloat16);
  }
}

}  // namespace

GenerationOutput generate(CombaForCausalLM& model, const torch::Tensor& input_ids,
                          const torch::Tensor& attention_mask, const GenerationOptions& options) {
  const core::ArgChecker check("generate");
  check.rank(input_ids, "input_ids", 2, "[B, T]").dtype_in(input_ids, "input_ids", {torch::kLong});
  check.require(input_ids.size(1) > 0, "argument `input_ids` expected T > 0, got shape ",
                input_ids.sizes());
  check.require(options.max_new_tokens() >= 0, "option `max_new_tokens` expected >= 0, got ",
                options.max_new_tokens());
  if (attention_mask.defined()) {
    check.shape(attention_mask, "attention_mask", input_ids.sizes(), "like input_ids [B, T]");
    check.require(attention_mask.select(1, -1).ne(0).all().item<bool>(),
                  "argument `attention_mask` expected LEFT padding (last column all tokens), got a row "
                  "ending in padding");
  }
  torch::NoGradGuard no_grad;
  const int64_t batch = input_ids.size(0);
  const int64_t eos = options.eos_token_id();
  const int64_t pad = options.pad_token_id() >= 0 ? options.pad_token_id() : (eos >= 0 ? eos : 0);

  GenerationOutput out;
  std::vector<torch::Tensor> produced, step_logits;
  if (options.max_new_tokens() > 0) {
    auto cache = model->make_cache();
    auto logits = model->forward(input_ids, LMInputs().attention_mask(attention_mask).cache(&cache).logits_to_keep(1))
                      .logits.select(1, -1);
    if (options.bf16_decode_state()) recurrent_states_to_bf16(cache);
    DecodeSteps steps(model, cache, input_ids, options);
    auto finished = torch::zeros({batch}, input_ids.options().dtype(torch::kBool));
    for (int64_t step = 0; step < options.max_new_tokens(); ++step) {
      auto next = select_next_tokens(logits, options).to(input_ids.device());
      if (eos >= 0) {
        next = torch::where(finished, torch::full_like(next, pad), next);
        finished = finished | next.eq(eos);
      }
      produced.push_back(next);
      // A copy: with cuda_graph the logits are the graph's buffer, overwritten next step.
      if (options.output_logits()) step_logits.push_back(logits.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true));
      if (step + 1 == options.max_new_tokens() || (eos >= 0 && finished.all().item<bool>())) break;
      // New tokens are real for every row, so no mask is needed after the prefill.
      logits = steps.next_logits(next.unsqueeze(1));
    }
    out.used_cuda_graph = steps.used_graph();
  }
  out.steps = static_cast<int64_t>(produced.size());
  out.new_tokens = produced.empty() ? torch::empty({batch, 0}, input_ids.options()) : torch::stack(produced, 1);
  out.sequences = torch::cat({input_ids, out.new_tokens}, 1);
  if (options.output_logits()) {
    out.logits = step_logits.empty() ? torch::empty({batch, 0, model->config().vocab_size}, input_ids.options().dtype(torch::kFloat))
                                : torch::stack(step_logits, 1);
  }
  return out;
}

}  // namespace comba::nn
