// Activation checkpointing through a custom autograd Function (see activation_checkpoint.h).
#include "comba/nn/activation_checkpoint.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/autograd.h>
#include <torch/custom_class.h>

#include <utility>

namespace comba::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the backward needs besides the saved input: the function and the forward's
// autocast state (the backward runs outside the caller's autocast scope).
struct Recompute : torch::CustomClassHolder {
  TensorFn fn;
  c10::DeviceType device_type = c10::DeviceType::CPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kBFloat16;
};

// Autocast's weight-cast cache stays off inside a checkpointed function: a cast cached by
// the no-grad forward has no graph (a later use in the same scope would lose the weight's
// gradient), and one cached by the backward's recompute would outlive the step and hand
// the next forward a stale copy of a weight the optimizer has changed since.
class AutocastCacheOff {
 public:
  AutocastCacheOff() : was_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(was_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  bool was_;
};

// Re-enters the forward's autocast state (the cache off, as above).
class AutocastAsInForward {
 public:
  explicit AutocastAsInForward(const Recompute& r)
      : device_type_(r.device_type),
        was_enabled_(at::autocast::is_autocast_enabled(r.device_type)),
        was_dtype_(at::autocast::get_autocast_dtype(r.device_type)) {
    at::autocast::set_autocast_enabled(device_type_, r.autocast);
    at::autocast::set_autocast_dtype(device_type_, r.autocast_dtype);
  }
  ~AutocastAsInForward() {
    at::autocast::set_autocast_enabled(device_type_, was_enabled_);
    at::autocast::set_autocast_dtype(device_type_, was_dtype_);
  }
  AutocastAsInForward(const AutocastAsInForward&) = delete;
  AutocastAsInForward& operator=(const AutocastAsInForward&) = delete;

 private:
  c10::DeviceType device_type_;
  bool was_enabled_;
  at::ScalarType was_dtype_;
  AutocastCacheOff no_cache_;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               c10::intrusive_ptr<Recompute> recompute) {
    ctx->save_for_backward({input});
    torch::Tensor output;
    {
      const AutocastCacheOff no_cache;
      output = recompute->fn(input);  // grad mode is off here: nothing is kept
    }
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(std::move(recompute));
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "activation_checkpoint: double backward (create_graph=true) is not supported");
    const auto recompute = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    const auto input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    torch::Tensor output;
    {
      const torch::AutoGradMode grad_mode(true);
      const AutocastAsInForward autocast(*recompute);
      output = recompute->fn(input);
    }
    torch::autograd::backward({output}, {grad_outputs[0]});
    return {input.grad(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor activation_checkpoint(const TensorFn& fn, const torch::Tensor& input) {
  if (!torch::GradMode::is_enabled() || !input.requires_grad()) return fn(input);
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->fn = fn;
  recompute->device_type = input.device().type();
  recompute->autocast = at::autocast::is_autocast_enabled(recompute->device_type);
  recompute->autocast_dtype = at::autocast::get_autocast_dtype(recompute->device_type);
  return CheckpointFunction::apply(input, std::move(recompute));
}

}  // namespace comba::nn
