// Gradient accumulation, clipping and evaluation (see train_step.h).
#include "comba/train/train_step.h"

#include <torch/torch.h>

#include <vector>

#include "comba/nn/labels.h"

namespace comba::train {
namespace {

nn::LMInputs model_inputs(const Batch& batch) {
  nn::LMInputs inputs;
  if (batch.cu_seqlens.defined()) inputs.cu_seqlens(batch.cu_seqlens);
  return inputs;
}

}  // namespace

torch::Tensor accumulate_gradients(nn::CombaForCausalLM& model, const std::vector<Batch>& micro,
                                   const Precision& precision, const StepSync& sync) {
  // The fused linear + cross entropy: the [tokens, vocab] logits are never materialised.
  return accumulate_summed_losses(
      [&model](const Batch& batch) {
        return model->summed_next_token_loss(batch.input_ids, model_inputs(batch).labels(batch.labels));
      },
      micro, precision, sync);
}

torch::Tensor accumulate_gradients_with(const LogitsFn& logits_of, const std::vector<Batch>& micro,
                                        const Precision& precision, const StepSync& sync) {
  return accumulate_summed_losses(
      [&logits_of](const Batch& batch) { return nn::summed_causal_lm_loss(logits_of(batch), batch.labels); }, micro,
      precision, sync);
}

// `precision` no longer changes anything here (the model's parameters carry the compute
// dtype, see master_weights.h); kept so that callers say which precision they train in.
torch::Tensor accumulate_summed_losses(const SummedLossFn& summed_loss_of, const std::vector<Batch>& micro,
                                       const Precision& /*precision*/, const StepSync& sync) {
  int64_t total_targets = sync.step_targets;
  if (total_targets == 0) {
    for (const auto& b : micro) total_targets += b.num_targets;
  }
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(1, total_targets));
  torch::Tensor step_loss;
  for (size_t i = 0; i < micro.size(); ++i) {
    const Batch& batch = micro[i];
    const torch::Tensor loss = summed_loss_of(batch) * scale;
    if (i + 1 == micro.size() && sync.before_last_backward) sync.before_last_backward();
    loss.backward();
    if (sync.after_backward) sync.after_backward();
    step_loss = step_loss.defined() ? step_loss + loss.detach() : loss.detach();
  }
  return step_loss;
}

torch::Tensor clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return torch::zeros({});
  const auto norms = at::_foreach_norm(grads, 2);
  const auto total = torch::stack(norms).norm();
  if (max_norm > 0) {
    // Same rule as torch.nn.utils.clip_grad_norm_: scale only when above max_norm, in one
    // multi-tensor multiply (instead of a launch per gradient); each gradient keeps its dtype.
    const auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, coef);
  }
  return total;
}

EvalSums evaluate_sums(nn::CombaForCausalLM& model, const std::vector<Batch>& batches,
                       const torch::Device& device, const Precision& /*precision*/, bool accuracy) {
  const torch::NoGradGuard no_grad;
  model->eval();
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  torch::Tensor correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
  int64_t targets = 0;
  for (const auto& host_batch : batches) {
    const Batch batch = host_batch.to(device);
    const auto out = model->forward(batch.input_ids, model_inputs(batch));
    loss_sum += nn::summed_causal_lm_loss(out.logits, batch.labels).to(torch::kDouble);
    targets += batch.num_targets;
    if (accuracy) {
      const int64_t seq = out.logits.size(1);
      const auto predicted = out.logits.slice(1, 0, seq - 1).argmax(-1);
      const auto wanted = batch.labels.slice(1, 1);
      correct += (predicted.eq(wanted) & wanted.ne(nn::kIgnoreIndex)).sum();
    }
  }
  model->train();
  EvalSums sums;
  sums.loss_sum = loss_sum.item<double>();
  sums.correct = correct.item<int64_t>();
  sums.targets = targets;
  return sums;
}

EvalResult eval_result(const EvalSums& sums, bool accuracy) {
  EvalResult result;
  result.targets = sums.targets;
  const double denom = static_cast<double>(std::max<int64_t>(1, sums.targets));
  result.loss = sums.loss_sum / denom;
  if (accuracy) result.accuracy = static_cast<double>(sums.correct) / denom;
  return result;
}

EvalResult evaluate(nn::CombaForCausalLM& model, const std::vector<Batch>& batches,
                    const torch::Device& device, const Precision& precision, bool accuracy) {
  return eval_result(evaluate_sums(model, batches, device, precision, accuracy), accuracy);
}

}  // namespace comba::train
