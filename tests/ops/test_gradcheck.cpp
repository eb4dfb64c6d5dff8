// The finite-difference gradient checker (comba/tools/gradcheck.h): first shown to find a
// wrong backward and to pass a right one, then run on both Comba functions in fp64 at
// small shapes covering GVA, l2norm, custom scale, varlen with empty segments, the
// defaults p = k and beta = 1, and a sequence crossing a chunk boundary.
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cmath>

#include "comba/ops/comba.h"
#include "comba/tools/gradcheck.h"

namespace comba::tools {
namespace {

// A correct backward checks to ~1e-9; anything above this is a wrong gradient.
constexpr double kThreshold = 1e-6;

// x^2 with a backward that returns 3x instead of 2x.
struct WrongSquare : public torch::autograd::Function<WrongSquare> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return x * x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    return {3 * ctx->get_saved_variables()[0] * grad[0]};
  }
};

TEST(Gradcheck, FindsAWrongBackward) {
  const auto x = at::randn({3, 4}, at::kDouble);
  const auto report = gradcheck(
      [](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{WrongSquare::apply(in[0])}; },
      {{"x", x}});
  ASSERT_EQ(report.inputs.size(), 1u);
  // analytic 3x against numeric 2x: the worst element is off by half its gradient scale.
  EXPECT_GT(report.inputs[0].max_rel_error, 0.1);
}

TEST(Gradcheck, PassesAutogradOfSeveralInputsAndOutputs) {
  const auto x = at::randn({5}, at::kDouble), y = at::randn({2, 5}, at::kDouble);
  const auto report = gradcheck(
      [](const std::vector<at::Tensor>& in) {
        return std::vector<at::Tensor>{at::sin(in[0]) * in[2], at::exp(in[2]).sum(1), at::Tensor()};
      },
      {{"x", x}, {"unused", at::Tensor()}, {"y", y}});
  ASSERT_EQ(report.inputs.size(), 2u);  // the undefined input is skipped
  for (const auto& input : report.inputs) {
    EXPECT_EQ(input.checked, input.numel) << input.name;
    EXPECT_LE(input.max_rel_error, kThreshold) << input.name;
  }
}

TEST(Gradcheck, SamplesAtMostTheRequestedElements) {
  GradcheckOptions options;
  options.max_samples_per_input = 7;
  const auto report = gradcheck(
      [](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{in[0].pow(3)}; },
      {{"x", at::randn({50}, at::kDouble)}}, options);
  EXPECT_EQ(report.inputs[0].checked, 7);
  EXPECT_LE(report.inputs[0].max_rel_error, kThreshold);
}

TEST(Gradcheck, RejectsNonFloat64Inputs) {
  try {
    gradcheck([](const std::vector<at::Tensor>& in) { return in; }, {{"x", at::randn({2})}});
    FAIL() << "expected an error for a float32 input";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("`x` expected dtype float64"),
              std::string::npos)
        << e.what_without_backtrace();
  }
}

// sqrt at negative points: outputs, numeric and analytic gradients are NaN. The input and
// the report's worst error must say NaN (std::max(0, NaN) is 0: it once said 0, pass).
TEST(Gradcheck, NaNGradientsAreTheWorstError) {
  const auto report = gradcheck(
      [](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{at::sqrt(in[0])}; },
      {{"negative", -1 - at::rand({4}, at::kDouble)}});
  ASSERT_EQ(report.inputs.size(), 1u);
  EXPECT_TRUE(std::isnan(report.inputs[0].max_rel_error));
  EXPECT_TRUE(std::isnan(report.worst_rel_error()));
  const std::string json = to_json(report.inputs[0], "", kThreshold);
  EXPECT_NE(json.find("\"max_rel_error\":null"), std::string::npos) << json;
  EXPECT_NE(json.find("\"pass\":false"), std::string::npos) << json;

  // Beside a passing input, before or after it, NaN stays the worst.
  InputReport fine;
  fine.max_rel_error = 1e-9;
  for (const auto& inputs : {std::vector<InputReport>{fine, report.inputs[0]},
                             std::vector<InputReport>{report.inputs[0], fine}}) {
    GradcheckReport both;
    both.inputs = inputs;
    EXPECT_TRUE(std::isnan(both.worst_rel_error()));
  }
}

