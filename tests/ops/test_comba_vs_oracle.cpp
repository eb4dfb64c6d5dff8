// chunk_comba and fused_recurrent_comba against the Eigen fp64 oracle, forward and every
// gradient, over a grid of named cases. The grid is not a cartesian product (CI has two
// cores): each listed value of each axis appears in at least one readable case
//   T in {1, 2, 63, 64, 65, 130}, K and V in {16, 32, 64, 100}, H in {1, 3}, GVA 2x,
//   l2norm on/off, initial/final state, custom scale, varlen with lengths 0, 1, 63, 65;
// plus the model's sizes (K = 128, V = 128 / 256), decode at T = 1 with B = 256 and 10, and
// head dims with their own GPU tiles (K 48 / V 18, K 200 / V 24, packed K 256 / V 40).
// The oracle always computes on exactly the values the operator saw (inputs and
// cotangents rounded to the run's dtypes), so the errors measured are the operator's own.
//
// Tolerances (norm-wise, ||x - ref|| / ||ref|| per output and per gradient):
//   fp64: 1e-10.  fp32: 1e-5 (SPEC section 4).
//   bf16 / fp16: 2 * (error of rounding the fp64 reference itself to that dtype) + 1e-5,
//   computed per result (support/comba_case.h, low_precision_tolerance, says why);
//   on CUDA, where 16-bit inputs run the tensor-core kernels, at least 3 unit roundoffs
//   (tensor_core_tolerance).
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "support/comba_case.h"
#include "support/expect_close.h"
#include "support/require.h"

