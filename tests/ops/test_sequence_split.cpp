// chunk_comba with CombaOptions::split_length (sequences cut into segments: transitions side
// by side, a scan over segments, outputs side by side) against the fp64 oracle and against
// the unsplit operator, forward and every gradient (initial state included): several
// segment counts, odd lengths, GVA, packed sequences with empty and one-token segments,
// g = -20, p and beta left to their defaults, inference, a single 65536-token sequence, and
// the option's argument errors. On a GPU the same against the oracle on the kernels (bf16
// and fp32, K = V = 128 and V = 256, whose transition run has V + K = 384 value columns).
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "support/comba_case.h"
#include "support/expect_close.h"
#include "support/expect_error.h"
#include "support/require.h"

namespace comba::test {
namespace {

using comba::testing::expect_error_mentioning;

CaseConfig split_case(const std::string& name, int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K,
                      int64_t V) {
  CaseConfig c;
  c.name = name;
  c.batch = B, c.seq_len = T, c.heads = H, c.value_heads = HV, c.key_dim = K, c.value_dim = V;
  c.l2norm = c.initial_state = c.final_state = true;
  c.seed = static_cast<uint64_t>(T * 7919 + K * 31 + V);
  return c;
}

CaseConfig packed(CaseConfig c, std::vector<int64_t> lengths) {
  c.segments = std::move(lengths);
  return c;
}

// The split run against the oracle (on the values it saw) and against the unsplit run.
void check_split(const CaseConfig& cfg, const CaseTensors& t, RunConfig run, int64_t split_length, double tolerance) {
  const auto label = cfg.name + " split " + std::to_string(split_length);
  RunConfig unsplit = run;
  unsplit.split_length = 0;
  run.split_length = split_length;
  const auto got = run_operator(Fn::kChunk, cfg, t, run);
  auto oracle = run_oracle(cfg, round_to_run(t, run), run);
  if (run.inference) oracle = forward_results(std::move(oracle));
  expect_close(got, oracle, fixed(tolerance), label + " vs oracle");
  expect_close(got, run_operator(Fn::kChunk, cfg, t, unsplit), fixed(tolerance), label + " vs unsplit");
}

TEST(SequenceSplit, DenseAtSeveralSegmentCounts) {
  // T = 300: 5, 3 and 2 segments, the last one short (44, 44 and 108 tokens); GVA 2x.
  const auto cfg = split_case("dense_T300", 2, 300, 2, 4, 16, 12);
  const auto t = make_case(cfg);
  for (const int64_t length : {64, 128, 192}) check_split(cfg, t, RunConfig{}, length, kFloat64Tolerance);
}

TEST(SequenceSplit, PackedWithEmptyAndOneTokenSegments) {
  // Lengths 0 (empty: one empty segment, final state = initial state), 1 (no split), 65
  // (64 + a one-token segment), 128 (two whole segments), 0 and 130.
  const auto cfg = packed(split_case("packed", 1, 0, 1, 2, 16, 16), {0, 1, 65, 128, 0, 130});
  check_split(cfg, make_case(cfg), RunConfig{}, 64, kFloat64Tolerance);
}

TEST(SequenceSplit, StrongDecayAndDefaults) {
  // g = -20 on every token (each segment's transition nearly zero), then p = k and beta = 1
  // left to the operator.
  const auto cfg = split_case("decay_minus_20", 1, 200, 1, 1, 8, 8);
  auto t = make_case(cfg);
  t.g = at::full_like(t.g, -20.0);
  check_split(cfg, t, RunConfig{}, 64, kFloat64Tolerance);
  RunConfig defaults;
  defaults.omit_p = defaults.omit_beta = true;
  check_split(cfg, make_case(cfg), defaults, 64, kFloat64Tolerance);
}

TEST(SequenceSplit, Float32AndInference) {
  const auto cfg = split_case("fp32", 2, 257, 1, 2, 16, 16);
  const auto t = make_case(cfg);
  RunConfig fp32;
  fp32.dtype = fp32.gate_dtype = fp32.beta_dtype = at::kFloat;
  check_split(cfg, t, fp32, 64, kFloat32Tolerance);
  RunConfig inference;
  inference.inference = true;
  check_split(cfg, t, inference, 128, kFloat64Tolerance);
}

TEST(SequenceSplit, OneSequenceOf65536Tokens) {
  // 8 segments of 8192 tokens; fp32 (the compute dtype of real runs), small heads.
  auto cfg = split_case("T65536", 1, 65536, 1, 1, 8, 8);
  const auto t = make_case(cfg);
  RunConfig fp32;
  fp32.dtype = fp32.gate_dtype = fp32.beta_dtype = at::kFloat;
  check_split(cfg, t, fp32, 8192, kFloat32Tolerance);
}

TEST(SequenceSplit, NoSequenceLongerThanTheSplitRunsUnsplit) {
  const auto cfg = split_case("short", 2, 100, 1, 1, 8, 8);
  check_split(cfg, make_case(cfg), RunConfig{}, 128, kFloat64Tolerance);
}

TEST(SequenceSplit, ErrorsNameTheArgument) {
  const auto q = at::randn({1, 70, 1, 8}, at::kDouble), v = at::randn({1, 70, 1, 8}, at::kDouble);
  const auto g = -at::rand({1, 70, 1}, at::kDouble);
  for (const int64_t bad : {-64, 100}) {
    const auto call = [&] { chunk_comba(q, q, v, c10::nullopt, g, c10::nullopt, CombaOptions().split_length(bad)); };
    const std::vector<std::string> needles = {"chunk_comba", "`split_length`", "multiple of 64",
                                              "got " + std::to_string(bad)};
    for (const auto& needle : needles) {
      expect_error_mentioning(call, needle);
    }
  }
}

class SequenceSplitCuda : public ::testing::Test {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
};

TEST_F(SequenceSplitCuda, KernelsMatchTheOracle) {
  const std::vector<CaseConfig> cases = {
      split_case("cuda_k128_v128", 1, 2048 + 100, 2, 2, 128, 128),
      split_case("cuda_k128_v256_gva", 1, 1536, 1, 2, 128, 256),  // transitions at 384 value columns
      packed(split_case("cuda_packed", 1, 0, 2, 2, 64, 64), {0, 1, 1025, 700, 2000})};
  for (const auto& cfg : cases) {
    const auto t = make_case(cfg);
    for (const auto dtype : {at::kBFloat16, at::kFloat}) {
      RunConfig run;
      run.device = at::kCUDA;
      run.dtype = dtype;
      run.gate_dtype = run.beta_dtype = at::kFloat;
      run.split_length = 512;
      const auto got = run_operator(Fn::kChunk, cfg, t, run);
      const auto want = run_oracle(cfg, round_to_run(t, run), run);
      expect_close(got, want, [&](const at::Tensor& reference) { return tolerance_for(reference, run); },
                   cfg.name + " " + std::string(c10::toString(dtype)));
    }
  }
}

}  // namespace
}  // namespace comba::test
