// The ATen twins of the chunk stages composed as the operator composes them
// (prep -> scan_fwd keeping states -> scan_bwd -> grads -> finish) on fp64 CPU inputs,
// against the independent Eigen oracle: o, the final state and every input gradient.
// Plus the workspace's meaning where the contract states it (chunk_stages.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "problem.h"
#include "reference/chunk_stages_ref.h"
#include "support/chunk_stage_check.h"
#include "support/comba_case.h"

namespace comba::test {
namespace {

using detail::ChunkGrads;
using detail::CombaInputs;
using detail::CombaProblem;
using detail::InputGrads;

struct StageCase {
  CaseConfig cfg;
  bool omit_p = false, omit_beta = false;
};

void PrintTo(const StageCase& c, std::ostream* out) {
  *out << describe(c.cfg) << (c.omit_p ? "_no_p" : "") << (c.omit_beta ? "_no_beta" : "");
}

CaseConfig config(std::string name) {
  CaseConfig cfg;
  cfg.name = std::move(name);
  cfg.batch = 2;
  cfg.seq_len = 150;  // two full chunks and a short one
  cfg.heads = 2;
  cfg.value_heads = 2;
  cfg.key_dim = 32;
  cfg.value_dim = 32;
  cfg.l2norm = true;
  cfg.final_state = true;
  cfg.seed = 17;
  return cfg;
}

std::vector<StageCase> cases() {
  std::vector<StageCase> out;
  out.push_back({config("dense")});
  {
    auto cfg = config("varlen_short_last_chunk");
    cfg.segments = {70, 0, 45,
                    128};  // a short second chunk, an empty sequence, one short, two full
    out.push_back({cfg});
  }
  {
    auto cfg = config("gva");
    cfg.heads = 1;
    cfg.value_heads = 2;
    out.push_back({cfg});
  }
  out.push_back({config("no_p"), /*omit_p=*/true});
  out.push_back({config("no_beta"), false, /*omit_beta=*/true});
  {
    auto cfg = config("initial_state_no_l2norm");
    cfg.initial_state = true;
    cfg.l2norm = false;
    cfg.scale = 0.7;
    out.push_back({cfg});
  }
  {
    auto cfg = config("no_final_state");
    cfg.final_state = false;
    cfg.initial_state = true;
    out.push_back({cfg});
  }
  {
    auto cfg = config("k96_padded_to_128");
    cfg.batch = 1;
    cfg.seq_len = 100;
    cfg.key_dim = 96;
    cfg.value_dim = 16;
    cfg.heads = 1;
    cfg.value_heads = 2;
    cfg.initial_state = true;
    out.push_back({cfg});
  }
  return out;
}

struct TwinRun {
  CombaProblem pb;
  CombaInputs in;
  detail::ChunkWorkspace ws;
  detail::CombaForward fwd;
  detail::ChunkStateGrads sg;
  ChunkGrads chunk_grads;
  InputGrads grads;
};

TwinRun run_twins(const StageCase& c, const CaseTensors& t) {
  TwinRun r;
  r.in = CombaInputs{t.q,
                     t.k,
                     t.v,
                     c.omit_p ? at::Tensor() : t.p,
                     t.g,
                     c.omit_beta ? at::Tensor() : t.beta,
                     t.initial_state,
                     t.cu_seqlens};
  auto options = CombaOptions()
                     .scale(c.cfg.scale)
                     .use_qk_l2norm_in_kernel(c.cfg.l2norm)
                     .output_final_state(c.cfg.final_state);
  r.pb = detail::describe_comba_problem(t.q, t.v, t.cu_seqlens, options);
  r.ws = detail::twin::chunk_prep(r.pb, r.in);
  r.fwd = detail::twin::chunk_scan_fwd(r.pb, r.in, r.ws, KeptWorkspace::kAll);
  r.sg = detail::twin::chunk_scan_bwd(r.pb, r.in, r.ws, t.d_o,
                                      c.cfg.final_state ? t.d_final_state : at::Tensor());
  r.chunk_grads = detail::twin::chunk_grads(r.pb, r.in, r.ws, r.sg, t.d_o);
  r.grads = detail::finish_chunk_grads(r.pb, r.in, r.chunk_grads);
  return r;
}

class ChunkStageTwins : public ::testing::TestWithParam<StageCase> {};

TEST_P(ChunkStageTwins, ComposedMatchOracle) {
  const StageCase& c = GetParam();
  const CaseTensors t = make_case(c.cfg);
  const TwinRun r = run_twins(c, t);
  RunConfig run;
  run.omit_p = c.omit_p;
  run.omit_beta = c.omit_beta;
  const NamedTensors want = run_oracle(c.cfg, t, run);

  NamedTensors got{{"o", r.fwd.o}};
  if (c.cfg.final_state) got.emplace_back("final_state", r.fwd.final_state);
  got.emplace_back("dq", r.grads.q);
  got.emplace_back("dk", r.grads.k);
  got.emplace_back("dv", r.grads.v);
  if (!c.omit_p) got.emplace_back("dp", r.grads.p);
  got.emplace_back("dg", r.grads.g);
  if (!c.omit_beta) got.emplace_back("dbeta", r.grads.beta);
  if (c.cfg.initial_state) got.emplace_back("dinitial_state", r.grads.initial_state);

  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, want[i].first);
    ASSERT_TRUE(got[i].second.defined()) << got[i].first;
    EXPECT_EQ(got[i].second.scalar_type(), at::kDouble) << got[i].first;
    EXPECT_LE(relative_error(got[i].second, want[i].second), kFloat64Tolerance) << got[i].first;
  }
}

