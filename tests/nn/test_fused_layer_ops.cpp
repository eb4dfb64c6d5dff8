// The layer's fused pieces around the operator and the GEMMs, against independent fp64
// references (fused_reference.h), forward and every gradient:
//   decay_correction   p = k sigmoid(decay), q' = q - D p (one kernel each way)
//   rms_norm_linear    (gated) RMSNorm per group, then a linear layer, the normed rows
//                      rewritten by the backward instead of kept
//   rms_norm_linears   the same with several weights on one normed input (the layer's
//                      input projections), an output left unused
//   swiglu_linear      SwiGLU then a linear layer, the activation rewritten likewise
// CPU cases check the ATen paths in fp64 with central finite differences, and the argument
// checks; *Cuda* cases check the kernels in fp32/bf16/fp16 with the tolerance rule of
// fused_reference.h: odd sizes (scalar kernels), per-head groups with a gate, more vector
// slots than the decay backward takes (ATen fallback), and bitwise-reproducible dD / ddecay.
#include "comba/nn.h"
#include "fused_harness.h"
#include "fused_reference.h"
#include "support/expect_error.h"
#include "support/require.h"

#include <string>
#include <vector>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define COMBA_TEST_HAS_CUDA_ALLOCATOR 1
#endif

using namespace comba::nn;
using namespace comba::nn::testing;

namespace {

const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

torch::TensorOptions cuda_options(torch::Dtype dtype) { return torch::TensorOptions().device(torch::kCUDA, 0).dtype(dtype); }

// A function's arguments and the gradients of its outputs.
struct Inputs {
  Tensors args, dout;
};

// One fixture per CUDA suite: its cases skip without a GPU.
template <typename Case>
class CudaCases : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { COMBA_SKIP_WITHOUT_CUDA(); }
};

// The fused function, its ATen twin and the fp64 reference on the same inputs (made for
// each of fp32, bf16 and fp16): every output and gradient of the fused one within
// tol(name, the twin's error, dtype) of the reference.
using Tolerance = std::function<double(const std::string&, double, torch::Dtype)>;

void expect_fused_close_every_dtype(const std::function<Inputs(torch::Dtype)>& make, const Fn& fused, const Fn& twin,
                                    const Fn& reference, const std::vector<std::string>& outs,
                                    const std::vector<std::string>& grads, const Tolerance& tol) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto in = make(dtype);
    const auto ref = run(reference, in.args, in.dout, torch::kDouble);
    const auto twin_run = run(twin, in.args, in.dout);
    const auto got = run(fused, in.args, in.dout);
    EXPECT_EQ(got.out[0].scalar_type(), dtype);
    const std::vector<std::string> named(grads.begin(), grads.begin() + static_cast<int64_t>(in.args.size()));
    expect_close(got, ref, outs, named, [&](const std::string& what, double t) { return tol(what, t, dtype); },
                 &twin_run);
  }
}

const Tolerance kRule = [](const std::string&, double twin, torch::Dtype dtype) { return allowed_error(twin, dtype); };

// ---------------------------------------------------------------------------------------
// decay_correction

// Which of decay and D the layer passes (both: use_inner_decay and use_output_correction).
enum class Parts { kBoth, kDecayOnly, kCorrectionOnly };

Fn decay_fn(Parts parts, bool aten) {
  return [parts, aten](const Tensors& in) {
    const auto decay = parts == Parts::kCorrectionOnly ? torch::Tensor() : in[2];
    const auto D = parts == Parts::kDecayOnly ? torch::Tensor() : in[3];
    const auto out = aten ? decay_correction_aten(in[0], in[1], decay, D) : decay_correction(in[0], in[1], decay, D);
    return Tensors{out.q, out.p};
  };
}

// From the definition in fp64: s = 1 / (1 + exp(-decay)), p = k s, q' = q - D p per head.
Fn decay_reference(Parts parts) {
  return [parts](const Tensors& in) {
    const auto q = in[0].to(torch::kDouble), k = in[1].to(torch::kDouble);
    const int64_t heads = q.size(-2);
    auto p = k;
    if (parts != Parts::kCorrectionOnly) p = k * (1.0 / (1.0 + torch::exp(-in[2].to(torch::kDouble)))).view({heads, 1});
    auto q_out = q;
    if (parts != Parts::kDecayOnly) q_out = q - in[3].to(torch::kDouble).view({heads, 1}) * p;
    return Tensors{q_out, p};
  };
}

