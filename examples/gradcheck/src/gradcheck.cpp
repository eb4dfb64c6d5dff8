// The generic finite-difference checker (see comba/tools/gradcheck.h for the method).
#include "comba/tools/gradcheck.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <numeric>
#include <random>
#include <sstream>

namespace comba::tools {

namespace {

// L = sum_i <y_i, R_i>; the R_i are drawn once, on the first call, from the seed.
class Projection {
 public:
  explicit Projection(uint64_t seed) : generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

  at::Tensor operator()(const std::vector<at::Tensor>& outputs) {
    draw(outputs);
    at::Tensor loss = at::zeros({}, at::kDouble);
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (!outputs[i].defined()) continue;
      loss = loss + (outputs[i].to(at::kDouble) * weights_[i]).sum().to(at::kCPU);
    }
    return loss;
  }

  // L(plus) - L(minus) as sum_i <y+_i - y-_i, R_i>: subtracting the outputs before the
  // reduction avoids the cancellation of two large, nearly equal sums, which would
  // otherwise dominate the finite-difference error on big outputs.
  double difference(const std::vector<at::Tensor>& plus, const std::vector<at::Tensor>& minus) {
    draw(plus);
    TORCH_CHECK(minus.size() == plus.size(), "gradcheck: the function changed its output count");
    double sum = 0.0;
    for (size_t i = 0; i < plus.size(); ++i) {
      if (!plus[i].defined()) continue;
      const at::Tensor delta = plus[i].to(at::kDouble) - minus[i].to(at::kDouble);
      sum += (delta * weights_[i]).sum().item<double>();
    }
    return sum;
  }

 private:
  void draw(const std::vector<at::Tensor>& outputs) {
    if (weights_.empty()) {
      for (const auto& y : outputs) {
        weights_.push_back(y.defined() ? at::randn(y.sizes(), generator_, at::kDouble).to(y.device())
                                       : at::Tensor());
      }
    }
    TORCH_CHECK(weights_.size() == outputs.size(), "gradcheck: the function returned ",
                outputs.size(), " outputs, earlier ", weights_.size());
  }

  at::Generator generator_;
  std::vector<at::Tensor> weights_;
};

std::vector<int64_t> sample_indices(int64_t numel, int64_t max_samples, std::mt19937_64& rng) {
  std::vector<int64_t> all(numel);
  std::iota(all.begin(), all.end(), 0);
  if (max_samples <= 0 || max_samples >= numel) return all;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(max_samples);
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

double GradcheckReport::worst_rel_error() const {
  double worst = 0.0;
  for (const auto& input : inputs) {
    // A NaN error is the worst of all; std::max(worst, NaN) would return worst.
    if (std::isnan(input.max_rel_error)) return input.max_rel_error;
    worst = std::max(worst, input.max_rel_error);
  }
  return worst;
}

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  std::ostringstream out;
  out << std::setprecision(4) << std::scientific << value;
  return out.str();
}

GradcheckReport gradcheck(const TensorFunction& fn, const std::vector<NamedInput>& inputs,
                          const GradcheckOptions& options) {
  for (const auto& input : inputs) {
    TORCH_CHECK(!input.value.defined() || input.value.scalar_type() == at::kDouble,
                "gradcheck: input `", input.name, "` expected dtype float64 (finite "
                "differences need it), got ", input.value.scalar_type());
  }
  TORCH_CHECK(std::isfinite(options.step) && options.step > 0,
              "gradcheck: option `step` expected a finite number > 0, got ", options.step);
  Projection project(options.seed);

  // Analytic gradients by autograd.
  std::vector<at::Tensor> leaves;
  torch::autograd::variable_list differentiable;
  for (const auto& input : inputs) {
    leaves.push_back(input.value.defined()
                         ? input.value.detach().clone().requires_grad_(true)
                         : at::Tensor());
    if (leaves.back().defined()) differentiable.push_back(leaves.back());
  }
  const at::Tensor loss = project(fn(leaves));
  const auto grads = torch::autograd::grad({loss}, differentiable, {}, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);

  // Numeric gradients: perturb one element of a detached copy at a time.
  const at::NoGradGuard no_grad;
  std::vector<at::Tensor> point;
  for (const auto& input : inputs) {
    point.push_back(input.value.defined() ? input.value.detach().clone() : at::Tensor());
  }
  std::mt19937_64 rng(options.seed ^ 0x9e3779b97f4a7c15ULL);

  GradcheckReport report;
  size_t next_grad = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!point[i].defined()) continue;
    const at::Tensor analytic_grad = grads[next_grad++];
    const at::Tensor analytic = analytic_grad.defined()
                                    ? analytic_grad.to(at::kCPU).contiguous().view(-1)
                                    : at::zeros({point[i].numel()}, at::kDouble);
    const double* a = analytic.data_ptr<double>();
    at::Tensor flat = point[i].view(-1);  // a clone: contiguous, shares point[i]'s storage

    InputReport r;
    r.name = inputs[i].name;
    r.numel = point[i].numel();
    for (const int64_t j : sample_indices(r.numel, options.max_samples_per_input, rng)) {
      at::Tensor element = flat.narrow(0, j, 1);
      element.add_(options.step);
      const std::vector<at::Tensor> plus = fn(point);
      element.sub_(2 * options.step);
      const std::vector<at::Tensor> minus = fn(point);
      element.add_(options.step);
      const double numeric = project.difference(plus, minus) / (2 * options.step);
      const double error = std::abs(a[j] - numeric);
      ++r.checked;
      r.grad_scale = std::max(r.grad_scale, std::abs(numeric));
      // A NaN error is the worst possible and stays the worst.
      const bool worse = std::isnan(error) || error > r.max_abs_error || r.worst_index < 0;
      if (!std::isnan(r.max_abs_error) && worse) {
        r.max_abs_error = error;
        r.worst_index = j;
        r.worst_analytic = a[j];
        r.worst_numeric = numeric;
      }
    }
    r.max_rel_error = r.grad_scale > 0 ? r.max_abs_error / r.grad_scale : r.max_abs_error;
    report.inputs.push_back(r);
  }
  return report;
}

std::string to_json(const InputReport& r, const std::string& context, double threshold) {
  std::ostringstream out;
  out << '{' << context << (context.empty() ? "" : ",") << "\"input\":\"" << r.name
      << "\",\"numel\":" << r.numel << ",\"checked\":" << r.checked
      << ",\"max_rel_error\":" << json_number(r.max_rel_error)
      << ",\"max_abs_error\":" << json_number(r.max_abs_error)
      << ",\"grad_scale\":" << json_number(r.grad_scale) << ",\"worst_index\":" << r.worst_index
      << ",\"worst_analytic\":" << json_number(r.worst_analytic)
      << ",\"worst_numeric\":" << json_number(r.worst_numeric)
      << ",\"pass\":" << (r.max_rel_error <= threshold ? "true" : "false") << '}';
  return out.str();
}

}  // namespace comba::tools
