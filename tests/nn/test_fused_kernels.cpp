// The fused nn kernels (short convolution + SiLU, gated RMSNorm) and their ATen twins
// against the independent fp64 references of fused_reference.h: outputs, final states and
// every gradient, dense and packed sequences (empty ones, ones shorter than the conv,
// ones crossing the kernels' token runs), carried states, odd channel counts (the scalar
// kernels), every dtype. CPU cases check the ATen path and the argument checks; *Cuda*
// cases check the kernels (skipped without a GPU), with the tolerance rule of
// fused_reference.h, plus bitwise-reproducible weight grads.
#include "support/expect_error.h"
#include "comba/core/element_type_of.h"
#include "comba/nn.h"
#include "fused_reference.h"
#include "support/require.h"

#ifdef COMBA_NN_KERNEL_EMULATION
#include "nn/cuda/short_conv/short_conv_traits.h"
#include "short_conv_emulation.h"
#endif

#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace comba::nn;
using namespace comba::nn::testing;
// nn's checks are TORCH_CHECKs: their errors are c10::Errors.
const auto expect_error_mentioning = comba::testing::expect_error_mentioning<c10::Error>;

namespace {

// ---------------------------------------------------------------------------------------
// Short convolution

struct ConvCase {
  const char* name;
  int64_t batch, seq_len, channels, taps;
  bool bias, silu, state;
  std::vector<int64_t> cu;  // packed sequences (batch 1) when not empty
};

std::string conv_case_name(const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; }
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

const std::vector<ConvCase> kConvCases = {
    {"dense_B3_T70_C12_K4_bias_state", 3, 70, 12, 4, true, true, true, {}},
    {"dense_B2_T33_C6_K4_scalar", 2, 33, 6, 4, false, true, false, {}},
    {"dense_B4_T1_C8_K4_decode_step", 4, 1, 8, 4, false, true, true, {}},
    {"dense_B2_T2_C8_K4_shorter_than_conv", 2, 2, 8, 4, true, true, true, {}},
    {"dense_B2_T40_C8_K3_no_silu", 2, 40, 8, 3, true, false, true, {}},
    {"dense_B2_T65_C16_K2", 2, 65, 16, 2, false, true, true, {}},
    {"dense_B1_T9_C4_K1", 1, 9, 4, 1, true, true, false, {}},
    {"dense_B1_T130_C20_K4_long", 1, 130, 20, 4, false, true, false, {}},
    {"packed_C12_K4_empty_and_short", 1, 111, 12, 4, true, true, true, {0, 5, 5, 6, 8, 45, 45, 110, 111}},
    {"packed_C7_K4_scalar", 1, 100, 7, 4, true, true, false, {0, 31, 33, 64, 65, 100}},
    {"packed_C8_K4_leading_empty", 1, 100, 8, 4, false, true, true, {0, 0, 0, 40, 72, 100}},
    {"packed_C8_K3_trailing_empty", 1, 64, 8, 3, false, true, true, {0, 64, 64, 64}},
    {"packed_C4_K4_one_token_each", 1, 6, 4, 4, true, true, true, {0, 1, 2, 3, 4, 5, 6}},
};

struct ConvInputs {
  torch::Tensor x, weight, bias, h0, cu, dy, d_final;
};

// Inputs in `dtype` (weight in `weight_dtype`), on `device`; dy and d_final in x's dtype.
ConvInputs make_conv_inputs(const ConvCase& c, torch::Dtype dtype, torch::Dtype weight_dtype,
                            const torch::Device& device, uint64_t seed) {
  torch::manual_seed(seed);
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  const int64_t num_seqs = c.cu.empty() ? c.batch : static_cast<int64_t>(c.cu.size()) - 1;
  ConvInputs in;
  in.x = torch::randn({c.batch, c.seq_len, c.channels}, o);
  in.weight = (0.5 * torch::randn({c.channels, 1, c.taps}, o)).to(weight_dtype);
  if (c.bias) in.bias = (0.5 * torch::randn({c.channels}, o)).to(weight_dtype);
  in.h0 = maybe_state(c.state, num_seqs, c.channels, c.taps, o);
  if (!c.cu.empty()) in.cu = torch::tensor(c.cu, torch::TensorOptions().dtype(torch::kLong)).to(device);
  in.dy = torch::randn({c.batch, c.seq_len, c.channels}, o);
  if (c.state) in.d_final = torch::randn({num_seqs, c.channels, c.taps - 1}, o);
  return in;
}

struct ConvRun {
  torch::Tensor y, final_state, dx, dw, db, dh0;
};

using ConvFn = std::function<ShortConvOutput(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                             const torch::Tensor& h0)>;

// Runs fn on leaf copies of the inputs (cast to `dtype` when given) and backpropagates
// sum(y dy) + sum(final_state d_final).
ConvRun run_conv(const ConvFn& fn, const ConvInputs& in, c10::optional<torch::Dtype> dtype = c10::nullopt) {
  const auto leaf = [&](const torch::Tensor& t) {
    if (!t.defined()) return t;
    return (dtype ? t.to(*dtype) : t).detach().clone().requires_grad_(true);
  };
  auto x = leaf(in.x), w = leaf(in.weight), b = leaf(in.bias), h0 = leaf(in.h0);
  const auto out = fn(x, w, b, h0);
  auto loss = (out.output.to(torch::kDouble) * in.dy.to(torch::kDouble)).sum();
  if (in.d_final.defined()) loss = loss + (out.final_state.to(torch::kDouble) * in.d_final.to(torch::kDouble)).sum();
  loss.backward();
  ConvRun r{out.output.detach(), out.final_state.detach(), x.grad(), w.grad(), {}, {}};
  if (b.defined()) r.db = b.grad();
  if (h0.defined()) r.dh0 = h0.grad();
  return r;
}

ConvRun run_reference(const ConvCase& c, const ConvInputs& in) {
  return run_conv(
      [&](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, const torch::Tensor& h0) {
        const auto ref = reference_short_conv(x, w, b, h0, c.cu, c.silu);
        return ShortConvOutput{ref.y, ref.final_state};
      },
      in, torch::kDouble);
}

ConvFn conv_fn(bool fused, const ConvCase& c, const torch::Tensor& cu) {
  return [fused, silu = c.silu, cu](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                    const torch::Tensor& h0) {
    return fused ? short_convolution(x, w, b, h0, cu, silu) : short_convolution_aten(x, w, b, h0, cu, silu);
  };
}

// Every output of `run` within `tol(error of the same output of `twin`)` of `ref`.
void expect_conv_close(const ConvRun& run, const ConvRun& ref, const std::function<double(const char*, double)>& tol,
                       const ConvRun* twin = nullptr) {
  const auto check = [&](const char* what, const torch::Tensor& a, const torch::Tensor& r, const torch::Tensor* t) {
    ASSERT_EQ(a.defined(), r.defined()) << what;
    if (!a.defined()) return;
    const double err = rel_error(a, r);
    const double twin_err = t != nullptr && t->defined() ? rel_error(*t, r) : 0.0;
    EXPECT_LE(err, tol(what, twin_err)) << what << " (twin error " << twin_err << ")";
  };
  check("y", run.y, ref.y, twin ? &twin->y : nullptr);
  check("final_state", run.final_state, ref.final_state, twin ? &twin->final_state : nullptr);
  check("dx", run.dx, ref.dx, twin ? &twin->dx : nullptr);
  check("dweight", run.dw, ref.dw, twin ? &twin->dw : nullptr);
  check("dbias", run.db, ref.db, twin ? &twin->db : nullptr);
  check("dinitial_state", run.dh0, ref.dh0, twin ? &twin->dh0 : nullptr);
}

class ShortConvCpu : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ShortConvCpu, AtenPathMatchesReferenceFp64AndFp32) {
  const auto& c = GetParam();
  for (const auto dtype : {torch::kDouble, torch::kFloat}) {
    SCOPED_TRACE(dtype == torch::kDouble ? "fp64" : "fp32");
    const auto in = make_conv_inputs(c, dtype, dtype, torch::kCPU, 11);
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-6;
    expect_conv_close(run_conv(conv_fn(/*fused=*/true, c, in.cu), in), run_reference(c, in),
                      [tol](const char*, double) { return tol; });
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ShortConvCpu, ::testing::ValuesIn(kConvCases), conv_case_name);

TEST(ShortConvCpuChecks, BadArgumentsNameTheArgument) {
  const auto x = torch::randn({1, 10, 8});
  const auto w = torch::randn({8, 1, 4});
  expect_error_mentioning([&] { short_convolution(x.view({10, 8}), w); }, "argument `x`");
  expect_error_mentioning([&] { short_convolution(x, torch::randn({8, 4})); }, "argument `weight`");
  expect_error_mentioning([&] { short_convolution(x, torch::randn({8, 2, 4})); }, "argument `weight`");
  expect_error_mentioning([&] { short_convolution(x, torch::randn({6, 1, 4})); }, "argument `x`");
  expect_error_mentioning([&] { short_convolution(x, w, torch::randn({7})); }, "argument `bias`");
  expect_error_mentioning([&] { short_convolution(x, w, {}, torch::randn({1, 8, 4})); }, "argument `initial_state`");
  expect_error_mentioning([&] { short_convolution(x.to(torch::kLong), w); }, "argument `x`");
  const auto cu = [](std::vector<int64_t> v) { return torch::tensor(v); };
  expect_error_mentioning([&] { short_convolution(x, w, {}, {}, cu({0, 6, 4, 10})); }, "argument `cu_seqlens`");
  expect_error_mentioning([&] { short_convolution(x, w, {}, {}, cu({1, 10})); }, "argument `cu_seqlens`");
  expect_error_mentioning([&] { short_convolution(x, w, {}, {}, cu({0, 9})); }, "argument `cu_seqlens`");
  expect_error_mentioning([&] { short_convolution(torch::randn({2, 10, 8}), w, {}, {}, cu({0, 10})); }, "argument `cu_seqlens`");
  expect_error_mentioning([&] { short_convolution(x, w, {}, {}, cu({0, 10}).to(torch::kInt)); }, "argument `cu_seqlens`");
}

class ShortConvCuda : public ::testing::TestWithParam<ConvCase> {
 protected:
  void SetUp() override {
    COMBA_SKIP_WITHOUT_CUDA();
  }
};

TEST_P(ShortConvCuda, FusedMatchesReferenceEveryDtype) {
  const auto& c = GetParam();
  const torch::Device cuda(torch::kCUDA, 0);
  struct Mode {
    const char* name;
    torch::Dtype dtype, weight_dtype;
  };
  for (const auto& m : {Mode{"fp32", torch::kFloat, torch::kFloat}, Mode{"bf16", torch::kBFloat16, torch::kBFloat16},
                        Mode{"fp16", torch::kHalf, torch::kHalf},
                        Mode{"bf16_fp32_weights", torch::kBFloat16, torch::kFloat}}) {
    SCOPED_TRACE(m.name);
    const auto in = make_conv_inputs(c, m.dtype, m.weight_dtype, cuda, 21);
    const auto ref = run_reference(c, in);
    const auto aten = run_conv(conv_fn(/*fused=*/false, c, in.cu), in);
    const auto fused = run_conv(conv_fn(/*fused=*/true, c, in.cu), in);
    expect_conv_close(fused, ref,
                      [&](const char* what, double twin) {
                        // weight grads are rounded to the weight's dtype
                        const bool weight_grad = std::string(what) == "dweight" || std::string(what) == "dbias";
                        return allowed_error(twin, weight_grad ? m.weight_dtype : m.dtype);
                      },
                      &aten);
  }
}

TEST_P(ShortConvCuda, MisalignedInputTakesTheScalarKernel) {
  const auto& c = GetParam();
  const auto in = make_conv_inputs(c, torch::kFloat, torch::kFloat, torch::Device(torch::kCUDA, 0), 22);
  const auto fused = conv_fn(/*fused=*/true, c, in.cu);
  // x copied (differentiably) into a contiguous tensor starting one element past an
  // aligned address, so no vector access of the kernels lines up.
  const ConvFn misaligned = [&](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                const torch::Tensor& h0) {
    const auto buffer = torch::empty({x.numel() + 1}, x.options());
    auto shifted = buffer.narrow(0, 1, x.numel()).view(x.sizes());
    shifted.copy_(x);
    return fused(shifted, w, b, h0);
  };
  expect_conv_close(run_conv(misaligned, in), run_reference(c, in), [](const char*, double) { return 2e-6; });
}

INSTANTIATE_TEST_SUITE_P(Cases, ShortConvCuda, ::testing::ValuesIn(kConvCases), conv_case_name);

TEST(ShortConvCudaRepro, WeightGradsAreBitwiseReproducible) {
  COMBA_SKIP_WITHOUT_CUDA();
  const ConvCase c{"big", 2, 2048, 1536, 4, true, true, false, {}};
  const auto in = make_conv_inputs(c, torch::kBFloat16, torch::kFloat, torch::Device(torch::kCUDA, 0), 23);
  const auto a = run_conv(conv_fn(/*fused=*/true, c, in.cu), in);
  const auto b = run_conv(conv_fn(/*fused=*/true, c, in.cu), in);
  EXPECT_TRUE(a.dw.equal(b.dw));
  EXPECT_TRUE(a.db.equal(b.db));
  EXPECT_TRUE(a.dx.equal(b.dx));
}

TEST(ShortConvCudaModule, ModuleOnCudaEqualsAtenPath) {
  COMBA_SKIP_WITHOUT_CUDA();
  torch::manual_seed(24);
  ShortConvolution conv(ShortConvolutionOptions(64, 4).bias(true));
  conv->to(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  const auto x = torch::randn({2, 50, 64}, conv->weight.options());
  const auto fused = conv(x);
  const auto aten = short_convolution_aten(x, conv->weight, conv->bias);
  EXPECT_LT(rel_error(fused.output, aten.output), 2e-2);
  EXPECT_TRUE(fused.final_state.equal(aten.final_state));
}

#ifdef COMBA_NN_KERNEL_EMULATION
// The CUDA grid's per-thread code run on the CPU (short_conv_emulation.h): the tiling and
// sequence-boundary logic checked where there is no GPU. Parameters are filled the way
// nn/src/launch/short_conv_cuda.cpp fills them.
namespace kernels = comba::nn::cuda;

ConvRun emulate_conv(const ConvCase& c, const ConvInputs& in, bool vectorized) {
  constexpr int W = kernels::ShortConvTraits::kMaxTaps;
  const bool varlen = !c.cu.empty();
  const auto x = in.x.contiguous();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  const auto weight = in.weight.reshape({c.channels, c.taps}).to(torch::kFloat).contiguous();
  const auto bias = c.bias ? in.bias.to(torch::kFloat).contiguous() : torch::Tensor();
  const auto h0 = c.state ? in.h0.to(x.scalar_type()).contiguous() : torch::Tensor();
  const int64_t num_seqs = varlen ? static_cast<int64_t>(c.cu.size()) - 1 : c.batch;
  ConvRun r;
  r.y = torch::empty_like(x);
  r.final_state = varlen ? (h0.defined() ? h0.clone() : torch::zeros({num_seqs, c.channels, c.taps - 1}, x.options()))
                         : torch::empty({num_seqs, c.channels, c.taps - 1}, x.options());
  kernels::ShortConvParams p;
  p.x = x.data_ptr();
  p.weight = weight.data_ptr<float>();
  p.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  p.initial_state = h0.defined() ? h0.data_ptr() : nullptr;
  p.y = r.y.data_ptr();
  p.final_state = r.final_state.data_ptr();
  p.cu_seqlens = varlen ? in.cu.data_ptr<int64_t>() : nullptr;
  p.tokens = c.batch * c.seq_len;
  p.seq_len = c.seq_len;
  p.num_seqs = static_cast<int>(num_seqs);
  p.channels = static_cast<int>(c.channels);
  p.taps = static_cast<int>(c.taps);
  p.silu = c.silu;
  p.dtype = comba::core::element_type_of(x.scalar_type());
  emulate_short_conv_fwd(p, vectorized);

  const auto dy = in.dy.contiguous();
  const auto d_final = c.state ? in.d_final.contiguous() : torch::Tensor();
  r.dx = torch::empty_like(x);
  const auto total = torch::empty({W + 1, c.channels}, f32);
  if (c.state) {
    r.dh0 = varlen ? d_final.to(torch::kFloat).clone() : torch::empty({num_seqs, c.channels, c.taps - 1}, f32);
    p.d_initial_state = r.dh0.data_ptr<float>();
  }
  p.dy = dy.data_ptr();
  p.d_final_state = d_final.defined() ? d_final.data_ptr() : nullptr;
  p.dx = r.dx.data_ptr();
  p.dw_total = total.data_ptr<float>();
  emulate_short_conv_bwd(p, vectorized);
  r.dw = total.slice(0, W - c.taps, W).t().reshape({c.channels, 1, c.taps});
  if (c.bias) r.db = total[W];
  return r;
}

class ShortConvEmulation : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ShortConvEmulation, KernelRunsMatchReference) {
  const auto& c = GetParam();
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (const bool vectorized : {false, true}) {
      if (vectorized && c.channels % kernels::ShortConvTraits::kVec != 0) continue;
      SCOPED_TRACE(std::string(dtype == torch::kFloat ? "fp32" : "bf16") + (vectorized ? " vectorized" : " scalar"));
      const auto in = make_conv_inputs(c, dtype, torch::kFloat, torch::kCPU, 51);
      const double tol = dtype == torch::kFloat ? 2e-6 : 1e-2;
      expect_conv_close(emulate_conv(c, in, vectorized), run_reference(c, in),
                        [tol](const char*, double) { return tol; });
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ShortConvEmulation, ::testing::ValuesIn(kConvCases), conv_case_name);

// Random packed layouts (lengths 0..70, so sequences start and end anywhere in a 32-token
// run, several per run, and some span runs), every kernel size, with states.
TEST(ShortConvEmulationRandom, RandomPackedLayoutsMatchReference) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<int64_t> cu = {0};
    const int num_seqs = 1 + static_cast<int>(rng() % 9);
    for (int n = 0; n < num_seqs; ++n) cu.push_back(cu.back() + static_cast<int64_t>(rng() % 71));
    if (cu.back() == 0) cu.back() = 1;
    const int64_t channels = trial % 3 == 0 ? 5 : 8;
    const int64_t taps = 1 + trial % 4;
    const ConvCase c{"random", 1, cu.back(), channels, taps, trial % 2 == 0, trial % 5 != 0, true, cu};
    const auto in = make_conv_inputs(c, torch::kFloat, torch::kFloat, torch::kCPU, 100 + trial);
    for (const bool vectorized : {false, true}) {
      if (vectorized && channels % kernels::ShortConvTraits::kVec != 0) continue;
      SCOPED_TRACE("trial " + std::to_string(trial) + (vectorized ? " vectorized" : " scalar"));
      expect_conv_close(emulate_conv(c, in, vectorized), run_reference(c, in), [](const char*, double) { return 2e-6; });
    }
  }
}
#endif  // COMBA_NN_KERNEL_EMULATION

