// Checks of the test oracle itself, before it judges the operator: a one-step case worked
// out by hand (including the order "correct with S_{t-1}, then decay"), and its reverse
// pass against central finite differences of its own forward for every input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/oracle.h"

namespace comba::test {
namespace {

// One token, K = 2, V = 1, one head, initial state given. By hand:
//   e = v - S0^T p,  S1 = exp(g) S0 + beta k e,  o = S1^T (scale q).
TEST(Oracle, OneStepByHand) {
  OracleProblem pb;
  pb.key_dim = 2;
  pb.value_dim = 1;
  pb.scale = 0.5;
  OracleInputs in;
  in.q = {1.0, 2.0};
  in.k = {0.5, -1.0};
  in.p = {2.0, 1.0};
  in.v = {3.0};
  in.g = {std::log(0.25)};
  in.beta = {0.8};
  in.initial_state = {1.0, -2.0};  // S0 = [1; -2] (K x V = 2 x 1)

  const double e = 3.0 - (1.0 * 2.0 + -2.0 * 1.0);          // 3
  const double s1[2] = {0.25 * 1.0 + 0.8 * 0.5 * e,          // 1.45
                        0.25 * -2.0 + 0.8 * -1.0 * e};       // -2.9
  const double o = 0.5 * (s1[0] * 1.0 + s1[1] * 2.0);       // -2.175

  const OracleOutputs out = oracle_forward(pb, in);
  EXPECT_NEAR(out.o[0], o, 1e-15);
  EXPECT_NEAR(out.final_state[0], s1[0], 1e-15);
  EXPECT_NEAR(out.final_state[1], s1[1], 1e-15);
}

// g = -inf (a hard reset): exp(g) = 0 drops S0 from S1, but the correction still reads it:
//   e = v - S0^T p = 3,  S1 = beta k e = [1.2; -2.4],  o = S1^T (scale q) = -1.8.
// Every gradient is finite and g's is 0; all equal those at g = -800, where exp(g)
// underflows to 0 without any -inf arithmetic.
TEST(Oracle, OneStepHardResetByHand) {
  OracleProblem pb;
  pb.key_dim = 2;
  pb.value_dim = 1;
  pb.scale = 0.5;
  const double minus_inf = -std::numeric_limits<double>::infinity();
  OracleInputs in{{1.0, 2.0}, {0.5, -1.0}, {3.0}, {2.0, 1.0}, {minus_inf}, {0.8}, {1.0, -2.0}};
  const OracleOutputs out = oracle_forward(pb, in);
  EXPECT_NEAR(out.o[0], -1.8, 1e-15);
  EXPECT_NEAR(out.final_state[0], 1.2, 1e-15);
  EXPECT_NEAR(out.final_state[1], -2.4, 1e-15);

  const std::vector<double> d_o{0.7}, d_final{-0.3, 0.9};
  const OracleGrads grads = oracle_backward(pb, in, d_o, d_final);
  in.g = {-800.0};
  const OracleGrads underflow = oracle_backward(pb, in, d_o, d_final);
  EXPECT_EQ(grads.g[0], 0.0);
  const std::pair<const std::vector<double>*, const std::vector<double>*> pairs[] = {
      {&grads.q, &underflow.q},       {&grads.k, &underflow.k},
      {&grads.v, &underflow.v},       {&grads.p, &underflow.p},
      {&grads.g, &underflow.g},       {&grads.beta, &underflow.beta},
      {&grads.initial_state, &underflow.initial_state}};
  for (const auto& [got, want] : pairs) {
    ASSERT_EQ(got->size(), want->size());
    for (size_t i = 0; i < got->size(); ++i) {
      EXPECT_TRUE(std::isfinite((*got)[i]));
      EXPECT_EQ((*got)[i], (*want)[i]);  // the same arithmetic on the same values
    }
  }
}

// With l2norm every q, k, p is scaled to (almost) unit norm before use.
TEST(Oracle, L2NormScalesInputsAway) {
  OracleProblem pb;
  pb.key_dim = 3;
  pb.value_dim = 2;
  pb.l2norm = true;
  OracleInputs in{{1.0, 2.0, 2.0}, {0.0, 3.0, 4.0}, {1.0, -1.0}, {2.0, 0.0, 0.0}, {-0.1}, {0.7}, {}};
  const OracleOutputs small = oracle_forward(pb, in);
  for (auto* x : {&in.q, &in.k, &in.p}) {
    for (double& value : *x) value *= 1000.0;
  }
  const OracleOutputs big = oracle_forward(pb, in);
  // S1 = 0.7 k_hat v^T, o = S1^T q_hat: k_hat . q_hat = (0*1 + 3*2 + 4*2) / (5 * 3) = 14/15.
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(small.o[i], 0.7 * (14.0 / 15.0) * in.v[i], 1e-6);
    EXPECT_NEAR(big.o[i], small.o[i], 1e-6);
  }
}

// Loss sum(o * d_o) + sum(S_N * d_final) and its central differences in every input.
void check_oracle_gradients(const OracleProblem& pb, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  auto random = [&](int64_t n, double scale = 1.0) {
    std::vector<double> x(n);
    for (double& value : x) value = scale * normal(rng);
    return x;
  };
  OracleInputs in;
  in.q = random(pb.qk_numel(), 0.5);
  in.k = random(pb.qk_numel(), 0.5);
  in.p = random(pb.qk_numel(), 0.5);
  in.v = random(pb.v_numel());
  in.g = random(pb.gate_numel(), 0.3);
  for (double& value : in.g) value = -std::abs(value);
  in.beta = random(pb.gate_numel(), 0.3);
  for (double& value : in.beta) value = 0.5 + value;
  in.initial_state = random(pb.state_numel(), 0.5);
  const std::vector<double> d_o = random(pb.v_numel());
  const std::vector<double> d_final = random(pb.state_numel());

  auto loss = [&](const OracleInputs& x) {
    const OracleOutputs out = oracle_forward(pb, x);
    double sum = 0.0;
    for (size_t i = 0; i < out.o.size(); ++i) sum += out.o[i] * d_o[i];
    for (size_t i = 0; i < out.final_state.size(); ++i) sum += out.final_state[i] * d_final[i];
    return sum;
  };
  const OracleGrads grads = oracle_backward(pb, in, d_o, d_final);

  struct Named {
    const char* name;
    std::vector<double> OracleInputs::*input;
    const std::vector<double>* grad;
  };
  const Named all[] = {{"q", &OracleInputs::q, &grads.q},
                       {"k", &OracleInputs::k, &grads.k},
                       {"v", &OracleInputs::v, &grads.v},
                       {"p", &OracleInputs::p, &grads.p},
                       {"g", &OracleInputs::g, &grads.g},
                       {"beta", &OracleInputs::beta, &grads.beta},
                       {"initial_state", &OracleInputs::initial_state, &grads.initial_state}};
  constexpr double kStep = 1e-6;
  for (const Named& x : all) {
    double worst_diff = 0.0, largest = 0.0;
    for (size_t i = 0; i < (in.*x.input).size(); ++i) {
      OracleInputs plus = in, minus = in;
      (plus.*x.input)[i] += kStep;
      (minus.*x.input)[i] -= kStep;
      const double numeric = (loss(plus) - loss(minus)) / (2 * kStep);
      worst_diff = std::max(worst_diff, std::abs(numeric - (*x.grad)[i]));
      largest = std::max(largest, std::abs(numeric));
    }
    ASSERT_GT(largest, 0.0) << x.name << " has an all-zero gradient: nothing was checked";
    // fp64 central differences with h = 1e-6 are good to ~1e-9 relative here.
    EXPECT_LE(worst_diff / largest, 1e-7) << "oracle gradient of " << x.name;
  }
}

TEST(Oracle, GradientsMatchFiniteDifferencesDenseL2NormGva) {
  OracleProblem pb;
  pb.batch = 2;
  pb.seq_len = 4;
  pb.heads = 1;
  pb.value_heads = 2;
  pb.key_dim = 3;
  pb.value_dim = 2;
  pb.scale = 0.7;
  pb.l2norm = true;
  check_oracle_gradients(pb, 1);
}

TEST(Oracle, GradientsMatchFiniteDifferencesVarlen) {
  OracleProblem pb;
  pb.seq_len = 6;
  pb.heads = 2;
  pb.value_heads = 4;
  pb.key_dim = 2;
  pb.value_dim = 3;
  pb.scale = 1.3;
  pb.cu_seqlens = {0, 0, 3, 4, 6};  // a zero-length and a one-token segment
  check_oracle_gradients(pb, 2);
}

}  // namespace
}  // namespace comba::test
