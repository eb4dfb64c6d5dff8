// Text generation with the decode cache: the prompt is prefilled in one forward pass (chunk
// path, final states kept), then one token per step through the recurrent path. Greedy,
// or sampling with temperature / top-k / top-p; stops at EOS or max_new_tokens. Batches
// use LEFT padding (attention_mask [B, T], 0 = padding on the left).
#pragma once
#include "comba/nn/causal_lm.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace comba::nn {

struct GenerationOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 32;
  TORCH_ARG(bool, do_sample) = false;   // false = greedy (argmax)
  TORCH_ARG(double, temperature) = 1.0; // > 0, used when sampling
  TORCH_ARG(int64_t, top_k) = 0;        // 0 = off
  TORCH_ARG(double, top_p) = 1.0;       // 1 = off; keeps the smallest set with mass >= top_p
  TORCH_ARG(int64_t, eos_token_id) = -1;  // -1 = never stop early
  TORCH_ARG(int64_t, pad_token_id) = -1;  // written after EOS; -1 = eos_token_id (or 0)
  TORCH_ARG(c10::optional<at::Generator>, generator) = c10::nullopt;  // for sampling
  // On CUDA, replay the model's decode step from a CUDA graph: the first step after the
  // prefill runs eagerly, the next is captured, every later one replays it (token selection
  // stays outside the graph). Same tokens and logits as eager steps. Ignored on the CPU, in
  // builds without CUDA, and for hybrid models (config.attn: their key/value cache grows
  // every step).
  TORCH_ARG(bool, cuda_graph) = true;
  // Keep every Comba layer's recurrent state in bfloat16 during the decode steps (the
  // prefill still produces it in fp32): half the state's memory and traffic; the math stays
  // fp32 and each step rounds the stored state (the error this adds: tests/nn/test_gpu.cpp,
  // Bf16DecodeStateErrorOverSteps).
  TORCH_ARG(bool, bf16_decode_state) = false;
  // Also return the logits each new token was selected from (GenerationOutput::logits).
  TORCH_ARG(bool, output_logits) = false;
};

struct GenerationOutput {
  torch::Tensor sequences;   // int64 [B, T + steps]: prompt followed by the new tokens
  torch::Tensor new_tokens;  // int64 [B, steps]
  int64_t steps = 0;         // tokens generated per sequence (<= max_new_tokens)
  torch::Tensor logits;      // fp32 [B, steps, vocab] with output_logits, else undefined
  bool used_cuda_graph = false;  // whether decode steps were replayed from a CUDA graph
};

// One next token per row of logits [B, V] (fp32 math) under the options' rule.
torch::Tensor select_next_tokens(const torch::Tensor& logits, const GenerationOptions& options);

// input_ids int64 [B, T]; attention_mask [B, T] (left padding) or undefined (all tokens).
// Runs under NoGradGuard; the model should be in eval mode.
GenerationOutput generate(CombaForCausalLM& model, const torch::Tensor& input_ids,
                          const torch::Tensor& attention_mask = {},
                          const GenerationOptions& options = {});

}  // namespace comba::nn
