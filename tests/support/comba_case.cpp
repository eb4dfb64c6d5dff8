// Random cases, operator runs and oracle runs for the operator tests (see comba_case.h).
// Input scales keep the recurrence well conditioned at every T in the grid: without
// l2norm, q, k, p have norm ~1 (randn / sqrt(K)); beta is in (0, 1); the decay
// exp(g) = sigmoid(randn + 1.5) remembers ~5-10 steps, so states cross chunk boundaries.
#include "support/comba_case.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "comba/ops/comba.h"

namespace comba::test {

int64_t CaseConfig::total_len() const {
  return segments.empty() ? seq_len : std::accumulate(segments.begin(), segments.end(), int64_t{0});
}
int64_t CaseConfig::total_batch() const { return segments.empty() ? batch : 1; }
int64_t CaseConfig::num_seqs() const {
  return segments.empty() ? batch : static_cast<int64_t>(segments.size());
}
double CaseConfig::resolved_scale() const {
  return scale.value_or(1.0 / std::sqrt(static_cast<double>(key_dim)));
}

std::string describe(const CaseConfig& cfg) {
  std::ostringstream out;
  if (!cfg.name.empty()) return cfg.name;
  if (cfg.segments.empty()) {
    if (cfg.batch != 1) out << 'B' << cfg.batch << '_';
    out << 'T' << cfg.seq_len;
  } else {
    out << "varlen";
    for (const int64_t len : cfg.segments) out << '_' << len;
  }
  out << "_K" << cfg.key_dim << "_V" << cfg.value_dim << "_H" << cfg.heads;
  if (cfg.value_heads != cfg.heads) out << "_GVA" << cfg.value_heads / cfg.heads;
  if (cfg.l2norm) out << "_l2norm";
  if (cfg.initial_state) out << "_h0";
  if (cfg.final_state) out << "_final";
  if (cfg.scale) out << "_scale";
  return out.str();
}

CaseTensors make_case(const CaseConfig& cfg) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed + 0x5eed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = cfg.total_batch(), T = cfg.total_len(), H = cfg.heads;
  const int64_t HV = cfg.value_heads, K = cfg.key_dim, V = cfg.value_dim;
  auto randn = [&](at::IntArrayRef sizes) { return at::randn(sizes, gen, f64); };
  // Without l2norm the operator sees the raw vectors: give them norm ~1.
  const double qk_scale = cfg.l2norm ? 1.0 : 1.0 / std::sqrt(static_cast<double>(K));

  CaseTensors t;
  t.q = randn({B, T, H, K}) * qk_scale;
  t.k = randn({B, T, H, K}) * qk_scale;
  t.p = randn({B, T, H, K}) * qk_scale;
  t.v = randn({B, T, HV, V});
  t.g = at::log_sigmoid(randn({B, T, HV}) + 1.5);
  t.beta = at::sigmoid(randn({B, T, HV}));
  if (cfg.initial_state) t.initial_state = randn({cfg.num_seqs(), HV, K, V}) * 0.5;
  if (!cfg.segments.empty()) {
    std::vector<int64_t> cu{0};
    for (const int64_t len : cfg.segments) cu.push_back(cu.back() + len);
    t.cu_seqlens = at::tensor(cu, at::kLong);
  }
  t.d_o = randn({B, T, HV, V});
  t.d_final_state = randn({cfg.num_seqs(), HV, K, V});
  return t;
}

at::ScalarType state_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

CaseTensors round_to_run(const CaseTensors& t, const RunConfig& run) {
  auto round = [](const at::Tensor& x, at::ScalarType dt) {
    return x.defined() ? x.to(dt).to(at::kDouble) : x;
  };
  CaseTensors r = t;
  r.q = round(t.q, run.dtype);
  r.k = round(t.k, run.dtype);
  r.v = round(t.v, run.dtype);
  r.p = round(t.p, run.dtype);
  r.g = round(t.g, run.gate_dtype);
  r.beta = round(t.beta, run.beta_dtype);
  r.initial_state = round(t.initial_state, state_dtype(run.dtype));
  r.d_o = round(t.d_o, run.dtype);
  r.d_final_state = round(t.d_final_state, state_dtype(run.dtype));
  return r;
}