// q, k of `shape` [..., H, K] in o; decay, D [H] in fp32 (fp64 for fp64 inputs); dq', dp.
Inputs decay_inputs(at::IntArrayRef shape, const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t heads = shape[shape.size() - 2];
  const bool fp64 = c10::typeMetaToScalarType(o.dtype()) == torch::kDouble;
  const auto p = o.dtype(fp64 ? torch::kDouble : torch::kFloat);
  Inputs in;
  in.args = {torch::randn(shape, o), torch::randn(shape, o), 2.0 * torch::randn({heads}, p),
             torch::randn({heads}, p)};
  in.dout = {torch::randn(shape, o), torch::randn(shape, o)};
  return in;
}

const std::vector<std::string> kDecayOuts = {"q'", "p"};
const std::vector<std::string> kDecayGrads = {"dq", "dk", "ddecay", "dD"};

TEST(DecayCorrectionCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  for (const auto parts : {Parts::kBoth, Parts::kDecayOnly, Parts::kCorrectionOnly}) {
    SCOPED_TRACE("parts " + std::to_string(static_cast<int>(parts)));
    const auto in = decay_inputs({2, 5, 3, 7}, f64, 81);
    const auto got = run(decay_fn(parts, false), in.args, in.dout);
    expect_close(got, run(decay_reference(parts), in.args, in.dout), kDecayOuts, kDecayGrads,
                 [](const std::string&, double) { return 1e-13; });
    expect_finite_differences(decay_fn(parts, false), in.args, in.dout, got.grad);
  }
}

