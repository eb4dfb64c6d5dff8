// Precision and device selection (see precision.h).
#include "comba/train/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include <stdexcept>

namespace comba::train {

Precision Precision::from_name(const std::string& name) {
  if (name == "fp32") return {torch::kFloat, torch::kFloat};
  if (name == "bf16") return {torch::kFloat, torch::kBFloat16};
  if (name == "fp64") return {torch::kDouble, torch::kDouble};
  throw std::invalid_argument("precision: expected one of fp32, bf16, fp64, got \"" + name + "\"");
}

torch::Device resolve_device(const std::string& name) {
  const bool has_gpu = torch::cuda::is_available();
  if (name == "auto") return has_gpu ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  const torch::Device device(name);
  if (device.is_cuda() && !has_gpu) {
    throw std::runtime_error("device: \"" + name + "\" asked for, but no CUDA GPU is available "
                             "(use device: auto or cpu)");
  }
  if (device.is_cuda() && device.has_index() &&
      device.index() >= static_cast<int>(torch::cuda::device_count())) {
    throw std::runtime_error("device: \"" + name + "\" asked for, but only " +
                             std::to_string(torch::cuda::device_count()) + " GPU(s) are present");
  }
  return device;
}

AutocastScope::AutocastScope(const torch::Device& device, bool enabled)
    : enabled_(enabled), device_type_(device.type()) {
  if (!enabled_) return;
  previous_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, previous_enabled_);
  at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
}

}  // namespace comba::train
