// The fused SwiGLU and Comba gate functions (and CombaMLP's one-GEMM form) against the
// independent fp64 references of fused_reference.h, forward and every gradient. CPU cases
// check the ATen path in fp64, with central finite differences, and the argument checks;
// *Cuda* cases check the kernels in fp32/bf16/fp16 with the tolerance rule of
// fused_reference.h (twice the ATen twin's error plus a floor): odd sizes (the scalar
// kernels), halves of one GEMM output, misaligned inputs, large |a| (sigmoid saturation,
// the softplus threshold), more heads than the gate kernel takes (ATen fallback), and
// bitwise-reproducible gate parameter grads.
#include "comba/nn.h"
#include "fused_harness.h"
#include "fused_reference.h"
#include "support/expect_error.h"
#include "support/require.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

// ---------------------------------------------------------------------------------------
// SwiGLU

const Fn kSwiGLU = [](const Tensors& in) { return Tensors{swiglu(in[0], in[1])}; };
const Fn kSwiGLUAten = [](const Tensors& in) { return Tensors{swiglu_aten(in[0], in[1])}; };
const Fn kSwiGLUReference = [](const Tensors& in) { return Tensors{reference_swiglu(in[0], in[1])}; };
// The packed form on one [..., 2I] input, and its reference on the two halves.
const Fn kSwiGLUPacked = [](const Tensors& in) { return Tensors{swiglu_packed(in[0])}; };
const Fn kSwiGLUPackedReference = [](const Tensors& in) {
  const auto halves = in[0].chunk(2, -1);
  return Tensors{reference_swiglu(halves[0], halves[1])};
};

// a (times `scale`), b and dy of `shape`.
Tensors swiglu_inputs(at::IntArrayRef shape, double scale, const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  return {scale * torch::randn(shape, o), torch::randn(shape, o), torch::randn(shape, o)};
}

TEST(SwiGLUCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  for (const double scale : {1.0, 30.0}) {
    for (const auto& shape : {std::vector<int64_t>{3, 5, 12}, std::vector<int64_t>{7, 13}}) {
      SCOPED_TRACE("scale " + std::to_string(scale) + " dim " + std::to_string(shape.back()));
      const auto in = swiglu_inputs(shape, scale, f64, 61);
      const Tensors args{in[0], in[1]}, dout{in[2]};
      const auto got = run(kSwiGLU, args, dout);
      expect_close(got, run(kSwiGLUReference, args, dout), {"y"}, {"da", "db"},
                   [](const std::string&, double) { return 1e-13; });
      expect_finite_differences(kSwiGLU, args, dout, got.grad);
    }
  }
}

TEST(SwiGLUCpu, PackedHalvesMatchReference) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  torch::manual_seed(62);
  const Tensors args{3.0 * torch::randn({4, 6, 26}, f64)};
  const Tensors dout{torch::randn({4, 6, 13}, f64)};
  const auto got = run(kSwiGLUPacked, args, dout);
  expect_close(got, run(kSwiGLUPackedReference, args, dout), {"y"}, {"dgate_up"},
               [](const std::string&, double) { return 1e-13; });
  expect_finite_differences(kSwiGLUPacked, args, dout, got.grad);
}

TEST(SwiGLUCpu, Fp32AndBf16RoundOnceLikeTheKernel) {
  // fp32 math, one rounding of the result: bf16 within one bf16 rounding of the fp64 value.
  const auto in = swiglu_inputs({9, 40}, 2.0, torch::TensorOptions(), 63);
  const auto ref = reference_swiglu(in[0], in[1]);
  EXPECT_LT(rel_error(swiglu(in[0], in[1]), ref), 1e-6);
  const auto a16 = in[0].to(torch::kBFloat16), b16 = in[1].to(torch::kBFloat16);
  const auto y16 = swiglu(a16, b16);
  EXPECT_EQ(y16.scalar_type(), torch::kBFloat16);
  EXPECT_LT(rel_error(y16, reference_swiglu(a16, b16)), 4e-3);
}