TEST(DecayCorrectionCpu, Bf16InputsFp32Parameters) {
  // bf16 q, k with fp32 (or bf16) parameters: outputs in bf16, within two bf16 roundings.
  for (const auto param_dtype : {torch::kFloat, torch::kBFloat16}) {
    auto in = decay_inputs({2, 4, 3, 16}, torch::TensorOptions().dtype(torch::kBFloat16), 82);
    in.args[2] = in.args[2].to(param_dtype);
    in.args[3] = in.args[3].to(param_dtype);
    const auto out = decay_correction(in.args[0], in.args[1], in.args[2], in.args[3]);
    EXPECT_EQ(out.q.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(out.p.scalar_type(), torch::kBFloat16);
    const auto ref = decay_reference(Parts::kBoth)(in.args);
    EXPECT_LT(rel_error(out.p, ref[1]), 8e-3);
    EXPECT_LT(rel_error(out.q, ref[0]), 8e-3);
  }
}

TEST(DecayCorrectionCpuChecks, BadArgumentsNameTheArgument) {
  const auto q = torch::randn({2, 3, 4, 8});
  const auto h = torch::randn({4});
  expect_error_mentioning([&] { decay_correction(q, torch::randn({2, 3, 4, 7}), h, h); }, "argument `k`");
  expect_error_mentioning([&] { decay_correction(q, q.to(torch::kDouble), h, h); }, "argument `k`");
  expect_error_mentioning([&] { decay_correction(q, q, torch::randn({5}), h); }, "argument `decay`");
  expect_error_mentioning([&] { decay_correction(q, q, h, torch::randn({4, 1})); }, "argument `D`");
  expect_error_mentioning([&] { decay_correction(torch::randn({8}), torch::randn({8}), {}, {}); }, "argument `q`");
  expect_error_mentioning([&] { decay_correction(q.to(torch::kInt), q, h, h); }, "argument `q`");
}

struct DecayCase {
  const char* name;
  std::vector<int64_t> shape;  // [B, T, H, K]
};

void PrintTo(const DecayCase& c, std::ostream* os) { *os << c.name; }

const std::vector<DecayCase> kDecayCases = {
    {"B1_T1_H1_K8", {1, 1, 1, 8}},
    {"B2_T33_H6_K128_layer340m", {2, 33, 6, 128}},
    {"B1_T37_H3_K13_scalar", {1, 37, 3, 13}},
    {"B2_T100_H16_K128", {2, 100, 16, 128}},
    {"B3_T20_H2_K64", {3, 20, 2, 64}},
    {"B1_T50_H4_K256", {1, 50, 4, 256}},
    {"B2_T700_H6_K128_many_rows", {2, 700, 6, 128}},
    {"B1_T5_H64_K128_one_row_per_pass", {1, 5, 64, 128}},
    {"B1_T3_H40_K256_aten_fallback", {1, 3, 40, 256}},
};

class DecayCorrectionCuda : public CudaCases<DecayCase> {};

TEST_P(DecayCorrectionCuda, FusedMatchesReferenceEveryDtype) {
  expect_fused_close_every_dtype(
      [&](torch::Dtype dtype) { return decay_inputs(GetParam().shape, cuda_options(dtype), 83); },
      decay_fn(Parts::kBoth, false), decay_fn(Parts::kBoth, true), decay_reference(Parts::kBoth), kDecayOuts,
      kDecayGrads, [](const std::string& what, double t, torch::Dtype dtype) {
        // ddecay and dD are fp32 sums over every token and key channel.
        if (what == "ddecay" || what == "dD") return allowed_error(t, torch::kFloat) + 1e-5;
        return allowed_error(t, dtype);
      });
}

TEST_P(DecayCorrectionCuda, ParameterGradsAreBitwiseReproducible) {
  const auto in = decay_inputs(GetParam().shape, cuda_options(torch::kBFloat16), 84);
  const auto first = run(decay_fn(Parts::kBoth, false), in.args, in.dout);
  const auto second = run(decay_fn(Parts::kBoth, false), in.args, in.dout);
  for (size_t i = 0; i < first.grad.size(); ++i) EXPECT_TRUE(torch::equal(first.grad[i], second.grad[i])) << kDecayGrads[i];
}

INSTANTIATE_TEST_SUITE_P(Cases, DecayCorrectionCuda, ::testing::ValuesIn(kDecayCases),
                         [](const ::testing::TestParamInfo<DecayCase>& info) { return info.param.name; });

TEST(DecayCorrectionCuda, MisalignedInputsKeepTheVectorBackward) {
  // 16 heads of 128 in bf16: 256 vector slots per row, but 2048 scalar ones, more than the
  // backward's block takes. Inputs one element past an aligned address must still work
  // (the launcher copies them to aligned tensors).
  COMBA_SKIP_WITHOUT_CUDA();
  const auto in = decay_inputs({2, 9, 16, 128}, cuda_options(torch::kBFloat16), 86);
  const Fn shifted = [](const Tensors& args) {
    Tensors moved = args;
    for (int i = 0; i < 2; ++i) {
      const auto buffer = torch::empty({args[i].numel() + 1}, args[i].options());
      moved[i] = buffer.narrow(0, 1, args[i].numel()).view(args[i].sizes());
      moved[i].copy_(args[i]);
    }
    return decay_fn(Parts::kBoth, false)(moved);
  };
  const auto ref = run(decay_reference(Parts::kBoth), in.args, in.dout, torch::kDouble);
  const auto twin = run(decay_fn(Parts::kBoth, true), in.args, in.dout);
  expect_close(run(shifted, in.args, in.dout), ref, kDecayOuts, kDecayGrads,
               [](const std::string& what, double t) {
                 if (what == "ddecay" || what == "dD") return allowed_error(t, torch::kFloat) + 1e-5;
                 return allowed_error(t, torch::kBFloat16);
               },
               &twin);
}

TEST(DecayCorrectionCuda, OnlyOneOutputUsed) {
  // A loss on p alone (dq' undefined) and on q' alone (dp undefined).
  COMBA_SKIP_WITHOUT_CUDA();
  const auto in = decay_inputs({2, 9, 4, 32}, cuda_options(torch::kFloat), 85);
  for (int used = 0; used < 2; ++used) {
    SCOPED_TRACE("output " + std::to_string(used));
    Tensors dout{torch::Tensor(), torch::Tensor()};
    dout[used] = in.dout[used];
    const auto got = run(decay_fn(Parts::kBoth, false), in.args, dout);
    expect_close(got, run(decay_reference(Parts::kBoth), in.args, dout, torch::kDouble), kDecayOuts, kDecayGrads,
                 [](const std::string&, double) { return 1e-5; });
  }
}

// ---------------------------------------------------------------------------------------
// rms_norm_linear and swiglu_linear

constexpr double kEps = 1e-6;

// rms_norm_linear(x, norm_weight, gate, weight): in = {x, norm_weight, weight[, gate]}.
Fn norm_linear_fn(bool aten) {
  return [aten](const Tensors& in) {
    const auto gate = in.size() > 3 ? in[3] : torch::Tensor();
    if (!aten) return Tensors{rms_norm_linear(in[0], in[1], kEps, gate, in[2])};
    // The unfused twin: rms_norm_aten per group, then the linear layer.
    const int64_t group = in[1].size(0);
    auto grouped = in[0].sizes().vec();
    grouped.back() /= group;
    grouped.push_back(group);
    const auto normed = rms_norm_aten(in[0].view(grouped), in[1], kEps, gate.defined() ? gate.view(grouped) : gate);
    return Tensors{torch::nn::functional::linear(normed.view(in[0].sizes()), in[2])};
  };
}

const Fn kNormLinearReference = [](const Tensors& in) {
  const int64_t group = in[1].size(0);
  auto grouped = in[0].sizes().vec();
  grouped.back() /= group;
  grouped.push_back(group);
  const auto gate = in.size() > 3 ? in[3].view(grouped) : torch::Tensor();
  const auto normed = reference_rms_norm(in[0].view(grouped), in[1], kEps, gate).view(in[0].sizes());
  return Tensors{torch::matmul(normed, in[2].to(torch::kDouble).t())};
};

// rms_norm_linears(x, norm_weight, weights): in = {x, norm_weight, w0, w1, ...}, one output
// per weight.
Fn norm_linears_fn(bool aten) {
  return [aten](const Tensors& in) {
    const std::vector<torch::Tensor> weights(in.begin() + 2, in.end());
    if (!aten) return rms_norm_linears(in[0], in[1], kEps, {}, weights);
    const auto normed = rms_norm_aten(in[0], in[1], kEps);
    Tensors ys;
    for (const auto& w : weights) ys.push_back(torch::nn::functional::linear(normed, w));
    return ys;
  };
}

const Fn kNormLinearsReference = [](const Tensors& in) {
  const auto normed = reference_rms_norm(in[0], in[1], kEps, {});
  Tensors ys;
  for (size_t i = 2; i < in.size(); ++i) ys.push_back(torch::matmul(normed, in[i].to(torch::kDouble).t()));
  return ys;
};

Fn swiglu_linear_fn(bool aten) {
  return [aten](const Tensors& in) {
    if (!aten) return Tensors{swiglu_linear(in[0], in[1])};
    const auto halves = in[0].chunk(2, -1);
    return Tensors{torch::nn::functional::linear(swiglu_aten(halves[0], halves[1]), in[1])};
  };
}

const Fn kSwiGLULinearReference = [](const Tensors& in) {
  const auto halves = in[0].chunk(2, -1);
  return Tensors{torch::matmul(reference_swiglu(halves[0], halves[1]), in[1].to(torch::kDouble).t())};
};

// x [..., D] (times 3), norm weight [group] around 1, weight [out, D] / sqrt(D), and a gate
// (times 2) when asked; dy [..., out].
Inputs norm_linear_inputs(std::vector<int64_t> shape, int64_t group, int64_t out, bool gated,
                                const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t width = shape.back();
  Inputs in;
  in.args = {3.0 * torch::randn(shape, o), 1.0 + 0.1 * torch::randn({group}, o),
             torch::randn({out, width}, o) / std::sqrt(static_cast<double>(width))};
  if (gated) in.args.push_back(2.0 * torch::randn(shape, o));
  shape.back() = out;
  in.dout = {torch::randn(shape, o)};
  return in;
}

// x [..., D] (times 3), norm weight [D] around 1, one weight [out, D] / sqrt(D) per entry
// of `outs`; dy for each output, left undefined (the output unused) where `unused` says.
Inputs norm_linears_inputs(std::vector<int64_t> shape, const std::vector<int64_t>& outs, int64_t unused,
                           const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t width = shape.back();
  Inputs in;
  in.args = {3.0 * torch::randn(shape, o), 1.0 + 0.1 * torch::randn({width}, o)};
  for (const int64_t out : outs) {
    in.args.push_back(torch::randn({out, width}, o) / std::sqrt(static_cast<double>(width)));
    shape.back() = out;
    in.dout.push_back(static_cast<int64_t>(in.dout.size()) == unused ? torch::Tensor() : torch::randn(shape, o));
  }
  return in;
}

Inputs swiglu_linear_inputs(std::vector<int64_t> shape, int64_t out, const torch::TensorOptions& o, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t half = shape.back() / 2;
  Inputs in;
  in.args = {2.0 * torch::randn(shape, o), torch::randn({out, half}, o) / std::sqrt(static_cast<double>(half))};
  shape.back() = out;
  in.dout = {torch::randn(shape, o)};
  return in;
}

const std::vector<std::string> kNormLinearGrads = {"dx", "dnorm_weight", "dweight", "dgate"};
const std::vector<std::string> kSwiGLULinearGrads = {"dgate_up", "dweight"};

TEST(RMSNormLinearCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  for (const bool gated : {false, true}) {
    for (const int64_t group : {12, 4}) {
      SCOPED_TRACE(std::string(gated ? "gated" : "plain") + " group " + std::to_string(group));
      const auto in = norm_linear_inputs({2, 5, 12}, group, 7, gated, f64, 91);
      const auto got = run(norm_linear_fn(false), in.args, in.dout);
      expect_close(got, run(kNormLinearReference, in.args, in.dout), {"y"},
                   std::vector<std::string>(kNormLinearGrads.begin(), kNormLinearGrads.begin() + in.args.size()),
                   [](const std::string&, double) { return 1e-12; });
      expect_finite_differences(norm_linear_fn(false), in.args, in.dout, got.grad);
    }
  }
}

const std::vector<std::string> kNormLinearsOuts = {"y0", "y1", "y2"};
const std::vector<std::string> kNormLinearsGrads = {"dx", "dnorm_weight", "dw0", "dw1", "dw2"};

TEST(RMSNormLinearsCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  for (const int64_t unused : {-1, 1}) {
    SCOPED_TRACE("unused output " + std::to_string(unused));
    const auto in = norm_linears_inputs({2, 5, 12}, {7, 3, 5}, unused, f64, 96);
    const auto got = run(norm_linears_fn(false), in.args, in.dout);
    expect_close(got, run(kNormLinearsReference, in.args, in.dout), kNormLinearsOuts, kNormLinearsGrads,
                 [](const std::string&, double) { return 1e-12; });
    expect_finite_differences(norm_linears_fn(false), in.args, in.dout, got.grad);
  }
}

TEST(SwiGLULinearCpu, Fp64MatchesReferenceAndFiniteDifferences) {
  const auto in = swiglu_linear_inputs({3, 4, 18}, 5, torch::TensorOptions().dtype(torch::kDouble), 92);
  const auto got = run(swiglu_linear_fn(false), in.args, in.dout);
  expect_close(got, run(kSwiGLULinearReference, in.args, in.dout), {"y"}, kSwiGLULinearGrads,
               [](const std::string&, double) { return 1e-12; });
  expect_finite_differences(swiglu_linear_fn(false), in.args, in.dout, got.grad);
}

TEST(FusedLinearCpuChecks, BadArgumentsNameTheArgument) {
  const auto x = torch::randn({2, 3, 12});
  const auto nw = torch::ones({4});
  const auto w = torch::randn({5, 12});
  expect_error_mentioning([&] { rms_norm_linear(x, torch::ones({5}), kEps, {}, w); }, "argument `x`");
  expect_error_mentioning([&] { rms_norm_linear(x, nw, kEps, {}, torch::randn({5, 11})); }, "argument `weight`");
  expect_error_mentioning([&] { rms_norm_linear(x, nw, kEps, torch::randn({2, 3, 11}), w); }, "argument `gate`");
  expect_error_mentioning([&] { rms_norm_linear(x, torch::ones({2, 2}), kEps, {}, w); }, "argument `norm_weight`");
  expect_error_mentioning([&] { swiglu_linear(torch::randn({2, 7}), torch::randn({5, 3})); }, "argument `gate_up`");
  expect_error_mentioning([&] { swiglu_linear(torch::randn({2, 8}), torch::randn({5, 3})); }, "argument `weight`");
}

TEST(CombaMLPCpu, NormalizedFormEqualsNormThenMLP) {
  torch::manual_seed(93);
  CombaMLP mlp(CombaMLPOptions(24, 40));
  RMSNorm norm(RMSNormOptions(24));
  mlp->to(torch::kDouble);
  norm->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    norm->weight.normal_(1.0, 0.1);
  }
  const auto x = torch::randn({2, 7, 24}, torch::kDouble);
  EXPECT_LT(rel_error(mlp->forward_normalized(x, *norm), mlp(norm(x))), 1e-13);
}

