// The softmax-attention layer (hybrid models) against an fp64 reference written here from
// the math: per sequence, projections, RoPE from its formula (GPT-NeoX halves, inv_freq =
// theta^(-2i/D), positions from each sequence's first token), then per head the score
// matrix q k^T / sqrt(D) masked to the causal window, softmax, times v, output projection.
// GPU cases (bf16 through ATen's flash kernels) skip without CUDA. Tolerances: fp64 layer
// vs fp64 reference 1e-10 (same math, different summation order); fp32 layer 1e-5 of the
// output scale; bf16 3e-2 of the output scale (8 mantissa bits, each projection rounds).
#include "comba/nn/attention.h"
#include "comba/nn/cache.h"
#include "comba/nn/rotary.h"
#include "nn_test_utils.h"
#include "support/require.h"

#include <torch/torch.h>

#include <cmath>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

constexpr double kFp64Tolerance = 1e-10;
constexpr double kFp32Tolerance = 1e-5;
constexpr double kBf16Tolerance = 3e-2;
constexpr double kBf16GradTolerance = 5e-2;

// The reference's own fp64 copies of the layer's parameters (leaves, so that its autograd
// gives gradients independent of the layer's).
struct RefParams {
  torch::Tensor wq, bq, wk, bk, wv, bv, wo;
};

RefParams ref_params(AttentionImpl& layer, bool requires_grad = false) {
  const auto copy = [&](const torch::Tensor& t) {
    if (!t.defined()) return torch::Tensor();
    return t.detach().to(torch::kCPU, torch::kDouble).clone().requires_grad_(requires_grad);
  };
  return {copy(layer.q_proj->weight), copy(layer.q_proj->bias), copy(layer.k_proj->weight), copy(layer.k_proj->bias),
          copy(layer.v_proj->weight), copy(layer.v_proj->bias), copy(layer.o_proj->weight)};
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  auto y = torch::matmul(x, w.t());
  return b.defined() ? y + b : y;
}

// RoPE from its formula on x [T, heads, D] at positions first .. first + T - 1.
torch::Tensor rope_reference(const torch::Tensor& x, int64_t first, double theta) {
  const int64_t T = x.size(0), D = x.size(2), half = D / 2;
  auto out = torch::empty_like(x);
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    for (int64_t t = 0; t < T; ++t) {
      const double angle = static_cast<double>(first + t) * inv_freq;
      const auto x1 = x.select(0, t).select(-1, i), x2 = x.select(0, t).select(-1, i + half);
      out.select(0, t).select(-1, i).copy_(x1 * std::cos(angle) - x2 * std::sin(angle));
      out.select(0, t).select(-1, i + half).copy_(x2 * std::cos(angle) + x1 * std::sin(angle));
    }
  }
  return out;
}

// One sequence x [T, hidden] (any dtype, taken to fp64) -> [T, hidden] fp64.
torch::Tensor reference_sequence(const AttentionOptions& o, const RefParams& p, const torch::Tensor& x_in) {
  const auto x = x_in.to(torch::kCPU, torch::kDouble);
  const int64_t T = x.size(0), H = o.num_heads(), HKV = o.num_kv_heads() > 0 ? o.num_kv_heads() : H;
  const int64_t D = o.hidden_size() / H, w = o.window_size();
  const auto q = rope_reference(linear(x, p.wq, p.bq).view({T, H, D}), 0, o.rope_theta());
  const auto k = rope_reference(linear(x, p.wk, p.bk).view({T, HKV, D}), 0, o.rope_theta());
  const auto v = linear(x, p.wv, p.bv).view({T, HKV, D});
  auto allowed = torch::zeros({T, T}, torch::kBool);
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      if (w == 0 || j > i - w) allowed[i][j] = true;
    }
  }
  std::vector<torch::Tensor> heads;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / HKV);
    const auto scores = torch::matmul(q.select(1, h), k.select(1, g).t()) / std::sqrt(static_cast<double>(D));
    const auto probs = torch::softmax(scores.masked_fill(allowed.logical_not(), -INFINITY), -1);
    heads.push_back(torch::matmul(probs, v.select(1, g)));  // [T, D]
  }
  return torch::matmul(torch::cat(heads, -1), p.wo.t());
}

