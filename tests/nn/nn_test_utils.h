// Shared pieces of the nn tests: the tiny config, tensor comparisons, and an independent fp64
// per-token implementation of the Comba layer written straight from SPEC section 3 (loops
// over time, no operator call), used as the reference the layer is checked against.
#pragma once
#include "comba/nn.h"
#include "support/tiny_config.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace comba::nn::testing {

using comba::testing::tiny_config;  // the tests' tiny model family (support/tiny_config.h)

inline CombaLayerOptions tiny_layer(int64_t num_heads = 2, int64_t num_v_heads = 0) {
  return CombaLayerOptions(32).head_dim(16).num_heads(num_heads).num_v_heads(num_v_heads).expand_v(1.0);
}

// The CI machine has 2 cores shared with compilers: intra-op threads only contend.
inline const bool kSingleThreaded = [] {
  torch::set_num_threads(1);
  return true;
}();

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.numel() == 0) return 0.0;
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// The unit roundoff scale of a dtype (machine epsilon): tolerances are multiples of it.
inline double dtype_epsilon(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kBFloat16: return 1.0 / 128;   // 2^-7
    case torch::kHalf: return 1.0 / 1024;      // 2^-10
    case torch::kFloat: return 1.1920929e-07;  // 2^-23
    default: return 2.220446049250313e-16;     // fp64
  }
}

// Largest |a - b| relative to the largest |b| (a scale-aware error).
inline double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = b.to(torch::kDouble).abs().max().item<double>();
  return max_abs_diff(a, b) / std::max(scale, 1e-30);
}

// Makes the layer's parameters non-trivial (A_log etc. random, conv taps O(1)), so that
// every term of the layer visibly matters in a comparison.
inline void randomize_layer(CombaLayerImpl& layer, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& item : layer.named_parameters()) {
    auto& p = item.value();
    const auto& name = item.key();
    if (name == "A_log") p.copy_(torch::empty_like(p).uniform_(-2.0, 0.5));
    else if (name == "dt_bias") p.copy_(torch::empty_like(p).uniform_(-1.0, 1.0));
    else if (name == "D" || name == "decay") p.copy_(torch::empty_like(p).uniform_(-1.0, 1.0));
    else if (name.find("norm") != std::string::npos) p.copy_(1.0 + 0.2 * torch::randn_like(p));
    else if (name.find("conv1d") != std::string::npos) p.copy_(0.5 * torch::randn_like(p));
    else p.copy_(0.2 * torch::randn_like(p));
  }
}