TEST(Gradcheck, RejectsAStepThatIsNotPositive) {
  for (const double step : {0.0, -1e-6, std::nan("")}) {
    GradcheckOptions options;
    options.step = step;
    try {
      gradcheck([](const std::vector<at::Tensor>& in) { return in; }, {{"x", at::randn({2}, at::kDouble)}},
                options);
      FAIL() << "expected an error for step " << step;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find("option `step` expected a finite number > 0"),
                std::string::npos)
          << e.what_without_backtrace();
    }
  }
}

struct ComboCase {
  const char* name;
  CombaGradcheckConfig config;
};

void PrintTo(const ComboCase& combo, std::ostream* out) { *out << combo.name; }
void PrintTo(CombaFunction fn, std::ostream* out) { *out << function_name(fn); }

std::vector<ComboCase> comba_cases() {
  std::vector<ComboCase> cases;
  {
    CombaGradcheckConfig c;  // dense, two sequences, GVA, l2norm, custom scale, states
    c.batch = 2, c.seq_len = 5, c.heads = 1, c.value_heads = 2, c.key_dim = 4, c.value_dim = 3;
    c.l2norm = true;
    c.scale = 0.7;
    cases.push_back({"B2_T5_K4_V3_H1_GVA2_l2norm_scale", c});
  }
  {
    CombaGradcheckConfig c;  // varlen with empty and one-token segments
    c.segments = {0, 1, 3, 0, 2};
    c.heads = 2, c.value_heads = 4, c.key_dim = 3, c.value_dim = 2;
    c.seed = 1;
    cases.push_back({"varlen_0_1_3_0_2_K3_V2_H2_GVA2", c});
  }
  {
    CombaGradcheckConfig c;  // the operator's defaults p = k, beta = 1; no states
    c.seq_len = 6, c.heads = 1, c.value_heads = 1, c.key_dim = 3, c.value_dim = 3;
    c.with_p = c.with_beta = false;
    c.initial_state = c.final_state = false;
    c.l2norm = true;
    c.seed = 2;
    cases.push_back({"T6_K3_V3_H1_no_p_no_beta_l2norm", c});
  }
  {
    CombaGradcheckConfig c;  // crosses the chunk boundary: sample elements of each input
    c.seq_len = kChunkSize + 2, c.heads = 1, c.value_heads = 2, c.key_dim = 4, c.value_dim = 4;
    c.l2norm = true;
    c.check.max_samples_per_input = 40;
    c.seed = 3;
    cases.push_back({"T66_K4_V4_H1_GVA2_l2norm_sampled", c});
  }
  return cases;
}

class CombaGradcheck
    : public ::testing::TestWithParam<std::tuple<CombaFunction, ComboCase>> {};

TEST_P(CombaGradcheck, EveryInputWithinThreshold) {
  const auto& [fn, combo] = GetParam();
  const GradcheckReport report = gradcheck_comba(fn, combo.config);
  // q, k, v, g and whichever of p, beta, initial_state are given.
  const size_t expected_inputs =
      4 + combo.config.with_p + combo.config.with_beta + combo.config.initial_state;
  EXPECT_EQ(report.inputs.size(), expected_inputs);
  for (const auto& input : report.inputs) {
    std::cout << to_json(input, std::string("\"function\":\"") + function_name(fn) + '"',
                         kThreshold)
              << '\n';
    EXPECT_GT(input.checked, 0) << input.name;
    EXPECT_GT(input.grad_scale, 0.0) << input.name << ": an all-zero gradient checks nothing";
    EXPECT_LE(input.max_rel_error, kThreshold) << function_name(fn) << " d" << input.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Small, CombaGradcheck,
    ::testing::Combine(::testing::Values(CombaFunction::kChunk, CombaFunction::kFusedRecurrent),
                       ::testing::ValuesIn(comba_cases())),
    [](const ::testing::TestParamInfo<std::tuple<CombaFunction, ComboCase>>& info) {
      return std::string(std::get<0>(info.param) == CombaFunction::kChunk ? "chunk_"
                                                                         : "recurrent_") +
             std::get<1>(info.param).name;
    });

}  // namespace
}  // namespace comba::tools