// Dense rows of x [B, T, hidden], each with its token mask row (1 = token) or all tokens:
// reference at the tokens, zeros at padding.
torch::Tensor reference_batch(const AttentionOptions& o, const RefParams& p, const torch::Tensor& x,
                              const torch::Tensor& mask = {}) {
  const int64_t B = x.size(0), T = x.size(1);
  auto out = torch::zeros({B, T, x.size(2)}, torch::kDouble);
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < B; ++b) {
    auto row = torch::zeros({T, x.size(2)}, torch::kDouble);
    if (!mask.defined()) {
      row = reference_sequence(o, p, x[b]);
    } else {
      const auto idx = mask[b].to(torch::kCPU).nonzero().squeeze(1);
      if (idx.numel() > 0) {
        row = row.index_copy(0, idx, reference_sequence(o, p, x[b].to(torch::kCPU).index_select(0, idx)));
      }
    }
    rows.push_back(row);
  }
  return torch::stack(rows);
}

// Packed x [1, total, hidden] with boundaries `cu`.
torch::Tensor reference_packed(const AttentionOptions& o, const RefParams& p, const torch::Tensor& x,
                               const std::vector<int64_t>& cu) {
  std::vector<torch::Tensor> parts;
  for (size_t n = 0; n + 1 < cu.size(); ++n) {
    if (cu[n + 1] > cu[n]) parts.push_back(reference_sequence(o, p, x[0].slice(0, cu[n], cu[n + 1])));
  }
  return torch::cat(parts).unsqueeze(0);
}

// Non-trivial weights and biases (O(1) scores so the softmax is far from uniform).
Attention make_layer(const AttentionOptions& options, torch::ScalarType dtype = torch::kDouble, uint64_t seed = 7) {
  torch::manual_seed(seed);
  Attention layer(options);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : layer->parameters()) p.copy_(0.3 * torch::randn_like(p));
  }
  layer->to(dtype);
  return layer;
}

AttentionOptions small(int64_t heads = 4, int64_t kv_heads = 0, int64_t window = 0, bool bias = false) {
  return AttentionOptions(32, heads).num_kv_heads(kv_heads).window_size(window).qkv_bias(bias).rope_theta(500.0);
}

torch::Tensor cu_tensor(const std::vector<int64_t>& cu) { return torch::tensor(cu, torch::kLong); }

struct Case {
  const char* name;
  AttentionOptions options;
};

std::vector<Case> cases() {
  return {{"causal", small()},
          {"window", small(4, 0, 3)},
          {"gqa2", small(4, 2)},
          {"mqa_window", small(4, 1, 4)},
          {"bias_gqa", small(4, 2, 0, true)},
          {"two_heads", small(2, 0, 5, true)}};
}

}  // namespace