// SPEC section 3, token by token in fp64, for dense input x [B, T, hidden]. With
// `differentiable`, gradients flow back to the layer's parameters through the fp64 casts.
inline torch::Tensor reference_layer(CombaLayerImpl& layer, const torch::Tensor& x_in,
                                     bool differentiable = false) {
  torch::AutoGradMode grad_mode(differentiable);
  const auto& o = layer.options;
  const auto f64 = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
  const auto x = f64(x_in);
  const int64_t B = x.size(0), T = x.size(1), H = o.num_heads(), K = o.head_dim();
  const int64_t HV = layer.value_heads(), V = layer.head_v_dim(), group = HV / H;
  const auto linear = [&](const torch::nn::Linear& l) { return torch::matmul(x, f64(l->weight).t()); };
  const auto conv_silu = [&](const torch::Tensor& u, const ShortConvolution& conv) {
    if (!o.use_short_conv()) return torch::silu(u);
    const auto w = f64(conv->weight).squeeze(1);  // [C, Kc]
    const int64_t taps = w.size(1);
    auto y = torch::zeros_like(u);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < taps && j <= t; ++j)  // tap Kc-1 reads x_t, tap Kc-1-j reads x_{t-j}
        y.select(1, t) += w.select(1, taps - 1 - j) * u.select(1, t - j);
    if (conv->bias.defined()) y = y + f64(conv->bias);
    return torch::silu(y);
  };
  auto q = conv_silu(linear(layer.q_proj), layer.q_conv1d).view({B, T, H, K});
  auto k = conv_silu(linear(layer.k_proj), layer.k_conv1d).view({B, T, H, K});
  auto v = conv_silu(linear(layer.v_proj), layer.v_conv1d).view({B, T, HV, V});
  auto p = k;
  if (o.use_inner_decay()) p = k * torch::sigmoid(f64(layer.decay)).view({1, 1, H, 1});
  if (o.use_output_correction()) q = q - f64(layer.D).view({1, 1, H, 1}) * p;
  auto beta = torch::sigmoid(linear(layer.b_proj));
  if (o.allow_neg_eigval()) beta = beta * 2;
  const auto g = -torch::exp(f64(layer.A_log)) * torch::softplus(linear(layer.a_proj) + f64(layer.dt_bias));
  const auto l2 = [](const torch::Tensor& t) { return t / torch::sqrt((t * t).sum(-1, true) + 1e-6); };
  // GVA: value head j reads query/key head j / group.
  const auto expand = [&](const torch::Tensor& t) { return l2(t).repeat_interleave(group, 2); };  // [B,T,HV,K]
  const auto qn = expand(q) / std::sqrt(static_cast<double>(K)), kn = expand(k), pn = expand(p);
  auto S = torch::zeros({B, HV, K, V}, x.options());
  std::vector<torch::Tensor> outs;
  for (int64_t t = 0; t < T; ++t) {
    const auto kt = kn.select(1, t), pt = pn.select(1, t), qt = qn.select(1, t);  // [B,HV,K]
    const auto correction = torch::einsum("bhkv,bhk->bhv", {S, pt});
    const auto bt = beta.select(1, t).unsqueeze(-1);                               // [B,HV,1]
    const auto delta = bt * (v.select(1, t) - correction);                         // [B,HV,V]
    S = torch::exp(g.select(1, t)).view({B, HV, 1, 1}) * S + kt.unsqueeze(-1) * delta.unsqueeze(-2);
    outs.push_back(torch::einsum("bhkv,bhk->bhv", {S, qt}));
  }
  auto out = torch::stack(outs, 1);  // [B, T, HV, V]
  auto normed = out * torch::rsqrt(out.square().mean(-1, true) + o.norm_eps()) * f64(layer.o_norm->weight);
  if (o.use_output_gate()) normed = normed * torch::sigmoid(linear(layer.g_proj).view({B, T, HV, V}));
  return torch::matmul(normed.reshape({B, T, HV * V}), f64(layer.o_proj->weight).t());
}

// Causality of a causal LM, dense, packed and padded, in train and eval mode: changing the
// tokens after position t changes no logit up to t and some logit after it. ids [2, T];
// the packed case packs row 0 as two documents split at `first_document`.
inline void expect_causal(CombaForCausalLM& lm, const torch::Tensor& ids, const std::vector<int64_t>& positions,
                          int64_t first_document) {
  torch::NoGradGuard no_grad;
  const int64_t steps = ids.size(1);
  for (bool train : {true, false}) {
    lm->train(train);
    for (int64_t t : positions) {
      auto changed = ids.clone();
      changed.slice(1, t + 1).random_(0, 64);
      const auto check = [&](const LMInputs& inputs, const torch::Tensor& a, const torch::Tensor& b) {
        const auto before = lm(a, inputs).logits, after = lm(b, inputs).logits;
        EXPECT_LT(max_abs_diff(before.slice(1, 0, t + 1), after.slice(1, 0, t + 1)), 1e-5) << t;
        EXPECT_GT(max_abs_diff(before.slice(1, t + 1), after.slice(1, t + 1)), 1e-3) << t;
      };
      check(LMInputs(), ids, changed);
      check(LMInputs().cu_seqlens(torch::tensor(std::vector<int64_t>{0, first_document, steps})),
            ids.slice(0, 0, 1), changed.slice(0, 0, 1));
      auto mask = torch::ones({2, steps}, torch::kLong);
      mask[0].slice(0, 0, 2).fill_(0);
      check(LMInputs().attention_mask(mask), ids, changed);
    }
  }
}

}  // namespace comba::nn::testing