TEST(SwiGLUCpuChecks, BadArgumentsNameTheArgument) {
  const auto a = torch::randn({4, 8});
  expect_error_mentioning([&] { swiglu(a, torch::randn({4, 7})); }, "argument `b`");
  expect_error_mentioning([&] { swiglu(a.to(torch::kLong), a); }, "argument `a`");
  expect_error_mentioning([&] { swiglu(a, torch::Tensor()); }, "argument `b`");
  expect_error_mentioning([&] { swiglu_packed(torch::randn({4, 7})); }, "argument `gate_up`");
  expect_error_mentioning([&] { swiglu_packed(torch::ones({4, 8}, torch::kInt)); }, "argument `gate_up`");
}

TEST(CombaMLPCpu, OneGemmFormEqualsTheComposition) {
  torch::manual_seed(64);
  CombaMLP mlp(CombaMLPOptions(24, 40));
  mlp->to(torch::kDouble);
  // The checkpoint names stay those of fla's GatedMLP.
  std::vector<std::string> names;
  for (const auto& p : mlp->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}));

  const auto x = torch::randn({2, 7, 24}, torch::kDouble);
  const auto dy = torch::randn({2, 7, 24}, torch::kDouble);
  // Module grads (through the concatenated weight) against the unfused composition.
  const auto xm = x.clone().requires_grad_(true);
  const auto y = mlp(xm);
  (y * dy).sum().backward();
  const auto leaf = [](const torch::Tensor& t) { return t.detach().clone().requires_grad_(true); };
  const Tensors leaves{leaf(x), leaf(mlp->gate_proj->weight), leaf(mlp->up_proj->weight),
                       leaf(mlp->down_proj->weight)};
  const auto expected =
      torch::matmul(torch::silu(torch::matmul(leaves[0], leaves[1].t())) * torch::matmul(leaves[0], leaves[2].t()),
                    leaves[3].t());
  (expected * dy).sum().backward();
  EXPECT_LT(rel_error(y.detach(), expected.detach()), 1e-12);
  EXPECT_LT(rel_error(xm.grad(), leaves[0].grad()), 1e-12);
  EXPECT_LT(rel_error(mlp->gate_proj->weight.grad(), leaves[1].grad()), 1e-12);
  EXPECT_LT(rel_error(mlp->up_proj->weight.grad(), leaves[2].grad()), 1e-12);
  EXPECT_LT(rel_error(mlp->down_proj->weight.grad(), leaves[3].grad()), 1e-12);
}

struct SwiGLUCase {
  const char* name;
  std::vector<int64_t> shape;  // of a and b (packed: of gate_up, last dim 2I)
  bool packed;
  double scale;  // of a
};

void PrintTo(const SwiGLUCase& c, std::ostream* os) { *os << c.name; }

const std::vector<SwiGLUCase> kSwiGLUCases = {
    {"rows1_dim8", {1, 8}, false, 1.0},
    {"rows37_dim100_scalar_bf16", {37, 100}, false, 1.0},
    {"B3_T7_dim13_odd", {3, 7, 13}, false, 1.0},
    {"B2_T50_dim2816", {2, 50, 2816}, false, 1.0},
    {"rows5000_dim64_grid_stride", {5000, 64}, false, 1.0},
    {"rows33_dim64_large_a", {33, 64}, false, 40.0},
    {"packed_B4_T33_I2816", {4, 33, 2 * 2816}, true, 1.0},
    {"packed_rows37_I100_fp32_vec_bf16_scalar", {37, 200}, true, 1.0},
    {"packed_rows5_I13_odd", {5, 26}, true, 1.0},
    {"packed_rows9_I64_large_a", {9, 128}, true, 40.0},
};

class SwiGLUCuda : public ::testing::TestWithParam<SwiGLUCase> {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
};