TEST(Attention, ParametersAndNoSavedBuffers) {
  Attention layer(small(4, 2, 0, true));
  std::vector<std::string> names;
  for (const auto& item : layer->named_parameters()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                              "v_proj.weight", "v_proj.bias", "o_proj.weight"}));
  EXPECT_EQ(layer->k_proj->weight.sizes(), (std::vector<int64_t>{16, 32}));  // HKV * D = 2 * 8
  EXPECT_EQ(layer->q_proj->weight.sizes(), (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(layer->o_proj->weight.sizes(), (std::vector<int64_t>{32, 32}));
  EXPECT_TRUE(layer->named_buffers().is_empty());
  EXPECT_EQ(layer->head_dim(), 8);
  EXPECT_EQ(layer->kv_heads(), 2);
  EXPECT_EQ(Attention(small(4))->named_parameters().size(), 4u);  // no bias
}

TEST(Attention, FromSpec) {
  CombaConfig config;
  config.hidden_size = 64;
  AttentionSpec spec;
  spec.layers = {1};
  spec.num_heads = 8;
  spec.qkv_bias = true;
  spec.window_size = 16;
  spec.rope_theta = 1e6;
  const auto o = AttentionOptions::from_spec(config, spec);
  EXPECT_EQ(o.hidden_size(), 64);
  EXPECT_EQ(o.num_heads(), 8);
  EXPECT_EQ(o.num_kv_heads(), 8);  // null = num_heads
  EXPECT_TRUE(o.qkv_bias());
  EXPECT_EQ(o.window_size(), 16);
  EXPECT_EQ(o.rope_theta(), 1e6);
  spec.num_kv_heads = 2;
  EXPECT_EQ(AttentionOptions::from_spec(config, spec).num_kv_heads(), 2);
}

TEST(Attention, BadOptionsNameTheOption) {
  const auto expect_error = [](const AttentionOptions& o, const std::string& needle) {
    try {
      Attention layer(o);
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(AttentionOptions(30, 4), "option `num_heads` expected to divide hidden_size");
  expect_error(AttentionOptions(32, 4).num_kv_heads(3), "option `num_kv_heads`");
  expect_error(AttentionOptions(12, 4), "even head_dim");  // head_dim 3
  expect_error(AttentionOptions(32, 4).window_size(-1), "option `window_size`");
  expect_error(AttentionOptions(32, 0), "option `num_heads`");
  expect_error(AttentionOptions(32, 4).rope_theta(0.0), "option `rope_theta`");
}

TEST(Attention, BadInputsNameTheArgument) {
  auto layer = make_layer(small());
  const auto x = torch::randn({1, 6, 32}, torch::kDouble);
  EXPECT_THROW(layer(torch::randn({1, 6, 16}, torch::kDouble)), c10::Error);
  EXPECT_THROW(layer(x, CombaLayerInputs().cu_seqlens(cu_tensor({0, 2, 5}))), c10::Error);  // ends before T
  EXPECT_THROW(layer(x, CombaLayerInputs().cu_seqlens(cu_tensor({0, 4, 2, 6}))), c10::Error);
  EXPECT_THROW(layer(x, CombaLayerInputs().attention_mask(torch::ones({1, 6})).cu_seqlens(cu_tensor({0, 6}))),
               c10::Error);
}

TEST(Attention, RotaryMatchesFormula) {
  torch::manual_seed(1);
  const auto x = torch::randn({2, 5, 3, 8}, torch::kDouble);
  const auto positions = torch::tensor({3, 4, 5, 6, 7, 0, 1, 2, 3, 4}, torch::kLong).view({2, 5});
  const auto out = apply_rotary(x, positions, 100.0);
  EXPECT_LT(max_abs_diff(out[0], rope_reference(x[0], 3, 100.0)), 1e-12);
  EXPECT_LT(max_abs_diff(out[1], rope_reference(x[1], 0, 100.0)), 1e-12);
  // fp32 follows the fp64 result to fp32 rounding.
  EXPECT_LT(max_abs_diff(apply_rotary(x.to(torch::kFloat), positions, 100.0), out), 1e-5);
}

TEST(Attention, DenseMatchesReferenceFp64AndFp32) {
  torch::manual_seed(2);
  const auto x = torch::randn({2, 9, 32}, torch::kDouble);
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto expected = reference_batch(c.options, ref_params(*layer), x);
    EXPECT_LT(max_abs_diff(layer(x), expected), kFp64Tolerance) << c.name;
    layer->to(torch::kFloat);
    EXPECT_LT(rel_diff(layer(x.to(torch::kFloat)), expected), kFp32Tolerance) << c.name;
  }
}

// bf16 on the CPU (ATen's math path, RoPE tables rounded to bf16 as fla's) and a window
// wider than the sequence (which is plain causal attention).
TEST(Attention, Bf16AndWideWindowMatchReference) {
  torch::manual_seed(12);
  const auto x = torch::randn({2, 9, 32}, torch::kDouble);
  auto wide = make_layer(small(4, 2, 20));
  EXPECT_LT(max_abs_diff(wide(x), reference_batch(wide->options, ref_params(*wide), x)), kFp64Tolerance);
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options, torch::kBFloat16);
    const auto xb = x.to(torch::kBFloat16);
    EXPECT_LT(rel_diff(layer(xb), reference_batch(c.options, ref_params(*layer), xb)), kBf16Tolerance) << c.name;
  }
}

TEST(Attention, PackedMatchesReferencePerSequence) {
  torch::manual_seed(3);
  const std::vector<int64_t> cu = {0, 5, 6, 13};  // lengths 5, 1, 7
  const auto x = torch::randn({1, 13, 32}, torch::kDouble);
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto expected = reference_packed(c.options, ref_params(*layer), x, cu);
    EXPECT_LT(max_abs_diff(layer(x, CombaLayerInputs().cu_seqlens(cu_tensor(cu))), expected), kFp64Tolerance)
        << c.name;
    layer->to(torch::kFloat);
    EXPECT_LT(rel_diff(layer(x.to(torch::kFloat), CombaLayerInputs().cu_seqlens(cu_tensor(cu))), expected),
              kFp32Tolerance)
        << c.name;
  }
}

