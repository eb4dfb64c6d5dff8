// Independent fp64 references for the fused nn kernels' tests, written from the
// definitions with plain slices (no conv1d, no index tricks), differentiable so that
// autograd through them gives reference gradients; plus the error measures and the
// tolerance rule (a kernel may be at most ~2x as far from fp64 as the ATen path at the
// same dtype, plus a small floor).
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace comba::nn::testing {

struct ConvReference {
  torch::Tensor y;            // [B, T, C]
  torch::Tensor final_state;  // [N, C, K - 1]
};

// Sequences of a [B, T, C] batch: dense (cu empty: row b of length T) or packed
// (B = 1, cu = boundaries).
struct SeqSlice {
  int64_t row, start, length;
};

inline std::vector<SeqSlice> sequences(int64_t batch, int64_t seq_len, const std::vector<int64_t>& cu) {
  std::vector<SeqSlice> out;
  if (cu.empty()) {
    for (int64_t b = 0; b < batch; ++b) out.push_back({b, 0, seq_len});
  } else {
    for (size_t n = 0; n + 1 < cu.size(); ++n) out.push_back({0, cu[n], cu[n + 1] - cu[n]});
  }
  return out;
}

// y[t] = act(b + sum_j w[:, j] in[t - (K - 1) + j]), where in[p] is x at p inside the
// sequence and the carried input h0[:, p + K - 1] (or 0) before its start; the final state
// is in[len - (K - 1) .. len - 1]. Computed in fp64.
inline ConvReference reference_short_conv(const torch::Tensor& x_in, const torch::Tensor& weight_in,
                                          const torch::Tensor& bias_in, const torch::Tensor& h0_in,
                                          const std::vector<int64_t>& cu, bool silu) {
  const auto f64 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kDouble) : t; };
  const auto x = f64(x_in), w = f64(weight_in).squeeze(1), bias = f64(bias_in), h0 = f64(h0_in);
  const int64_t C = x.size(2), K = w.size(1);
  std::vector<torch::Tensor> outs, finals;
  std::vector<std::vector<torch::Tensor>> rows(x.size(0));
  const auto seqs = sequences(x.size(0), x.size(1), cu);
  for (size_t n = 0; n < seqs.size(); ++n) {
    const auto& s = seqs[n];
    const auto xs = x[s.row].slice(0, s.start, s.start + s.length);  // [len, C]
    const auto pre = h0.defined() ? h0[n].t() : torch::zeros({K - 1, C}, x.options());
    const auto ext = torch::cat({pre, xs}, 0);  // [len + K - 1, C]
    auto z = torch::zeros({s.length, C}, x.options());
    for (int64_t j = 0; j < K; ++j) z = z + w.select(1, j) * ext.slice(0, j, j + s.length);
    if (bias.defined()) z = z + bias;
    rows[s.row].push_back(silu ? torch::silu(z) : z);
    finals.push_back(ext.slice(0, s.length, s.length + K - 1).t());
  }
  ConvReference out;
  std::vector<torch::Tensor> batch_rows;
  for (auto& r : rows) batch_rows.push_back(torch::cat(r, 0));
  out.y = torch::stack(batch_rows, 0);
  out.final_state = torch::stack(finals, 0);
  return out;
}

// y = x / sqrt(mean(x^2) + eps) * w * sigmoid(gate) in fp64 (no gate: plain RMSNorm).
inline torch::Tensor reference_rms_norm(const torch::Tensor& x_in, const torch::Tensor& w_in, double eps,
                                        const torch::Tensor& gate_in) {
  const auto x = x_in.to(torch::kDouble);
  auto y = x / torch::sqrt((x * x).mean(-1, true) + eps) * w_in.to(torch::kDouble);
  if (gate_in.defined()) y = y * torch::sigmoid(gate_in.to(torch::kDouble));
  return y;
}

// y = a sigmoid(a) b in fp64, from the definition (no silu op).
inline torch::Tensor reference_swiglu(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  const auto a = a_in.to(torch::kDouble), b = b_in.to(torch::kDouble);
  return a / (1.0 + torch::exp(-a)) * b;
}

// g = -exp(A_log) softplus(a + dt_bias), beta = 1 / (1 + exp(-b)) in fp64, with torch's
// softplus written out: z above the threshold 20, else log(1 + exp(z)).
inline std::pair<torch::Tensor, torch::Tensor> reference_comba_gates(const torch::Tensor& a_in,
                                                                     const torch::Tensor& b_in,
                                                                     const torch::Tensor& A_log_in,
                                                                     const torch::Tensor& dt_bias_in) {
  const auto z = a_in.to(torch::kDouble) + dt_bias_in.to(torch::kDouble);
  const auto softplus = torch::where(z > 20.0, z, torch::log1p(torch::exp(torch::clamp_max(z, 20.0))));
  const auto g = -torch::exp(A_log_in.to(torch::kDouble)) * softplus;
  const auto beta = 1.0 / (1.0 + torch::exp(-b_in.to(torch::kDouble)));
  return {g, beta};
}

// max |a - ref| / max |ref| (0 for empty tensors).
inline double rel_error(const torch::Tensor& a, const torch::Tensor& ref) {
  EXPECT_EQ(a.sizes(), ref.sizes());
  if (ref.numel() == 0) return 0.0;
  const auto r = ref.to(torch::kDouble);
  const double scale = std::max(r.abs().max().item<double>(), 1e-30);
  return (a.to(torch::kDouble) - r).abs().max().item<double>() / scale;
}

// The tolerance rule: a kernel's error against fp64 may be twice the ATen path's at the
// same dtype, plus a floor of about one rounding of that dtype (the ATen path may be exact
// by luck on small inputs, and a kernel may evaluate exp or sigmoid a
// little differently from ATen).
inline double error_floor(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kBFloat16: return 4e-3;
    case torch::kHalf: return 1e-3;
    case torch::kDouble: return 1e-15;
    default: return 1e-6;
  }
}

inline double allowed_error(double aten_error, torch::Dtype dtype) { return 2.0 * aten_error + error_floor(dtype); }

// Makes a [N, C, K - 1] state (or undefined).
inline torch::Tensor maybe_state(bool with_state, int64_t n, int64_t c, int64_t k, const torch::TensorOptions& o) {
  return with_state ? torch::randn({n, c, k - 1}, o) : torch::Tensor();
}

}  // namespace comba::nn::testing