// Fused, ATen twin and fp64 reference on the same inputs of one case.
void check_swiglu_cuda(const SwiGLUCase& c, torch::Dtype dtype, bool misaligned) {
  const auto o = torch::TensorOptions().device(torch::kCUDA, 0).dtype(dtype);
  auto out_shape = c.shape;
  if (c.packed) out_shape.back() /= 2;
  torch::manual_seed(65);
  Tensors args{c.scale * torch::randn(c.shape, o)};
  if (!c.packed) args.push_back(torch::randn(c.shape, o));
  const Tensors dout{torch::randn(out_shape, o)};
  const Fn fused = c.packed ? kSwiGLUPacked : kSwiGLU;
  const Fn aten = c.packed ? Fn([](const Tensors& in) {
    const auto halves = in[0].chunk(2, -1);
    return Tensors{swiglu_aten(halves[0], halves[1])};
  })
                           : kSwiGLUAten;
  // Inputs copied (differentiably) to start one element past an aligned address: no vector
  // access of the kernels lines up, so they must take the scalar form.
  const Fn shifted = [&](const Tensors& in) {
    Tensors moved;
    for (const auto& t : in) {
      const auto buffer = torch::empty({t.numel() + 1}, t.options());
      auto view = buffer.narrow(0, 1, t.numel()).view(t.sizes());
      view.copy_(t);
      moved.push_back(view);
    }
    return fused(moved);
  };
  const auto ref = run(c.packed ? kSwiGLUPackedReference : kSwiGLUReference, args, dout, torch::kDouble);
  const auto twin = run(aten, args, dout);
  const auto got = run(misaligned ? shifted : fused, args, dout);
  const std::vector<std::string> grads = c.packed ? std::vector<std::string>{"dgate_up"}
                                                  : std::vector<std::string>{"da", "db"};
  expect_close(got, ref, {"y"}, grads, [&](const std::string&, double t) { return allowed_error(t, dtype); }, &twin);
  EXPECT_EQ(got.out[0].scalar_type(), dtype);
}

TEST_P(SwiGLUCuda, FusedMatchesReferenceEveryDtype) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_swiglu_cuda(GetParam(), dtype, /*misaligned=*/false);
  }
}

TEST_P(SwiGLUCuda, MisalignedInputTakesTheScalarKernel) {
  check_swiglu_cuda(GetParam(), torch::kFloat, /*misaligned=*/true);
}

INSTANTIATE_TEST_SUITE_P(Cases, SwiGLUCuda, ::testing::ValuesIn(kSwiGLUCases),
                         [](const ::testing::TestParamInfo<SwiGLUCase>& info) { return info.param.name; });