TEST(Attention, PaddingLeftAndRightGivesZerosAndTheUnpaddedResult) {
  torch::manual_seed(4);
  const auto x = torch::randn({3, 8, 32}, torch::kDouble);
  const auto left = torch::tensor({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1},
                                  torch::kLong).view({3, 8});
  const auto right = torch::tensor({1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
                                   torch::kLong).view({3, 8});
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto p = ref_params(*layer);
    for (const auto& mask : {left, right}) {
      const auto out = layer(x, CombaLayerInputs().attention_mask(mask));
      EXPECT_LT(max_abs_diff(out, reference_batch(c.options, p, x, mask)), kFp64Tolerance) << c.name;
      EXPECT_EQ(out.masked_select(mask.eq(0).unsqueeze(-1)).abs().max().item<double>(), 0.0) << c.name;
    }
    // A longer mask (decoding convention): its last T columns apply.
    const auto longer = torch::cat({torch::ones({3, 2}, torch::kLong), left}, 1);
    EXPECT_LT(max_abs_diff(layer(x, CombaLayerInputs().attention_mask(longer)), reference_batch(c.options, p, x, left)),
              kFp64Tolerance);
  }
}

TEST(Attention, GradientsMatchReferenceAutograd) {
  torch::manual_seed(5);
  for (const auto& c : {cases()[1], cases()[3], cases()[4]}) {
    for (int variant = 0; variant < 3; ++variant) {  // dense, packed, padded
      auto layer = make_layer(c.options);
      auto p = ref_params(*layer, /*requires_grad=*/true);
      const std::vector<int64_t> cu = {0, 4, 5, 11};
      const auto x = torch::randn({variant == 1 ? 1 : 2, variant == 1 ? 11 : 7, 32}, torch::kDouble);
      const auto mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, torch::kLong).view({2, 7});
      const auto weight = torch::randn({x.size(0), x.size(1), 32}, torch::kDouble);
      const auto x_layer = x.clone().requires_grad_(true), x_ref = x.clone().requires_grad_(true);
      CombaLayerInputs inputs;
      torch::Tensor expected;
      if (variant == 0) expected = reference_batch(c.options, p, x_ref);
      if (variant == 1) {
        inputs.cu_seqlens(cu_tensor(cu));
        expected = reference_packed(c.options, p, x_ref, cu);
      }
      if (variant == 2) {
        inputs.attention_mask(mask);
        expected = reference_batch(c.options, p, x_ref, mask);
      }
      (layer(x_layer, inputs) * weight).sum().backward();
      (expected * weight).sum().backward();
      const auto name = std::string(c.name) + " variant " + std::to_string(variant);
      EXPECT_LT(max_abs_diff(x_layer.grad(), x_ref.grad()), 1e-9) << name;
      EXPECT_LT(max_abs_diff(layer->q_proj->weight.grad(), p.wq.grad()), 1e-9) << name;
      EXPECT_LT(max_abs_diff(layer->k_proj->weight.grad(), p.wk.grad()), 1e-9) << name;
      EXPECT_LT(max_abs_diff(layer->v_proj->weight.grad(), p.wv.grad()), 1e-9) << name;
      EXPECT_LT(max_abs_diff(layer->o_proj->weight.grad(), p.wo.grad()), 1e-9) << name;
      if (c.options.qkv_bias()) {
        EXPECT_LT(max_abs_diff(layer->q_proj->bias.grad(), p.bq.grad()), 1e-9) << name;
        EXPECT_LT(max_abs_diff(layer->k_proj->bias.grad(), p.bk.grad()), 1e-9) << name;
        EXPECT_LT(max_abs_diff(layer->v_proj->bias.grad(), p.bv.grad()), 1e-9) << name;
      }
    }
  }
}