// The workspace fields mean what chunk_stages.h says, checked from their definitions.
TEST_P(ChunkStageTwins, WorkspaceMeaning) {
  const StageCase& c = GetParam();
  const CaseTensors t = make_case(c.cfg);
  const TwinRun r = run_twins(c, t);
  const auto& ws = r.ws;
  const int64_t C = kChunkSize, K = r.pb.key_dim, kp = ws.padded_key_dim;
  EXPECT_EQ(kp, K <= 64 ? 64 : K <= 128 ? 128 : 256);

  // Mqk lower triangular (diagonal included), T unit lower triangular.
  EXPECT_EQ(ws.mqk.triu(1).abs().max().item<double>(), 0.0);
  EXPECT_EQ(ws.t_inv.triu(1).abs().max().item<double>(), 0.0);
  EXPECT_EQ((ws.t_inv.diagonal(0, -2, -1) - 1).abs().max().item<double>(), 0.0);
  // Key dims K..KP are zero in W's columns and in the rows of the states and their grads.
  if (kp > K) {
    EXPECT_EQ(ws.w.narrow(-1, K, kp - K).abs().max().item<double>(), 0.0);
    EXPECT_EQ(ws.states.narrow(2, K, kp - K).abs().max().item<double>(), 0.0);
    EXPECT_EQ(r.sg.d_states.narrow(2, K, kp - K).abs().max().item<double>(), 0.0);
  }

  // Chunk numbering: the first chunk of each sequence enters with its initial state, and
  // its last chunk's END-state gradient (d_states) is grad_final.
  std::vector<int64_t> first{0};
  if (r.pb.varlen) {
    const auto off = ws.chunk_offsets.to(at::kLong);
    first.assign(off.data_ptr<int64_t>(), off.data_ptr<int64_t>() + off.numel());
  } else {
    for (int64_t n = 0; n < r.pb.num_seqs; ++n)
      first.push_back(first.back() + (r.pb.seq_len + C - 1) / C);
  }
  ASSERT_EQ(static_cast<int64_t>(first.size()), r.pb.num_seqs + 1);
  EXPECT_EQ(first.back(), ws.num_chunks);
  for (int64_t n = 0; n < r.pb.num_seqs; ++n) {
    if (first[n] == first[n + 1]) continue;  // empty sequence: no chunk
    const auto h0 = c.cfg.initial_state
                        ? t.initial_state[n]
                        : at::zeros({r.pb.value_heads, K, r.pb.value_dim}, at::kDouble);
    EXPECT_LE((ws.states[first[n]].narrow(1, 0, K) - h0).abs().max().item<double>(), 1e-14);
    const auto d_end = c.cfg.final_state ? t.d_final_state[n] : at::zeros_like(h0);
    EXPECT_LE((r.sg.d_states[first[n + 1] - 1].narrow(1, 0, K) - d_end).abs().max().item<double>(),
              1e-14);
  }

  // Dense: per chunk from the caller's tensors, V' = Tu V - W S and the state carried to
  // the next chunk S_next = gamma S + Kd^T V' with Kd = diag(kf) K (K raw, per value head).
  if (!r.pb.varlen) {
    const int64_t per_seq = first[1], G = r.pb.group();
    for (int64_t n = 0; n < r.pb.num_seqs; ++n) {
      for (int64_t i = 0; i < per_seq; ++i) {
        const int64_t c2 = n * per_seq + i, len = std::min(C, r.pb.seq_len - i * C);
        auto rows = [&](const at::Tensor& x, int64_t heads_rep) {  // [len, X, D] -> [X, C, D]
          auto y = x[n].narrow(0, i * C, len).repeat_interleave(heads_rep, 1).transpose(0, 1);
          return at::constant_pad_nd(y, {0, 0, 0, C - len});
        };
        const auto s = ws.states[c2];
        const auto vn = at::matmul(ws.tu[c2], rows(t.v, 1)) - at::matmul(ws.w[c2], s);
        EXPECT_LE((vn - ws.v_new[c2]).abs().max().item<double>(), 1e-12) << "chunk " << c2;
        if (i + 1 < per_seq) {
          const auto kd = ws.kf[c2].unsqueeze(-1) * at::constant_pad_nd(rows(t.k, G), {0, kp - K});
          const auto next =
              ws.gamma[c2].view({-1, 1, 1}) * s + at::matmul(kd.transpose(-1, -2), vn);
          EXPECT_LE((next - ws.states[c2 + 1]).abs().max().item<double>(), 1e-12) << "chunk " << c2;
        }
      }
    }
  }
  // v_new is zero on the rows past a short chunk's end (as the kernels write it).
  if (!r.pb.varlen && r.pb.seq_len % C != 0) {
    const int64_t last = first[1] - 1, len = r.pb.seq_len - last * C;
    EXPECT_EQ(ws.v_new[last].narrow(1, len, C - len).abs().max().item<double>(), 0.0);
    EXPECT_EQ(r.sg.dv_new[last].narrow(1, len, C - len).abs().max().item<double>(), 0.0);
  }
}