TEST(CombaMLPCuda, Bf16ModuleMatchesTheComposition) {
  COMBA_SKIP_WITHOUT_CUDA();
  torch::manual_seed(66);
  CombaMLP mlp(CombaMLPOptions(64, 176));
  mlp->to(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  const auto x = torch::randn({2, 33, 64}, mlp->gate_proj->weight.options());
  const auto y = mlp(x);
  const auto f = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
  const auto expected = torch::matmul(reference_swiglu(torch::matmul(f(x), f(mlp->gate_proj->weight).t()),
                                                       torch::matmul(f(x), f(mlp->up_proj->weight).t())),
                                      f(mlp->down_proj->weight).t());
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_LT(rel_error(y, expected), 2e-2);
}

// ---------------------------------------------------------------------------------------
// Comba gates

const Fn kGates = [](const Tensors& in) {
  const auto out = comba_gates(in[0], in[1], in[2], in[3]);
  return Tensors{out.g, out.beta};
};
const Fn kGatesAten = [](const Tensors& in) {
  const auto out = comba_gates_aten(in[0], in[1], in[2], in[3]);
  return Tensors{out.g, out.beta};
};
const Fn kGatesReference = [](const Tensors& in) {
  const auto out = reference_comba_gates(in[0], in[1], in[2], in[3]);
  return Tensors{out.first, out.second};
};

// a (times a_scale, so that |a + dt_bias| crosses the softplus threshold 20 for large
// scales), b, A_log = log U(0.5, 16), dt_bias; then dg and dbeta (fp32, or fp64 for fp64).
struct GateInputs {
  Tensors args, dout;
};

GateInputs gate_inputs(at::IntArrayRef shape, double a_scale, const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t heads = shape.back();
  const bool fp64 = c10::typeMetaToScalarType(o.dtype()) == torch::kDouble;
  const auto p = o.dtype(fp64 ? torch::kDouble : torch::kFloat);
  GateInputs in;
  in.args = {a_scale * torch::randn(shape, o), 2.0 * torch::randn(shape, o),
             torch::empty({heads}, p).uniform_(0.5, 16.0).log(), torch::randn({heads}, p)};
  in.dout = {torch::randn(shape, p), torch::randn(shape, p)};
  return in;
}

const std::vector<std::string> kGateOuts = {"g", "beta"};
const std::vector<std::string> kGateGrads = {"da", "db", "dA_log", "ddt_bias"};

TEST(CombaGatesCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  for (const double scale : {1.0, 15.0}) {
    for (const auto& shape : {std::vector<int64_t>{2, 9, 6}, std::vector<int64_t>{1, 5, 7}}) {
      SCOPED_TRACE("scale " + std::to_string(scale) + " heads " + std::to_string(shape.back()));
      const auto in = gate_inputs(shape, scale, f64, 71);
      const auto got = run(kGates, in.args, in.dout);
      EXPECT_EQ(got.out[0].scalar_type(), torch::kDouble);
      expect_close(got, run(kGatesReference, in.args, in.dout), kGateOuts, kGateGrads,
                   [](const std::string&, double) { return 1e-13; });
      expect_finite_differences(kGates, in.args, in.dout, got.grad);
    }
  }
}

TEST(CombaGatesCpu, SoftplusFollowsTorchThreshold) {
  // Above 20 softplus is the identity (and its slope 1), below it log1p(exp(z)).
  const auto a = torch::tensor({-30.0, 0.0, 19.5, 20.5, 60.0}, torch::kDouble).view({1, 5, 1});
  const auto zeros = torch::zeros({1}, torch::kDouble);
  const auto out = comba_gates(a, torch::zeros_like(a), zeros, zeros);
  EXPECT_TRUE(out.g.view(-1).allclose(-torch::softplus(a.view(-1)), 0.0, 0.0));
  EXPECT_NEAR(out.g.view(-1)[2].item<double>(), -std::log1p(std::exp(19.5)), 1e-14);
  EXPECT_DOUBLE_EQ(out.g.view(-1)[3].item<double>(), -20.5);
  EXPECT_DOUBLE_EQ(out.g.view(-1)[4].item<double>(), -60.0);
}

TEST(CombaGatesCpu, Bf16ProjectionsGiveFp32Gates) {
  const auto in = gate_inputs({2, 3, 4}, 1.0, torch::TensorOptions().dtype(torch::kBFloat16), 72);
  const auto out = comba_gates(in.args[0], in.args[1], in.args[2], in.args[3]);
  EXPECT_EQ(out.g.scalar_type(), torch::kFloat);
  EXPECT_EQ(out.beta.scalar_type(), torch::kFloat);
  const auto ref = reference_comba_gates(in.args[0], in.args[1], in.args[2], in.args[3]);
  EXPECT_LT(rel_error(out.g, ref.first), 1e-6);
  EXPECT_LT(rel_error(out.beta, ref.second), 1e-6);
}

TEST(CombaGatesCpuChecks, BadArgumentsNameTheArgument) {
  const auto a = torch::randn({2, 3, 4});
  const auto h = torch::randn({4});
  expect_error_mentioning([&] { comba_gates(a, torch::randn({2, 3, 5}), h, h); }, "argument `b`");
  expect_error_mentioning([&] { comba_gates(a, a, torch::randn({5}), h); }, "argument `A_log`");
  expect_error_mentioning([&] { comba_gates(a, a, h, torch::randn({4, 1})); }, "argument `dt_bias`");
  expect_error_mentioning([&] { comba_gates(a.to(torch::kInt), a, h, h); }, "argument `a`");
  expect_error_mentioning([&] { comba_gates(torch::randn({}), torch::randn({}), h, h); }, "argument `a`");
}

struct GateCase {
  const char* name;
  std::vector<int64_t> shape;  // [B, T, HV]
  double a_scale;
};

void PrintTo(const GateCase& c, std::ostream* os) { *os << c.name; }

const std::vector<GateCase> kGateCases = {
    {"B1_T1_HV1", {1, 1, 1}, 1.0},
    {"B2_T50_HV6", {2, 50, 6}, 1.0},
    {"B1_T37_HV7_scalar", {1, 37, 7}, 1.0},
    {"B2_T33_HV6_softplus_threshold", {2, 33, 6}, 15.0},
    {"B4_T1250_HV6_many_rows", {4, 1250, 6}, 1.0},
    {"B2_T300_HV32", {2, 300, 32}, 1.0},
    {"B1_T20_HV256_one_row_per_pass", {1, 20, 256}, 1.0},
    {"B2_T9_HV300_aten_fallback", {2, 9, 300}, 1.0},
};

class CombaGatesCuda : public ::testing::TestWithParam<GateCase> {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
};

TEST_P(CombaGatesCuda, FusedMatchesReferenceEveryDtype) {
  const auto& c = GetParam();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto in = gate_inputs(c.shape, c.a_scale, torch::TensorOptions().device(torch::kCUDA, 0).dtype(dtype), 73);
    const auto ref = run(kGatesReference, in.args, in.dout, torch::kDouble);
    const auto twin = run(kGatesAten, in.args, in.dout);
    const auto got = run(kGates, in.args, in.dout);
    EXPECT_EQ(got.out[0].scalar_type(), torch::kFloat);
    expect_close(got, ref, kGateOuts, kGateGrads,
                 [&](const std::string& what, double t) {
                   // g, beta and the parameter grads are fp32; da, db in the projections' dtype.
                   // The parameter grads are sums over tokens: a little more fp32 rounding.
                   if (what == "da" || what == "db") return allowed_error(t, dtype);
                   return allowed_error(t, torch::kFloat) + (what[0] == 'd' ? 1e-5 : 0.0);
                 },
                 &twin);
  }
}