// Prefill then single-token steps with a state equal the full forward; with a window
// shorter than the sequence, the cache keeps window columns.
TEST(Attention, DecodeStepsEqualFullForward) {
  torch::manual_seed(6);
  const auto x = torch::randn({2, 12, 32}, torch::kDouble);
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto expected = reference_batch(c.options, ref_params(*layer), x);
    LayerState state;
    std::vector<torch::Tensor> outs = {layer(x.slice(1, 0, 5), CombaLayerInputs().state(&state))};
    for (int64_t t = 5; t < 12; ++t) {
      outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().state(&state)));
      const int64_t w = c.options.window_size();
      EXPECT_EQ(state.key.size(2), w > 0 ? std::min(w, t + 1) : t + 1) << c.name;
    }
    EXPECT_LT(max_abs_diff(torch::cat(outs, 1), expected), kFp64Tolerance) << c.name;
    EXPECT_EQ(state.positions[0].item<int64_t>(), 12);
    EXPECT_EQ(state.key.sizes()[1], layer->kv_heads());
    // A multi-token chunk after the prefill (cache plus new tokens in one call).
    LayerState chunked;
    auto first = layer(x.slice(1, 0, 4), CombaLayerInputs().state(&chunked));
    auto second = layer(x.slice(1, 4, 9), CombaLayerInputs().state(&chunked));
    auto third = layer(x.slice(1, 9, 12), CombaLayerInputs().state(&chunked));
    EXPECT_LT(max_abs_diff(torch::cat({first, second, third}, 1), expected), kFp64Tolerance) << c.name;
  }
}

// Generation's layout: left-padded prompts of different lengths, then steps whose mask
// grows by a column of ones.
TEST(Attention, DecodeWithLeftPaddedRowsEqualsEachRowAlone) {
  torch::manual_seed(7);
  const int64_t B = 3, prompt = 6, steps = 6;
  const auto x = torch::randn({B, prompt + steps, 32}, torch::kDouble);
  const std::vector<int64_t> pads = {2, 0, 5};
  auto mask = torch::ones({B, prompt}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) mask[b].slice(0, 0, pads[static_cast<size_t>(b)]).fill_(0);
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto p = ref_params(*layer);
    LayerState state;
    auto m = mask.clone();
    std::vector<torch::Tensor> outs = {
        layer(x.slice(1, 0, prompt), CombaLayerInputs().attention_mask(m).state(&state))};
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      m = torch::cat({m, torch::ones({B, 1}, torch::kLong)}, 1);
      outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().attention_mask(m).state(&state)));
    }
    const auto out = torch::cat(outs, 1);
    EXPECT_LT(max_abs_diff(out, reference_batch(c.options, p, x, m)), kFp64Tolerance) << c.name;
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_EQ(state.positions[b].item<int64_t>(), prompt + steps - pads[static_cast<size_t>(b)]) << c.name;
    }
  }
}

// Packed chunks of different lengths per sequence (0 included) against a cache: the new
// tokens are right aligned and the cache re-aligned afterwards.
TEST(Attention, PackedChunksWithCacheEqualFullForward) {
  torch::manual_seed(8);
  const std::vector<std::vector<int64_t>> chunks = {{3, 5, 1}, {2, 0, 4}, {1, 1, 1}, {4, 2, 0}};
  std::vector<int64_t> totals(3, 0);
  for (const auto& chunk : chunks) {
    for (size_t n = 0; n < 3; ++n) totals[n] += chunk[n];
  }
  std::vector<torch::Tensor> seqs;
  for (const int64_t length : totals) seqs.push_back(torch::randn({length, 32}, torch::kDouble));
  for (const auto& c : cases()) {
    auto layer = make_layer(c.options);
    const auto p = ref_params(*layer);
    LayerState state;
    std::vector<std::vector<torch::Tensor>> outs(3);
    std::vector<int64_t> offsets(3, 0);
    for (const auto& chunk : chunks) {
      std::vector<torch::Tensor> parts;
      std::vector<int64_t> cu = {0};
      for (size_t n = 0; n < 3; ++n) {
        parts.push_back(seqs[n].slice(0, offsets[n], offsets[n] + chunk[n]));
        cu.push_back(cu.back() + chunk[n]);
      }
      const auto out =
          layer(torch::cat(parts).unsqueeze(0), CombaLayerInputs().cu_seqlens(cu_tensor(cu)).state(&state));
      for (size_t n = 0; n < 3; ++n) {
        outs[n].push_back(out[0].slice(0, cu[n], cu[n + 1]));
        offsets[n] += chunk[n];
      }
    }
    for (size_t n = 0; n < 3; ++n) {
      EXPECT_LT(max_abs_diff(torch::cat(outs[n]), reference_sequence(c.options, p, seqs[n])), kFp64Tolerance)
          << c.name << " sequence " << n;
      EXPECT_EQ(state.positions[static_cast<int64_t>(n)].item<int64_t>(), totals[n]);
    }
    // Right aligned: each row's valid columns are its last ones.
    const auto valid = state.key_valid.to(torch::kLong);
    const auto count = valid.sum(1);
    for (int64_t n = 0; n < 3; ++n) {
      const int64_t L = valid.size(1), k = count[n].item<int64_t>();
      EXPECT_EQ(valid[n].slice(0, L - k).sum().item<int64_t>(), k);
    }
  }
}