const char* fn_name(Fn fn) { return fn == Fn::kChunk ? "chunk_comba" : "fused_recurrent_comba"; }

void PrintTo(const CaseConfig& cfg, std::ostream* out) { *out << describe(cfg); }
void PrintTo(Fn fn, std::ostream* out) { *out << fn_name(fn); }

NamedTensors run_operator(Fn fn, const CaseConfig& cfg, const CaseTensors& t,
                          const RunConfig& run) {
  auto leaf = [&](const at::Tensor& x, at::ScalarType dt) {
    return x.to(run.device, dt).detach().requires_grad_(!run.inference);
  };
  const at::Tensor q = leaf(t.q, run.dtype), k = leaf(t.k, run.dtype);
  const at::Tensor v = leaf(t.v, run.dtype), g = leaf(t.g, run.gate_dtype);
  const at::Tensor p = run.omit_p ? at::Tensor() : leaf(t.p, run.dtype);
  const at::Tensor beta = run.omit_beta ? at::Tensor() : leaf(t.beta, run.beta_dtype);
  const at::Tensor h0 =
      cfg.initial_state ? leaf(t.initial_state, state_dtype(run.dtype)) : at::Tensor();

  auto options = CombaOptions()
                     .scale(cfg.scale)
                     .initial_state(h0)
                     .output_final_state(cfg.final_state)
                     .use_qk_l2norm_in_kernel(cfg.l2norm)
                     .use_reference_path(run.reference_path)
                     .split_length(run.split_length);
  if (t.cu_seqlens.defined()) options.cu_seqlens(t.cu_seqlens.to(run.device));
  auto optional = [](const at::Tensor& x) {
    return x.defined() ? c10::optional<at::Tensor>(x) : c10::nullopt;
  };
  const auto [o, final_state] =
      fn == Fn::kChunk ? chunk_comba(q, k, v, optional(p), g, optional(beta), options)
                       : fused_recurrent_comba(q, k, v, optional(p), g, optional(beta), options);
  auto host = [](const at::Tensor& x) {
    return x.defined() ? x.detach().to(at::kCPU, at::kDouble) : x;
  };
  NamedTensors result{{"o", host(o)}};
  if (cfg.final_state) result.emplace_back("final_state", host(final_state));
  if (run.inference) return result;

  torch::autograd::variable_list outputs{o};
  torch::autograd::variable_list cotangents{t.d_o.to(run.device, o.scalar_type())};
  if (cfg.final_state) {
    outputs.push_back(final_state);
    cotangents.push_back(t.d_final_state.to(run.device, final_state.scalar_type()));
  }

  NamedTensors leaves{{"dq", q}, {"dk", k}, {"dv", v}};
  if (p.defined()) leaves.emplace_back("dp", p);
  leaves.emplace_back("dg", g);
  if (beta.defined()) leaves.emplace_back("dbeta", beta);
  if (h0.defined()) leaves.emplace_back("dinitial_state", h0);
  torch::autograd::variable_list inputs;
  for (const auto& [name, x] : leaves) inputs.push_back(x);
  const auto grads = torch::autograd::grad(outputs, inputs, cotangents, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);

  for (size_t i = 0; i < leaves.size(); ++i) result.emplace_back(leaves[i].first, host(grads[i]));
  return result;
}

