// The harness of the fused-function tests: run a function on leaf copies of its inputs and
// backpropagate a fixed output gradient, compare every output and input gradient with a
// reference under a tolerance rule, and check fp64 gradients by central differences.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "fused_reference.h"

namespace comba::nn::testing {

using Tensors = std::vector<torch::Tensor>;
using Fn = std::function<Tensors(const Tensors&)>;

struct Run {
  Tensors out, grad;  // outputs; grads of the inputs (zeros where autograd gave none)
};

// sum_i <out_i, dout_i> in fp64, skipping undefined douts.
inline torch::Tensor loss_of(const Tensors& out, const Tensors& dout) {
  torch::Tensor loss;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!dout[i].defined()) continue;
    const auto term = (out[i].to(torch::kDouble) * dout[i].to(torch::kDouble)).sum();
    loss = loss.defined() ? loss + term : term;
  }
  return loss;
}

// fn on leaf copies of the inputs (cast to `dtype` when given), backpropagating loss_of.
inline Run run(const Fn& fn, const Tensors& inputs, const Tensors& dout, c10::optional<torch::Dtype> dtype = c10::nullopt) {
  Tensors leaves;
  for (const auto& t : inputs) leaves.push_back((dtype ? t.to(*dtype) : t).detach().clone().requires_grad_(true));
  const auto out = fn(leaves);
  loss_of(out, dout).backward();
  Run r;
  for (const auto& o : out) r.out.push_back(o.detach());
  for (const auto& l : leaves) r.grad.push_back(l.grad().defined() ? l.grad() : torch::zeros_like(l));
  return r;
}

// Every output and grad of `got` within tol(name, error of the twin's same entry) of `ref`.
inline void expect_close(const Run& got, const Run& ref, const std::vector<std::string>& out_names,
                  const std::vector<std::string>& grad_names,
                  const std::function<double(const std::string&, double)>& tol, const Run* twin = nullptr) {
  const auto check = [&](const std::string& what, const torch::Tensor& a, const torch::Tensor& r,
                         const torch::Tensor* t) {
    const double twin_err = t != nullptr ? rel_error(*t, r) : 0.0;
    const double err = rel_error(a, r);
    EXPECT_LE(err, tol(what, twin_err)) << what << " (twin error " << twin_err << ")";
  };
  for (size_t i = 0; i < out_names.size(); ++i) check(out_names[i], got.out[i], ref.out[i], twin ? &twin->out[i] : nullptr);
  for (size_t i = 0; i < grad_names.size(); ++i) {
    check(grad_names[i], got.grad[i], ref.grad[i], twin ? &twin->grad[i] : nullptr);
  }
}

// Central differences of loss_of(fn(inputs)) along one random direction per input, against
// the analytic directional derivative <grad_i, v> (fp64 inputs).
inline void expect_finite_differences(const Fn& fn, const Tensors& inputs, const Tensors& dout, const Tensors& grads) {
  torch::NoGradGuard no_grad;
  constexpr double h = 1e-6;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto v = torch::randn_like(inputs[i]);
    Tensors plus = inputs, minus = inputs;
    plus[i] = inputs[i] + h * v;
    minus[i] = inputs[i] - h * v;
    const double numeric = (loss_of(fn(plus), dout) - loss_of(fn(minus), dout)).item<double>() / (2 * h);
    const double analytic = (grads[i] * v).sum().item<double>();
    EXPECT_NEAR(numeric, analytic, 1e-6 * std::max(1.0, std::abs(analytic))) << "input " << i;
  }
}

}  // namespace comba::nn::testing