// ---------------------------------------------------------------------------------------
// RMSNorm

struct NormInputs {
  torch::Tensor x, weight, gate, dy;
};

struct NormRun {
  torch::Tensor y, dx, dw, dgate;
};

using NormFn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;

NormRun run_norm(const NormFn& fn, const NormInputs& in, c10::optional<torch::Dtype> dtype = c10::nullopt) {
  const auto leaf = [&](const torch::Tensor& t) {
    if (!t.defined()) return t;
    return (dtype ? t.to(*dtype) : t).detach().clone().requires_grad_(true);
  };
  auto x = leaf(in.x), w = leaf(in.weight), g = leaf(in.gate);
  const auto y = fn(x, w, g);
  (y.to(torch::kDouble) * in.dy.to(torch::kDouble)).sum().backward();
  return {y.detach(), x.grad(), w.grad(), g.defined() ? g.grad() : torch::Tensor()};
}

constexpr double kNormEps = 1e-5;

NormFn norm_fn(bool fused) {
  return [fused](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& g) {
    return fused ? rms_norm(x, w, kNormEps, g) : rms_norm_aten(x, w, kNormEps, g);
  };
}

NormRun run_norm_reference(const NormInputs& in) {
  return run_norm([](const torch::Tensor& x, const torch::Tensor& w,
                     const torch::Tensor& g) { return reference_rms_norm(x, w, kNormEps, g); },
                  in, torch::kDouble);
}