// bf16 inputs (gates and states fp32), as the GPU stage tests give them: the twins compute
// and keep the workspace in fp32 and return the contract's dtypes, and every stage agrees
// with the fp64 twins on the same (rounded) values through the GPU tests' comparison.
TEST_P(ChunkStageTwins, Bf16InputsComputeInFp32) {
  const StageCase& c = GetParam();
  const CaseTensors t = make_case(c.cfg);
  RunConfig run;
  run.dtype = at::kBFloat16;
  run.gate_dtype = at::kFloat;
  run.beta_dtype = at::kFloat;
  CaseTensors low = t;
  for (auto* x : {&low.q, &low.k, &low.v, &low.p, &low.d_o}) *x = x->to(at::kBFloat16);
  for (auto* x : {&low.g, &low.beta, &low.initial_state, &low.d_final_state}) {
    if (x->defined()) *x = x->to(at::kFloat);
  }
  const TwinRun r = run_twins(c, low);
  const TwinRun ref = run_twins(c, round_to_run(t, run));

  for (const auto* x : {&r.ws.w, &r.ws.tu, &r.ws.mqk, &r.ws.qf, &r.ws.kf, &r.ws.gamma,
                        &r.ws.t_inv, &r.ws.states, &r.ws.v_new, &r.sg.d_states, &r.sg.dv_new,
                        &r.sg.d_initial, &r.chunk_grads.dq, &r.chunk_grads.dg}) {
    EXPECT_EQ(x->scalar_type(), at::kFloat);
  }
  EXPECT_EQ(r.fwd.o.scalar_type(), at::kBFloat16);
  EXPECT_EQ(r.fwd.final_state.scalar_type(), at::kFloat);
  EXPECT_EQ(r.chunk_grads.dv.scalar_type(), at::kBFloat16);

  std::vector<FieldError> fields = compare_prep(r.pb, r.in, r.ws, ref.ws);
  for (const auto& f : compare_scan_fwd(r.fwd, r.ws, ref.fwd, ref.ws)) fields.push_back(f);
  for (const auto& f : compare_scan_bwd(r.sg, ref.sg)) fields.push_back(f);
  for (const auto& f : compare_grads(r.pb, r.in, r.chunk_grads, ref.chunk_grads)) fields.push_back(f);
  for (const auto& f : fields) {
    EXPECT_TRUE(f.problem.empty()) << f.field << ": " << f.problem;
    // fp32 against fp64 on the same values (o and dv are bf16 results: one rounding).
    const double tol = f.field == "o" || f.field == "dv" ? 1e-2 : 1e-4;
    EXPECT_LE(f.error, tol) << f.field;
  }
}

INSTANTIATE_TEST_SUITE_P(Fp64, ChunkStageTwins, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<StageCase>& info) {
                           return info.param.cfg.name;
                         });

}  // namespace
}  // namespace comba::test