TEST(Attention, CacheSelectKeepsTheChosenRows) {
  torch::manual_seed(9);
  const auto opts = small(4, 2, 4);
  auto layer = make_layer(opts);
  const auto p = ref_params(*layer);
  const auto x = torch::randn({3, 10, 32}, torch::kDouble);
  CombaCache cache(1);
  auto first = layer(x.slice(1, 0, 6), CombaLayerInputs().state(&cache.layer(0)));
  const auto index = torch::tensor({2, 0}, torch::kLong);
  cache.select(index);
  EXPECT_EQ(cache.layer(0).key.size(0), 2);
  EXPECT_EQ(cache.layer(0).key_valid.size(0), 2);
  EXPECT_EQ(cache.layer(0).positions.size(0), 2);
  const auto kept = x.index_select(0, index);
  std::vector<torch::Tensor> outs = {first.index_select(0, index)};
  for (int64_t t = 6; t < 10; ++t) {
    outs.push_back(layer(kept.slice(1, t, t + 1), CombaLayerInputs().state(&cache.layer(0))));
  }
  EXPECT_LT(max_abs_diff(torch::cat(outs, 1), reference_batch(opts, p, kept)), kFp64Tolerance);
  cache.reset();
  EXPECT_TRUE(cache.layer(0).empty());
  EXPECT_FALSE(cache.layer(0).positions.defined());
}

// ---- GPU (bf16 through ATen's flash attention; skipped without CUDA) ----

namespace {

class AttentionOnGpu : public ::testing::Test {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
  const torch::Device cuda{torch::kCUDA, 0};
};

// head_dim 64 (a flash kernel size), GQA 8 / 2.
AttentionOptions gpu_options(int64_t window) {
  return AttentionOptions(512, 8).num_kv_heads(2).window_size(window).qkv_bias(true);
}

Attention gpu_layer(const AttentionOptions& o, const torch::Device& device, torch::ScalarType dtype) {
  torch::manual_seed(40);
  Attention layer(o);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : layer->parameters()) p.copy_(0.06 * torch::randn_like(p));
  }
  layer->to(device, dtype);
  return layer;
}

}  // namespace