enum class GateKind { kNone, kSameDtype, kFp32 };

NormInputs make_norm_inputs(at::IntArrayRef shape, torch::Dtype dtype, torch::Dtype weight_dtype, GateKind gate,
                            const torch::Device& device, uint64_t seed) {
  torch::manual_seed(seed);
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  NormInputs in;
  in.x = 3.0 * torch::randn(shape, o);
  in.weight = (1.0 + 0.3 * torch::randn({shape.back()}, o)).to(weight_dtype);
  if (gate != GateKind::kNone) in.gate = torch::randn(shape, o).to(gate == GateKind::kFp32 ? torch::kFloat : dtype);
  in.dy = torch::randn(shape, o);
  return in;
}

void expect_norm_close(const NormRun& run, const NormRun& ref, const std::function<double(const char*, double)>& tol,
                       const NormRun* twin = nullptr) {
  const auto check = [&](const char* what, const torch::Tensor& a, const torch::Tensor& r, const torch::Tensor* t) {
    ASSERT_EQ(a.defined(), r.defined()) << what;
    if (!a.defined()) return;
    const double twin_err = t != nullptr && t->defined() ? rel_error(*t, r) : 0.0;
    const double err = rel_error(a, r);
    EXPECT_LE(err, tol(what, twin_err)) << what << " (twin error " << twin_err << ")";
  };
  check("y", run.y, ref.y, twin ? &twin->y : nullptr);
  check("dx", run.dx, ref.dx, twin ? &twin->dx : nullptr);
  check("dweight", run.dw, ref.dw, twin ? &twin->dw : nullptr);
  check("dgate", run.dgate, ref.dgate, twin ? &twin->dgate : nullptr);
}