struct LinearCase {
  const char* name;
  std::vector<int64_t> shape;  // of x (norm) or gate_up (swiglu)
  int64_t group;               // norm group (unused for swiglu)
  int64_t out;
  bool gated;
};

void PrintTo(const LinearCase& c, std::ostream* os) { *os << c.name; }

const std::vector<LinearCase> kNormLinearCases = {
    {"o_norm_B2_T33_6heads_of_256_gated", {2, 33, 1536}, 256, 1024, true},
    {"mlp_norm_B2_T17_D1024", {2, 17, 1024}, 1024, 704, false},
    {"odd_B2_T7_D26_groups_of_13_gated_scalar", {2, 7, 26}, 13, 5, true},
    {"rows1_D64", {1, 64}, 64, 8, false},
};

const std::vector<LinearCase> kSwiGLULinearCases = {
    {"mlp_B2_T33_I2816", {2, 33, 2 * 2816}, 0, 1024, false},
    {"odd_rows9_I13_scalar", {9, 26}, 0, 7, false},
    {"rows1_I64", {1, 128}, 0, 16, false},
};

class RMSNormLinearCuda : public CudaCases<LinearCase> {};
class SwiGLULinearCuda : public CudaCases<LinearCase> {};

TEST_P(RMSNormLinearCuda, FusedMatchesReferenceEveryDtype) {
  const auto& c = GetParam();
  expect_fused_close_every_dtype(
      [&](torch::Dtype dtype) { return norm_linear_inputs(c.shape, c.group, c.out, c.gated, cuda_options(dtype), 94); },
      norm_linear_fn(false), norm_linear_fn(true), kNormLinearReference, {"y"}, kNormLinearGrads, kRule);
}

