// The pieces of one optimizer step, each a function of its own so that the loop reads as
// a list and multi-GPU gradient sync slots in between accumulate_gradients and
// clip_gradients. Nothing here synchronises with the device: losses and norms stay
// tensors until the loop decides to read them (at logging intervals).
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <vector>

#include "comba/nn/causal_lm.h"
#include "comba/train/data/batch.h"
#include "comba/train/precision.h"

namespace comba::train {

// What a data-parallel step (see grad_reducer.h) or fp32 master weights
// (master_weights.h) add to accumulation; the default is a plain one-process step.
struct StepSync {
  // Scored targets of the whole step over all ranks; 0: those of `micro`. Each rank divides
  // its summed loss by this count, so the SUM of the ranks' gradients (the all-reduce) is
  // the gradient of the whole step, whatever each rank's share of targets.
  int64_t step_targets = 0;
  // Runs just before the last micro-batch's backward (the reducer arms its hooks there,
  // so that earlier micro-batches accumulate locally and each step communicates once).
  std::function<void()> before_last_backward;
  // Runs after each micro-batch's backward (MasterWeights::accumulate_gradients there).
  std::function<void()> after_backward;
};

// Forward and backward over the micro-batches of one step (already on the device), in
// the model's own dtype (no autocast), accumulating into .grad. Each micro-batch is weighted by its share of the step's
// scored targets, so N micro-batches of B give the gradient of one batch of N * B.
// Returns the step's mean loss per target (detached, on the device); in a data-parallel
// step, this rank's part of it (the ranks' values add up to the step's mean).
torch::Tensor accumulate_gradients(nn::CombaForCausalLM& model, const std::vector<Batch>& micro,
                                   const Precision& precision, const StepSync& sync = {});
// The same for any model, given as "batch -> logits [B, T, vocab]" (loss:
// nn::summed_causal_lm_loss, fp64 for fp64 logits so that exact checks stay exact).
using LogitsFn = std::function<torch::Tensor(const Batch&)>;
torch::Tensor accumulate_gradients_with(const LogitsFn& logits_of, const std::vector<Batch>& micro,
                                   const Precision& precision, const StepSync& sync = {});
// The same given as "batch -> summed next-token loss" (a scalar, as nn::summed_causal_lm_loss).
using SummedLossFn = std::function<torch::Tensor(const Batch&)>;
torch::Tensor accumulate_summed_losses(const SummedLossFn& summed_loss_of, const std::vector<Batch>& micro,
                                       const Precision& precision, const StepSync& sync = {});

// Scales gradients so that their global L2 norm is at most max_norm (max_norm <= 0: no
// scaling). Returns the norm before clipping, as a device tensor (no host sync).
torch::Tensor clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm);

struct EvalResult {
  double loss = 0;      // mean per scored target
  double accuracy = -1; // share of targets whose argmax is right; -1 when not asked for
  int64_t targets = 0;
};

// Evaluates on `batches` (moved to `device`) without gradients.
EvalResult evaluate(nn::CombaForCausalLM& model, const std::vector<Batch>& batches,
                    const torch::Device& device, const Precision& precision, bool accuracy);

// The sums behind an EvalResult, so that ranks that evaluated different batches can add
// theirs up before dividing (eval_result).
struct EvalSums {
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t targets = 0;
  // Full pass: the UTF-8 bytes of text the windows read encode (each window its span's
  // share, tokens read / span tokens); negative when a span read has no known count.
  double text_bytes = 0;
};
EvalSums evaluate_sums(nn::CombaForCausalLM& model, const std::vector<Batch>& batches,
                       const torch::Device& device, const Precision& precision, bool accuracy);
EvalResult eval_result(const EvalSums& sums, bool accuracy);

}  // namespace comba::train
