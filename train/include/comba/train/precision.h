// Numeric precision of a run and the device it runs on. "bf16" is mixed precision: the
// weights (master copy), their gradients and AdamW state stay fp32 while forward/backward
// compute in bf16: the model's parameters are bf16 copies of the masters, made once per
// optimizer step (master_weights.h), not cast per op under autocast. "fp64" exists for
// exact checks on the CPU (tests).
#pragma once
#include <torch/types.h>

#include <string>

namespace comba::train {

struct Precision {
  torch::Dtype weight_dtype = torch::kFloat;   // the optimizer's weights, gradients and state
  torch::Dtype compute_dtype = torch::kFloat;  // the model's parameters and activations
  // The model computes in another dtype than the optimizer's weights: MasterWeights.
  bool master_weights() const { return compute_dtype != weight_dtype; }

  static Precision from_name(const std::string& name);  // fp32 | bf16 | fp64
};

// "auto" picks cuda:0 when a GPU is usable, else the CPU. Throws when "cuda" is asked
// for and none is present (naming the `device` key).
torch::Device resolve_device(const std::string& name);

// bf16 autocast on `device` for the scope's lifetime when enabled (RAII); the trainer no
// longer uses it (see above), benchmarks compare against it. Autocast state is
// thread-local; the cast cache is cleared when the outermost scope ends, or it would keep
// every step's casted weights alive.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
  c10::DeviceType device_type_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace comba::train