namespace comba::test {
namespace {

TolerancePolicy low_precision(at::ScalarType dtype) {
  return [dtype](const at::Tensor& reference) {
    return low_precision_tolerance(reference, dtype);
  };
}

TolerancePolicy tensor_cores(at::ScalarType dtype) {
  return [dtype](const at::Tensor& reference) {
    return tensor_core_tolerance(reference, dtype);
  };
}

std::vector<CaseConfig> grid() {
  auto make = [](int64_t T, int64_t K, int64_t V, int64_t H, int64_t gva) {
    CaseConfig c;
    c.seq_len = T;
    c.key_dim = K;
    c.value_dim = V;
    c.heads = H;
    c.value_heads = H * gva;
    c.seed = static_cast<uint64_t>(T * 1000003 + K * 1009 + V * 31 + H);
    return c;
  };
  std::vector<CaseConfig> cases;
  {
    auto c = make(1, 16, 16, 1, 1);  // one token, nothing else
    cases.push_back(c);
  }
  {
    auto c = make(2, 32, 64, 1, 2);
    c.initial_state = c.final_state = true;
    c.scale = 0.3;
    cases.push_back(c);
  }
  {
    auto c = make(63, 64, 32, 3, 1);  // one short chunk
    c.l2norm = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(64, 100, 100, 1, 2);  // exactly one chunk, head dims not multiples of 64
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(65, 100, 16, 3, 2);  // one chunk and one token
    c.l2norm = true;
    cases.push_back(c);
  }
  {
    auto c = make(130, 16, 100, 3, 2);  // three chunks, the last short
    c.initial_state = c.final_state = true;
    c.scale = 0.2;
    cases.push_back(c);
  }
  {
    auto c = make(130, 64, 64, 1, 1);
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(65, 32, 32, 1, 2);
    c.batch = 2;
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(0, 32, 16, 1, 2);
    c.segments = {0, 1, 63, 65};
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(0, 64, 100, 3, 1);
    c.segments = {65, 0, 63, 1};
    c.initial_state = c.final_state = true;
    c.scale = 0.15;
    cases.push_back(c);
  }
  // Head dims with their own tiles on a GPU: V not a multiple of 8 (the recurrent kernels,
  // one state column per lane), and K > 128 (the chunk kernels' split key tile; 32 state
  // rows per thread on the recurrent ones), packed with GVA at K = 256.
  {
    auto c = make(40, 48, 18, 1, 2);
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(33, 200, 24, 1, 1);
    c.l2norm = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(0, 256, 40, 1, 2);
    c.segments = {70, 0, 130};
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  // The model's head sizes: decode at T = 1 over a large batch, and a V = 256 prefill.
  {
    auto c = make(1, 128, 128, 2, 2);
    c.batch = 256;
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  {
    // 40 (sequence, head) pairs: the decode kernel's 2-columns-per-lane tile on an H100
    auto c = make(1, 128, 128, 2, 2);
    c.batch = 10;
    c.l2norm = c.final_state = true;
    cases.push_back(c);
  }
  {
    auto c = make(130, 128, 256, 1, 1);
    c.l2norm = c.initial_state = c.final_state = true;
    cases.push_back(c);
  }
  return cases;
}

struct GridParam {
  Fn fn;
  CaseConfig cfg;
};

void PrintTo(const GridParam& param, std::ostream* out) {
  *out << fn_name(param.fn) << '/' << describe(param.cfg);
}

std::vector<GridParam> grid_params() {
  std::vector<GridParam> params;
  for (const Fn fn : {Fn::kChunk, Fn::kRecurrent}) {
    for (const CaseConfig& cfg : grid()) params.push_back({fn, cfg});
  }
  return params;
}

std::string param_name(const ::testing::TestParamInfo<GridParam>& info) {
  return std::string(info.param.fn == Fn::kChunk ? "chunk_" : "recurrent_") +
         describe(info.param.cfg);
}

class CombaVsOracle : public ::testing::TestWithParam<GridParam> {
 protected:
  // Runs the operator at `run` and compares every result with the oracle on the same values.
  void compare(const RunConfig& run, const TolerancePolicy& tolerance) const {
    const GridParam& param = GetParam();
    const CaseTensors exact = make_case(param.cfg);
    const CaseTensors seen = round_to_run(exact, run);
    NamedTensors want = run_oracle(param.cfg, seen, run);
    if (run.inference) want = forward_results(std::move(want));
    const NamedTensors got = run_operator(param.fn, param.cfg, exact, run);
    const std::string label = std::string(fn_name(param.fn)) + '/' + describe(param.cfg) + '/' +
                              std::string(c10::toString(run.dtype)) + '/' +
                              run.device.str();
    expect_close(got, want, tolerance, label);
  }

  static RunConfig cuda_run(at::ScalarType dtype, at::ScalarType gate, at::ScalarType beta) {
    RunConfig run{dtype, gate, beta, at::Device(at::kCUDA)};
    return run;
  }
};

TEST_P(CombaVsOracle, Float64) {
  compare({at::kDouble, at::kDouble, at::kDouble}, fixed(kFloat64Tolerance));
}

TEST_P(CombaVsOracle, Float32) {
  compare({at::kFloat, at::kFloat, at::kFloat}, fixed(kFloat32Tolerance));
}

// Models pass g in fp32 beside bf16 activations (SPEC section 1): test that mix.
TEST_P(CombaVsOracle, BFloat16) {
  compare({at::kBFloat16, at::kFloat, at::kBFloat16}, low_precision(at::kBFloat16));
}

// fp16 activations with fp16 g and fp32 beta: the other accepted mix.
TEST_P(CombaVsOracle, Float16) {
  compare({at::kHalf, at::kHalf, at::kFloat}, low_precision(at::kHalf));
}

TEST_P(CombaVsOracle, CudaFloat32) {
  COMBA_SKIP_WITHOUT_CUDA();
  compare(cuda_run(at::kFloat, at::kFloat, at::kFloat), fixed(kFloat32Tolerance));
}

TEST_P(CombaVsOracle, CudaBFloat16) {
  COMBA_SKIP_WITHOUT_CUDA();
  compare(cuda_run(at::kBFloat16, at::kFloat, at::kBFloat16), tensor_cores(at::kBFloat16));
}

TEST_P(CombaVsOracle, CudaFloat16) {
  COMBA_SKIP_WITHOUT_CUDA();
  compare(cuda_run(at::kHalf, at::kHalf, at::kFloat), tensor_cores(at::kHalf));
}

// Inputs that need no gradient take the inference kernels (no saved workspace or
// checkpoints; at T = 1 the recurrent form's decode kernel): forward results only.
TEST_P(CombaVsOracle, CudaInferenceFloat32) {
  COMBA_SKIP_WITHOUT_CUDA();
  RunConfig run = cuda_run(at::kFloat, at::kFloat, at::kFloat);
  run.inference = true;
  compare(run, fixed(kFloat32Tolerance));
}

TEST_P(CombaVsOracle, CudaInferenceBFloat16) {
  COMBA_SKIP_WITHOUT_CUDA();
  RunConfig run = cuda_run(at::kBFloat16, at::kFloat, at::kBFloat16);
  run.inference = true;
  compare(run, tensor_cores(at::kBFloat16));
}

INSTANTIATE_TEST_SUITE_P(Grid, CombaVsOracle, ::testing::ValuesIn(grid_params()), param_name);

// chunk == recurrent directly, at every dtype the CPU runs: both forms must agree with
// each other at least as well as each agrees with the oracle.
class ChunkEqualsRecurrent : public ::testing::TestWithParam<CaseConfig> {
 protected:
  void compare(const RunConfig& run, const TolerancePolicy& tolerance) const {
    const CaseTensors exact = make_case(GetParam());
    const NamedTensors chunk = run_operator(Fn::kChunk, GetParam(), exact, run);
    const NamedTensors recurrent = run_operator(Fn::kRecurrent, GetParam(), exact, run);
    expect_close(chunk, recurrent, tolerance,
                 "chunk-vs-recurrent/" + describe(GetParam()) + '/' + c10::toString(run.dtype));
  }
};

TEST_P(ChunkEqualsRecurrent, Float64) {
  compare({at::kDouble, at::kDouble, at::kDouble}, fixed(kFloat64Tolerance));
}

TEST_P(ChunkEqualsRecurrent, Float32) {
  // Each is within 1e-5 of the oracle, so within 2e-5 of each other.
  compare({at::kFloat, at::kFloat, at::kFloat}, fixed(2 * kFloat32Tolerance));
}

INSTANTIATE_TEST_SUITE_P(Grid, ChunkEqualsRecurrent, ::testing::ValuesIn(grid()),
                         [](const ::testing::TestParamInfo<CaseConfig>& info) {
                           return describe(info.param);
                         });

}  // namespace
}  // namespace comba::test
