// One chunk stage's outputs from two implementations (the CUDA stage and its ATen twin),
// field by field: max |a - b| / max |b| for each field, with the field's tolerance for
// 16-bit inputs. Shared by the GPU stage tests and benchmarks/bench_stages (header-only;
// ATen and the stage contract only).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <vector>

#include "chunk_stages.h"

namespace comba::test {

// The kernels multiply in the 16-bit input dtype (bf16: 3 unit roundoffs ~ 1.2e-2 on the
// largest entries, 2e-2 with the accumulations); fields both sides form in fp32 (the row
// factors, the decays) agree to fp32 exp / rsqrt differences.
inline constexpr double kStage16BitTolerance = 2e-2;
inline constexpr double kStageFp32Tolerance = 1e-4;

struct FieldError {
  std::string field;
  double error = 0;  // max |got - want| / max |want| (max |got - want| when want is 0)
  double tolerance = 0;
  std::string problem;  // non-empty: the field could not be compared (undefined, shape)
};

inline FieldError compare_field(const std::string& field, const at::Tensor& got,
                                const at::Tensor& want, double tolerance) {
  FieldError e{field, 0, tolerance, ""};
  if (!got.defined() || !want.defined()) {
    e.problem = got.defined() ? "twin left it undefined" : "CUDA stage left it undefined";
    return e;
  }
  if (got.sizes() != want.sizes()) {
    e.problem = "shapes differ";
    return e;
  }
  const auto a = got.to(at::kCPU, at::kDouble), b = want.to(at::kCPU, at::kDouble);
  const double scale = b.numel() ? b.abs().max().item<double>() : 0.0;
  const double diff = a.numel() ? (a - b).abs().max().item<double>() : 0.0;
  e.error = scale > 0 ? diff / scale : diff;
  return e;
}

// Rows of each chunk that hold tokens, [NC, C] as 1 / 0 (fp64, on `device`): the kernels
// form the row factors on padding rows too (a zero row's l2norm factor is 1 / sqrt(eps)),
// so those are compared on valid rows only.
inline at::Tensor chunk_valid_rows(const detail::CombaProblem& pb, const detail::CombaInputs& in,
                                   at::Device device) {
  std::vector<int64_t> lengths;
  auto add = [&](int64_t len) {
    for (int64_t start = 0; start < len; start += kChunkSize) {
      lengths.push_back(std::min(kChunkSize, len - start));
    }
  };
  if (pb.varlen) {
    const auto cu = in.cu_seqlens.to(at::kCPU, at::kLong).contiguous();
    const auto* b = cu.data_ptr<int64_t>();
    for (int64_t n = 0; n < pb.num_seqs; ++n) add(b[n + 1] - b[n]);
  } else {
    for (int64_t n = 0; n < pb.num_seqs; ++n) add(pb.seq_len);
  }
  const auto len = at::tensor(lengths, at::kLong).view({-1, 1});
  return (at::arange(kChunkSize, at::kLong).view({1, -1}) < len).to(device, at::kDouble);
}

// The workspace / state grads in the twin's compute dtype, from another implementation's.
inline detail::ChunkWorkspace workspace_in(const detail::ChunkWorkspace& ws, at::ScalarType dt) {
  detail::ChunkWorkspace out = ws;
  for (auto* t : {&out.w, &out.tu, &out.mqk, &out.qf, &out.kf, &out.gamma, &out.t_inv, &out.states,
                  &out.v_new}) {
    if (t->defined()) *t = t->to(dt);
  }
  return out;
}
inline detail::ChunkStateGrads state_grads_in(const detail::ChunkStateGrads& sg,
                                              at::ScalarType dt) {
  detail::ChunkStateGrads out = sg;
  for (auto* t : {&out.d_states, &out.dv_new, &out.d_initial}) {
    if (t->defined()) *t = t->to(dt);
  }
  return out;
}

// A q / k / p gradient per query head with the l2norm backward done, in fp64: the form
// every ChunkGrads reaches whatever it left to finish_chunk_grads (x: the input).
inline at::Tensor per_query_head(const detail::CombaProblem& pb, const detail::ChunkGrads& g,
                                 const at::Tensor& d, const at::Tensor& x) {
  auto y = d.to(at::kDouble);
  if (g.per_value_head && pb.group() > 1) {
    y = y.view({pb.batch, pb.seq_len, pb.heads, pb.group(), pb.key_dim}).sum(3);
  }
  return g.l2norm_pending && pb.use_l2norm ? detail::l2norm_bwd(x.to(at::kDouble), y) : y;
}

inline std::vector<FieldError> compare_prep(const detail::CombaProblem& pb,
                                            const detail::CombaInputs& in,
                                            const detail::ChunkWorkspace& got,
                                            const detail::ChunkWorkspace& want) {
  std::vector<FieldError> out;
  auto add = [&](const char* f, const at::Tensor& a, const at::Tensor& b, double tol) {
    out.push_back(compare_field(f, a, b, tol));
  };
  if (got.num_chunks != want.num_chunks || got.padded_key_dim != want.padded_key_dim) {
    out.push_back({"num_chunks / padded_key_dim", 0, 0, "differ"});
    return out;
  }
  if (got.chunk_offsets.defined() != want.chunk_offsets.defined() ||
      (want.chunk_offsets.defined() &&
       !got.chunk_offsets.cpu().to(at::kLong).equal(want.chunk_offsets.cpu().to(at::kLong)))) {
    out.push_back({"chunk_offsets", 0, 0, "differ"});
  }
  add("w", got.w, want.w, kStage16BitTolerance);
  add("tu", got.tu, want.tu, kStage16BitTolerance);
  add("mqk", got.mqk, want.mqk, kStage16BitTolerance);
  add("t_inv", got.t_inv, want.t_inv, kStage16BitTolerance);
  add("gamma", got.gamma, want.gamma, kStageFp32Tolerance);
  if (got.qf.defined() && want.qf.defined()) {
    const auto rows = chunk_valid_rows(pb, in, want.qf.device()).unsqueeze(1);  // [NC, 1, C]
    add("qf (valid rows)", got.qf * rows, want.qf * rows, kStageFp32Tolerance);
    add("kf (valid rows)", got.kf * rows, want.kf * rows, kStageFp32Tolerance);
  } else {
    add("qf", got.qf, want.qf, kStageFp32Tolerance);
  }
  return out;
}

inline std::vector<FieldError> compare_scan_fwd(const detail::CombaForward& got,
                                                const detail::ChunkWorkspace& got_ws,
                                                const detail::CombaForward& want,
                                                const detail::ChunkWorkspace& want_ws) {
  return {compare_field("o", got.o, want.o, kStage16BitTolerance),
          compare_field("final_state", got.final_state, want.final_state, kStage16BitTolerance),
          compare_field("states", got_ws.states, want_ws.states, kStage16BitTolerance),
          compare_field("v_new", got_ws.v_new, want_ws.v_new, kStage16BitTolerance)};
}

inline std::vector<FieldError> compare_scan_bwd(const detail::ChunkStateGrads& got,
                                                const detail::ChunkStateGrads& want) {
  return {compare_field("d_states", got.d_states, want.d_states, kStage16BitTolerance),
          compare_field("dv_new", got.dv_new, want.dv_new, kStage16BitTolerance),
          compare_field("d_initial", got.d_initial, want.d_initial, kStage16BitTolerance)};
}

inline std::vector<FieldError> compare_grads(const detail::CombaProblem& pb,
                                             const detail::CombaInputs& in,
                                             const detail::ChunkGrads& got,
                                             const detail::ChunkGrads& want) {
  const auto p = in.p.defined() ? in.p : in.k;
  auto key = [&](const char* f, const at::Tensor& a, const at::Tensor& b, const at::Tensor& x) {
    if (!a.defined() || !b.defined()) return compare_field(f, a, b, kStage16BitTolerance);
    return compare_field(f, per_query_head(pb, got, a, x), per_query_head(pb, want, b, x),
                         kStage16BitTolerance);
  };
  return {key("dq", got.dq, want.dq, in.q),
          key("dk", got.dk, want.dk, in.k),
          key("dp", got.dp, want.dp, p),
          compare_field("dv", got.dv, want.dv, kStage16BitTolerance),
          compare_field("dg", got.dg, want.dg, kStage16BitTolerance),
          compare_field("dbeta", got.dbeta, want.dbeta, kStage16BitTolerance)};
}

}  // namespace comba::test