std::vector<double> to_vector(const at::Tensor& t) {
  if (!t.defined()) return {};
  const at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor from_vector(const std::vector<double>& x, at::IntArrayRef sizes) {
  return at::tensor(x, at::kDouble).reshape(sizes);
}

NamedTensors run_oracle(const CaseConfig& cfg, const CaseTensors& t, const RunConfig& run) {
  OracleProblem pb;
  pb.batch = cfg.total_batch();
  pb.seq_len = cfg.total_len();
  pb.heads = cfg.heads;
  pb.value_heads = cfg.value_heads;
  pb.key_dim = cfg.key_dim;
  pb.value_dim = cfg.value_dim;
  pb.scale = cfg.resolved_scale();
  pb.l2norm = cfg.l2norm;
  if (t.cu_seqlens.defined()) {
    const at::Tensor cu = t.cu_seqlens.to(at::kCPU).contiguous();
    pb.cu_seqlens.assign(cu.data_ptr<int64_t>(), cu.data_ptr<int64_t>() + cu.numel());
  }

  OracleInputs in;
  in.q = to_vector(t.q);
  in.k = to_vector(t.k);
  in.v = to_vector(t.v);
  in.p = run.omit_p ? in.k : to_vector(t.p);
  in.g = to_vector(t.g);
  in.beta = run.omit_beta ? std::vector<double>(pb.gate_numel(), 1.0) : to_vector(t.beta);
  if (cfg.initial_state) in.initial_state = to_vector(t.initial_state);

  const OracleOutputs out = oracle_forward(pb, in);
  const OracleGrads d = oracle_backward(pb, in, to_vector(t.d_o),
                                        cfg.final_state ? to_vector(t.d_final_state)
                                                        : std::vector<double>{});
  const auto qk = t.q.sizes(), vs = t.v.sizes(), gs = t.g.sizes();
  const std::vector<int64_t> ss{pb.num_seqs(), pb.value_heads, pb.key_dim, pb.value_dim};

  NamedTensors result{{"o", from_vector(out.o, vs)}};
  if (cfg.final_state) result.emplace_back("final_state", from_vector(out.final_state, ss));
  std::vector<double> dk = d.k;
  if (run.omit_p) {
    for (size_t i = 0; i < dk.size(); ++i) dk[i] += d.p[i];  // p = k: both paths reach k
  }
  result.emplace_back("dq", from_vector(d.q, qk));
  result.emplace_back("dk", from_vector(dk, qk));
  result.emplace_back("dv", from_vector(d.v, vs));
  if (!run.omit_p) result.emplace_back("dp", from_vector(d.p, qk));
  result.emplace_back("dg", from_vector(d.g, gs));
  if (!run.omit_beta) result.emplace_back("dbeta", from_vector(d.beta, gs));
  if (cfg.initial_state) result.emplace_back("dinitial_state", from_vector(d.initial_state, ss));
  return result;
}

double relative_error(const at::Tensor& x, const at::Tensor& ref) {
  if (!x.defined() || !ref.defined()) throw std::invalid_argument("relative_error: undefined tensor");
  if (x.sizes() != ref.sizes()) throw std::invalid_argument("relative_error: shapes differ");
  const at::Tensor a = x.to(at::kCPU, at::kDouble), b = ref.to(at::kCPU, at::kDouble);
  const double ref_norm = b.norm().item<double>();
  const double diff_norm = (a - b).norm().item<double>();
  return ref_norm > 0 ? diff_norm / ref_norm : diff_norm;
}

double low_precision_tolerance(const at::Tensor& reference, at::ScalarType dtype) {
  return 2.0 * relative_error(reference.to(dtype), reference) + kFloat32Tolerance;
}

double tensor_core_tolerance(const at::Tensor& reference, at::ScalarType dtype) {
  const double unit_roundoff = dtype == at::kBFloat16 ? 0x1p-8 : 0x1p-11;
  return std::max(3.0 * unit_roundoff, low_precision_tolerance(reference, dtype));
}

double tolerance_for(const at::Tensor& reference, const RunConfig& run) {
  const bool tensor_cores =
      run.device.is_cuda() && (run.dtype == at::kBFloat16 || run.dtype == at::kHalf);
  return tensor_cores ? tensor_core_tolerance(reference, run.dtype)
                      : tolerance_for(reference, run.dtype);
}

double tolerance_for(const at::Tensor& reference, at::ScalarType dtype) {
  if (dtype == at::kDouble) return kFloat64Tolerance;
  if (dtype == at::kFloat) return kFloat32Tolerance;
  return low_precision_tolerance(reference, dtype);
}

}  // namespace comba::test