TEST_P(CombaGatesCuda, OnlyGUsedLeavesBetaGradZero) {
  const auto& c = GetParam();
  auto in = gate_inputs(c.shape, c.a_scale, torch::TensorOptions().device(torch::kCUDA, 0), 74);
  in.dout[1] = torch::Tensor();
  const auto ref = run(kGatesReference, in.args, in.dout, torch::kDouble);
  const auto got = run(kGates, in.args, in.dout);
  expect_close(got, ref, kGateOuts, kGateGrads, [](const std::string&, double) { return 2e-5; });
}

INSTANTIATE_TEST_SUITE_P(Cases, CombaGatesCuda, ::testing::ValuesIn(kGateCases),
                         [](const ::testing::TestParamInfo<GateCase>& info) { return info.param.name; });

TEST(CombaGatesCudaRepro, ParameterGradsAreBitwiseReproducible) {
  COMBA_SKIP_WITHOUT_CUDA();
  // 8 x 8192 rows of 6 heads: more rows than one pass of the largest grid, so every thread
  // sums several rows.
  const auto in = gate_inputs({8, 8192, 6}, 1.0, torch::TensorOptions().device(torch::kCUDA, 0).dtype(torch::kBFloat16), 75);
  const auto a = run(kGates, in.args, in.dout);
  const auto b = run(kGates, in.args, in.dout);
  for (size_t i = 0; i < a.grad.size(); ++i) EXPECT_TRUE(a.grad[i].equal(b.grad[i])) << kGateGrads[i];
}

}  // namespace