TEST(RMSNormCpu, AtenPathMatchesReferenceWithAndWithoutGate) {
  for (const auto gate : {GateKind::kNone, GateKind::kSameDtype}) {
    const auto in = make_norm_inputs({3, 5, 48}, torch::kFloat, torch::kFloat, gate, torch::kCPU, 31);
    expect_norm_close(run_norm(norm_fn(/*fused=*/true), in), run_norm_reference(in),
                      [](const char*, double) { return 2e-6; });
  }
}

TEST(RMSNormCpuChecks, BadArgumentsNameTheArgument) {
  const auto x = torch::randn({4, 8});
  expect_error_mentioning([&] { rms_norm(x, torch::ones({8, 1}), 1e-6); }, "argument `weight`");
  expect_error_mentioning([&] { rms_norm(x, torch::ones({6}), 1e-6); }, "argument `x`");
  expect_error_mentioning([&] { rms_norm(x, torch::ones({8}), 1e-6, torch::randn({4, 7})); }, "argument `gate`");
  expect_error_mentioning([&] { rms_norm(x.to(torch::kInt), torch::ones({8}), 1e-6); }, "argument `x`");
  expect_error_mentioning([&] { rms_norm(x, torch::ones({8}), 1e-6, torch::ones({4, 8}, torch::kLong)); }, "argument `gate`");
}

