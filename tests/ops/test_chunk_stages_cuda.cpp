// Each CUDA chunk stage against its ATen twin ON THE SAME INPUTS (bf16 on the GPU):
//   prep      both from the raw inputs
//   scan_fwd  both from the CUDA prep's workspace (the twin gets it cast to fp32)
//   v_new     both from the CUDA prep's W, Tu and the CUDA forward's kept states
//   scan_bwd  both from the CUDA forward's workspace (states, V' included)
//   grads     both from that workspace and the CUDA reverse scan's state grads
// so a stage's error is its own, not inherited. Fields are compared by
// max |cuda - twin| / max |twin| (support/chunk_stage_check.h: 2e-2 where the kernels
// multiply in bf16, 1e-4 for the fp32 row factors and decays).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "problem.h"
#include "reference/chunk_stages_ref.h"
#include "support/chunk_stage_check.h"
#include "support/comba_case.h"
#include "support/require.h"
#ifdef COMBA_WITH_CUDA
#include "launch/chunk_stages_cuda.h"
#endif

namespace comba::test {
namespace {

using detail::CombaInputs;
using detail::CombaProblem;

// Every field of a stage within its tolerance (support/chunk_stage_check.h).
[[maybe_unused]] void expect_fields(const std::vector<FieldError>& fields) {
  ASSERT_FALSE(fields.empty());
  for (const auto& f : fields) {
    EXPECT_TRUE(f.problem.empty()) << f.field << ": " << f.problem;
    EXPECT_LE(f.error, f.tolerance) << f.field << " (max |cuda - twin| / max |twin|)";
  }
}

struct GpuCase {
  CaseConfig cfg;
};

void PrintTo(const GpuCase& c, std::ostream* out) { *out << describe(c.cfg); }

CaseConfig config(std::string name) {
  CaseConfig cfg;
  cfg.name = std::move(name);
  cfg.batch = 2;
  cfg.seq_len = 200;  // three full chunks and a short one
  cfg.heads = 2;
  cfg.value_heads = 2;
  cfg.key_dim = 64;
  cfg.value_dim = 64;
  cfg.l2norm = true;
  cfg.initial_state = true;
  cfg.final_state = true;
  cfg.seed = 23;
  return cfg;
}

std::vector<GpuCase> cases() {
  std::vector<GpuCase> out{{config("dense_B2_T200_H2_K64_V64")}};
  {
    auto cfg = config("varlen");
    cfg.segments = {70, 0, 45, 128, 1};
    out.push_back({cfg});
  }
  {
    auto cfg = config("gva");
    cfg.heads = 1;
    cfg.value_heads = 2;
    out.push_back({cfg});
  }
  {
    auto cfg = config("no_l2norm");
    cfg.l2norm = false;
    cfg.initial_state = false;
    out.push_back({cfg});
  }
  {
    auto cfg = config("K128_V64");
    cfg.key_dim = 128;
    out.push_back({cfg});
  }
  {
    auto cfg = config("K256_V64_split_keys");
    cfg.key_dim = 256;
    out.push_back({cfg});
  }
  {
    auto cfg = config("K256_GVA_no_l2norm");
    cfg.key_dim = 256;
    cfg.heads = 1;
    cfg.l2norm = false;
    out.push_back({cfg});
  }
  return out;
}

// The case's tensors in bf16 on the GPU (gates and the state in fp32), as the operator's
// callers pass them, with its problem description.
struct GpuInputs {
  CombaProblem pb;
  CombaInputs in;
  at::Tensor grad_o, grad_final;
};

[[maybe_unused]] GpuInputs gpu_inputs(const CaseConfig& cfg) {
  const CaseTensors t = make_case(cfg);
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto f32 = bf16.dtype(at::kFloat);
  GpuInputs x;
  x.in = CombaInputs{t.q.to(bf16),
                     t.k.to(bf16),
                     t.v.to(bf16),
                     t.p.to(bf16),
                     t.g.to(f32),
                     t.beta.to(f32),
                     t.initial_state.defined() ? t.initial_state.to(f32) : at::Tensor(),
                     t.cu_seqlens.defined() ? t.cu_seqlens.to(at::kCUDA) : at::Tensor()};
  auto options = CombaOptions()
                     .scale(cfg.scale)
                     .use_qk_l2norm_in_kernel(cfg.l2norm)
                     .output_final_state(cfg.final_state);
  x.pb = detail::describe_comba_problem(x.in.q, x.in.v, x.in.cu_seqlens, options);
  x.grad_o = t.d_o.to(bf16);
  x.grad_final = t.d_final_state.to(f32);
  return x;
}

class ChunkStagesCuda : public ::testing::TestWithParam<GpuCase> {
 protected:
  void SetUp() override {
    COMBA_SKIP_WITHOUT_CUDA();
#ifndef COMBA_WITH_CUDA
    if (env_switch_on("COMBA_REQUIRE_GPU")) FAIL() << "COMBA_REQUIRE_GPU=1 but built without CUDA";
    GTEST_SKIP() << "built without the CUDA stages";
#endif
  }
};

#ifdef COMBA_WITH_CUDA

TEST_P(ChunkStagesCuda, Prep) {
  const auto x = gpu_inputs(GetParam().cfg);
  const auto cuda = detail::cuda::chunk_prep(x.pb, x.in);
  const auto twin = detail::twin::chunk_prep(x.pb, x.in);
  expect_fields(compare_prep(x.pb, x.in, cuda, twin));
}

TEST_P(ChunkStagesCuda, ScanForward) {
  const auto x = gpu_inputs(GetParam().cfg);
  auto cuda_ws = detail::cuda::chunk_prep(x.pb, x.in);
  auto twin_ws = workspace_in(cuda_ws, at::kFloat);
  const auto cuda = detail::cuda::chunk_scan_fwd(x.pb, x.in, cuda_ws, KeptWorkspace::kAll);
  const auto twin = detail::twin::chunk_scan_fwd(x.pb, x.in, twin_ws, KeptWorkspace::kAll);
  expect_fields(compare_scan_fwd(cuda, cuda_ws, twin, twin_ws));
}

// Without kept states (inference: no states or V' written) the outputs and the final
// state against the twin.
TEST_P(ChunkStagesCuda, ScanForwardInference) {
  const auto x = gpu_inputs(GetParam().cfg);
  auto cuda_ws = detail::cuda::chunk_prep(x.pb, x.in);
  auto twin_ws = workspace_in(cuda_ws, at::kFloat);
  const auto cuda = detail::cuda::chunk_scan_fwd(x.pb, x.in, cuda_ws, KeptWorkspace::kNone);
  const auto twin = detail::twin::chunk_scan_fwd(x.pb, x.in, twin_ws, KeptWorkspace::kNone);
  EXPECT_FALSE(cuda_ws.states.defined());
  expect_fields({compare_field("o", cuda.o, twin.o, kStage16BitTolerance),
                 compare_field("final_state", cuda.final_state, twin.final_state, kStage16BitTolerance)});
}

// A forward that keeps only the states writes no V'; the backward forms it from the states.
TEST_P(ChunkStagesCuda, VNewFromKeptStates) {
  const auto x = gpu_inputs(GetParam().cfg);
  auto ws = detail::cuda::chunk_prep(x.pb, x.in);
  detail::cuda::chunk_scan_fwd(x.pb, x.in, ws, KeptWorkspace::kStates);
  ASSERT_TRUE(ws.states.defined());
  EXPECT_FALSE(ws.v_new.defined());
  auto twin_ws = workspace_in(ws, at::kFloat);
  detail::twin::chunk_v_new(x.pb, x.in, twin_ws);
  detail::cuda::chunk_v_new(x.pb, x.in, ws);
  expect_fields({compare_field("v_new", ws.v_new, twin_ws.v_new, kStage16BitTolerance)});
}

TEST_P(ChunkStagesCuda, ScanBackward) {
  const auto x = gpu_inputs(GetParam().cfg);
  auto ws = detail::cuda::chunk_prep(x.pb, x.in);
  detail::cuda::chunk_scan_fwd(x.pb, x.in, ws, KeptWorkspace::kAll);
  const auto cuda = detail::cuda::chunk_scan_bwd(x.pb, x.in, ws, x.grad_o, x.grad_final);
  const auto twin = detail::twin::chunk_scan_bwd(x.pb, x.in, workspace_in(ws, at::kFloat), x.grad_o,
                                                 x.grad_final);
  expect_fields(compare_scan_bwd(cuda, twin));
}

TEST_P(ChunkStagesCuda, Gradients) {
  const auto x = gpu_inputs(GetParam().cfg);
  auto ws = detail::cuda::chunk_prep(x.pb, x.in);
  detail::cuda::chunk_scan_fwd(x.pb, x.in, ws, KeptWorkspace::kAll);
  const auto sg = detail::cuda::chunk_scan_bwd(x.pb, x.in, ws, x.grad_o, x.grad_final);
  // The twin first: the CUDA stage may reuse the workspace's memory.
  const auto twin = detail::twin::chunk_grads(x.pb, x.in, workspace_in(ws, at::kFloat),
                                              state_grads_in(sg, at::kFloat), x.grad_o);
  const auto cuda = detail::cuda::chunk_grads(x.pb, x.in, ws, sg, x.grad_o);
  expect_fields(compare_grads(x.pb, x.in, cuda, twin));
}

#else

TEST_P(ChunkStagesCuda, Skipped) {}

#endif

INSTANTIATE_TEST_SUITE_P(Bf16, ChunkStagesCuda, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<GpuCase>& info) {
                           return info.param.cfg.name;
                         });

}  // namespace
}  // namespace comba::test