TEST_F(AttentionOnGpu, Bf16DenseAndWindowMatchReference) {
  torch::NoGradGuard no_grad;
  for (const int64_t window : {0, 24}) {
    auto layer = gpu_layer(gpu_options(window), cuda, torch::kBFloat16);
    const auto x = torch::randn({2, 100, 512}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
    const auto expected = reference_batch(layer->options, ref_params(*layer), x);
    EXPECT_LT(rel_diff(layer(x).cpu(), expected), kBf16Tolerance) << "window " << window;
  }
}

TEST_F(AttentionOnGpu, Bf16PackedMatchesReference) {
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> cu = {0, 70, 71, 200};
  for (const int64_t window : {0, 16}) {
    auto layer = gpu_layer(gpu_options(window), cuda, torch::kBFloat16);
    const auto x = torch::randn({1, 200, 512}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
    const auto out = layer(x, CombaLayerInputs().cu_seqlens(cu_tensor(cu).to(cuda)));
    EXPECT_LT(rel_diff(out.cpu(), reference_packed(layer->options, ref_params(*layer), x, cu)), kBf16Tolerance)
        << "window " << window;
    // Padding through the mask takes the same kernels.
    auto mask = torch::ones({2, 100}, torch::kLong);
    mask[0].slice(0, 0, 30).fill_(0);
    const auto xd = x[0].view({2, 100, 512});
    EXPECT_LT(rel_diff(layer(xd, CombaLayerInputs().attention_mask(mask.to(cuda))).cpu(),
                       reference_batch(layer->options, ref_params(*layer), xd, mask)),
              kBf16Tolerance);
  }
}

TEST_F(AttentionOnGpu, Fp32FallbackMatchesReference) {
  torch::NoGradGuard no_grad;
  auto layer = gpu_layer(gpu_options(16), cuda, torch::kFloat);
  const std::vector<int64_t> cu = {0, 40, 41, 90};
  const auto x = torch::randn({1, 90, 512}, torch::TensorOptions(cuda).dtype(torch::kFloat));
  const auto out = layer(x, CombaLayerInputs().cu_seqlens(cu_tensor(cu).to(cuda)));
  // TF32 matmuls may be on: 1e-3 of the scale.
  EXPECT_LT(rel_diff(out.cpu(), reference_packed(layer->options, ref_params(*layer), x, cu)), 1e-3);
}

// Backward through ATen's flash kernels: bf16 gradients against the fp64 reference's.
TEST_F(AttentionOnGpu, Bf16BackwardMatchesReference) {
  const std::vector<int64_t> cu = {0, 50, 51, 128};
  for (const int64_t window : {0, 20}) {
    for (const bool packed : {true, false}) {
      auto layer = gpu_layer(gpu_options(window), cuda, torch::kBFloat16);
      auto p = ref_params(*layer, /*requires_grad=*/true);
      const auto x = torch::randn({1, 128, 512}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
      const auto xs = packed ? x : x.view({2, 64, 512});
      const auto weight = torch::randn(xs.sizes(), torch::kDouble);
      const auto x_layer = xs.clone().requires_grad_(true);
      const auto x_ref = xs.cpu().to(torch::kDouble).requires_grad_(true);
      CombaLayerInputs inputs;
      if (packed) inputs.cu_seqlens(cu_tensor(cu).to(cuda));
      (layer(x_layer, inputs).to(torch::kDouble).cpu() * weight).sum().backward();
      const auto expected =
          packed ? reference_packed(layer->options, p, x_ref, cu) : reference_batch(layer->options, p, x_ref);
      (expected * weight).sum().backward();
      const auto name = std::string(packed ? "packed" : "dense") + " window " + std::to_string(window);
      EXPECT_LT(rel_diff(x_layer.grad().cpu(), x_ref.grad()), kBf16GradTolerance) << name;
      EXPECT_LT(rel_diff(layer->q_proj->weight.grad().cpu(), p.wq.grad()), kBf16GradTolerance) << name;
      EXPECT_LT(rel_diff(layer->k_proj->weight.grad().cpu(), p.wk.grad()), kBf16GradTolerance) << name;
      EXPECT_LT(rel_diff(layer->v_proj->weight.grad().cpu(), p.wv.grad()), kBf16GradTolerance) << name;
      EXPECT_LT(rel_diff(layer->o_proj->weight.grad().cpu(), p.wo.grad()), kBf16GradTolerance) << name;
      EXPECT_LT(rel_diff(layer->k_proj->bias.grad().cpu(), p.bk.grad()), kBf16GradTolerance) << name;
    }
  }
}

TEST_F(AttentionOnGpu, Bf16DecodeMatchesReference) {
  torch::NoGradGuard no_grad;
  auto layer = gpu_layer(gpu_options(16), cuda, torch::kBFloat16);
  const auto x = torch::randn({2, 60, 512}, torch::TensorOptions(cuda).dtype(torch::kBFloat16));
  auto mask = torch::ones({2, 40}, torch::kLong);
  mask[1].slice(0, 0, 7).fill_(0);
  LayerState state;
  std::vector<torch::Tensor> outs = {
      layer(x.slice(1, 0, 40), CombaLayerInputs().attention_mask(mask.to(cuda)).state(&state))};
  for (int64_t t = 40; t < 60; ++t) {
    mask = torch::cat({mask, torch::ones({2, 1}, torch::kLong)}, 1);
    outs.push_back(layer(x.slice(1, t, t + 1), CombaLayerInputs().attention_mask(mask.to(cuda)).state(&state)));
  }
  EXPECT_EQ(state.key.size(2), 16);
  EXPECT_LT(rel_diff(torch::cat(outs, 1).cpu(), reference_batch(layer->options, ref_params(*layer), x, mask)),
            kBf16Tolerance);
}