struct NormCase {
  const char* name;
  std::vector<int64_t> shape;
};

void PrintTo(const NormCase& c, std::ostream* os) { *os << c.name; }

const std::vector<NormCase> kNormCases = {
    {"rows1_dim8", {1, 8}},
    {"rows37_dim100_scalar", {37, 100}},
    {"B2_T50_H3_dim256_o_norm", {2, 50, 3, 256}},
    {"rows5000_dim1024_grid_stride", {5000, 1024}},
    {"rows9_dim8192_large_smem", {9, 8192}},
    {"rows64_dim36_fp32_vec_bf16_scalar", {64, 36}},
    // Register kernels: a partly used last chunk (bf16 3 of 4 chunks), two rows per warp
    // pass with an odd row count over the grid stride, and a row too long for them.
    {"rows300_dim768_partial_chunk", {300, 768}},
    {"rows16501_dim512_grid_stride_two_rows", {16501, 512}},
    {"rows70_dim2048_looping", {70, 2048}},
};

class RMSNormCuda : public ::testing::TestWithParam<NormCase> {
 protected:
  void SetUp() override {
    COMBA_SKIP_WITHOUT_CUDA();
  }
};

TEST_P(RMSNormCuda, FusedMatchesReferenceEveryDtypeAndGate) {
  const torch::Device cuda(torch::kCUDA, 0);
  struct Mode {
    const char* name;
    torch::Dtype dtype, weight_dtype;
    GateKind gate;
  };
  for (const auto& m : {Mode{"fp32", torch::kFloat, torch::kFloat, GateKind::kSameDtype},
                        Mode{"fp32_plain", torch::kFloat, torch::kFloat, GateKind::kNone},
                        Mode{"bf16", torch::kBFloat16, torch::kBFloat16, GateKind::kSameDtype},
                        Mode{"bf16_plain", torch::kBFloat16, torch::kBFloat16, GateKind::kNone},
                        Mode{"bf16_fp32_weight_and_gate", torch::kBFloat16, torch::kFloat, GateKind::kFp32},
                        Mode{"fp16", torch::kHalf, torch::kHalf, GateKind::kSameDtype}}) {
    SCOPED_TRACE(m.name);
    const auto in = make_norm_inputs(GetParam().shape, m.dtype, m.weight_dtype, m.gate, cuda, 41);
    const auto ref = run_norm_reference(in);
    const auto aten = run_norm(norm_fn(/*fused=*/false), in);
    const auto fused = run_norm(norm_fn(/*fused=*/true), in);
    const auto gate_dtype = in.gate.defined() ? in.gate.scalar_type() : m.dtype;
    expect_norm_close(fused, ref,
                      [&](const char* what, double twin) {
                        const std::string w = what;
                        const auto dt = w == "dweight" ? m.weight_dtype : w == "dgate" ? gate_dtype : m.dtype;
                        return allowed_error(twin, dt);
                      },
                      &aten);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RMSNormCuda, ::testing::ValuesIn(kNormCases),
                         [](const ::testing::TestParamInfo<NormCase>& info) { return info.param.name; });

TEST(RMSNormCudaRepro, WeightGradsAreBitwiseReproducible) {
  COMBA_SKIP_WITHOUT_CUDA();
  const auto in = make_norm_inputs({16384, 6, 256}, torch::kBFloat16, torch::kFloat, GateKind::kSameDtype,
                                   torch::Device(torch::kCUDA, 0), 42);
  const auto a = run_norm(norm_fn(/*fused=*/true), in);
  const auto b = run_norm(norm_fn(/*fused=*/true), in);
  EXPECT_TRUE(a.dw.equal(b.dw));
  EXPECT_TRUE(a.dx.equal(b.dx));
  EXPECT_TRUE(a.dgate.equal(b.dgate));
}

}  // namespace