TEST_P(SwiGLULinearCuda, FusedMatchesReferenceEveryDtype) {
  const auto& c = GetParam();
  expect_fused_close_every_dtype(
      [&](torch::Dtype dtype) { return swiglu_linear_inputs(c.shape, c.out, cuda_options(dtype), 95); },
      swiglu_linear_fn(false), swiglu_linear_fn(true), kSwiGLULinearReference, {"y"}, kSwiGLULinearGrads, kRule);
}

INSTANTIATE_TEST_SUITE_P(Cases, RMSNormLinearCuda, ::testing::ValuesIn(kNormLinearCases),
                         [](const ::testing::TestParamInfo<LinearCase>& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Cases, SwiGLULinearCuda, ::testing::ValuesIn(kSwiGLULinearCases),
                         [](const ::testing::TestParamInfo<LinearCase>& info) { return info.param.name; });

// The layer's input projections: q/k (768), a (6 columns), v (1536) on one normed input,
// every output used, then the small one unused (its gradient skipped, not zero-filled).
TEST(RMSNormLinearsCuda, FusedMatchesReferenceEveryDtype) {
  COMBA_SKIP_WITHOUT_CUDA();
  for (const int64_t unused : {-1, 1}) {
    SCOPED_TRACE("unused output " + std::to_string(unused));
    expect_fused_close_every_dtype(
        [&](torch::Dtype dtype) { return norm_linears_inputs({2, 33, 1024}, {768, 6, 1536}, unused, cuda_options(dtype), 97); },
        norm_linears_fn(false), norm_linears_fn(true), kNormLinearsReference, kNormLinearsOuts, kNormLinearsGrads,
        kRule);
  }
}

TEST(FusedLinearCuda, KeepsOnlyTheInputsForTheBackward) {
  // The point of the pair: after a forward that will be differentiated, the graph holds x
  // (and the gate) but not norm(x); norm + Linear holds both. Measured as device memory
  // still allocated once the forward's temporaries are gone.
  COMBA_SKIP_WITHOUT_CUDA();
  const auto o = cuda_options(torch::kBFloat16);
  const auto x = torch::randn({4096, 1024}, o).requires_grad_(true);
  const auto nw = torch::ones({1024}, o).requires_grad_(true);
  const auto w = (torch::randn({256, 1024}, o) / 32.0).requires_grad_(true);
#ifndef COMBA_TEST_HAS_CUDA_ALLOCATOR
  GTEST_SKIP() << "LibTorch without its CUDA allocator headers";
#else
  const auto allocated = [] {
    torch::cuda::synchronize();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
  };
  const int64_t before = allocated();
  auto fused = rms_norm_linear(x, nw, kEps, {}, w);
  const int64_t fused_bytes = allocated() - before;
  fused = torch::Tensor();
  const int64_t before_unfused = allocated();
  auto unfused = torch::nn::functional::linear(rms_norm(x, nw, kEps), w);
  const int64_t unfused_bytes = allocated() - before_unfused;
  const int64_t normed_bytes = x.numel() * x.element_size();
  EXPECT_GE(unfused_bytes - fused_bytes, normed_bytes) << "fused " << fused_bytes << " unfused " << unfused_bytes;
#endif
}

}  // namespace
