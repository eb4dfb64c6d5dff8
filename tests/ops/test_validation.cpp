// Argument validation of chunk_comba and fused_recurrent_comba: every bad input must give
// a c10::Error naming the function, the argument, what was expected and what came. Each
// test breaks one thing in an otherwise valid call (B = 2, T = 5, H = 2, HV = 4, K = 8,
// V = 6, fp32) and lists the message fragments a user needs to fix it.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <functional>
#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "support/require.h"

namespace comba {
namespace {

constexpr int64_t B = 2, T = 5, H = 2, HV = 4, K = 8, V = 6;

// A valid call that each test breaks in one place.
struct Call {
  at::Tensor q = at::randn({B, T, H, K});
  at::Tensor k = at::randn({B, T, H, K});
  at::Tensor v = at::randn({B, T, HV, V});
  c10::optional<at::Tensor> p = at::randn({B, T, H, K});
  at::Tensor g = -at::rand({B, T, HV});
  c10::optional<at::Tensor> beta = at::rand({B, T, HV});
  CombaOptions options = CombaOptions().output_final_state(true);

  // Packed sequences: B = 1 and the given boundaries.
  Call& varlen(std::vector<int64_t> cu) {
    q = q[0].unsqueeze(0), k = k[0].unsqueeze(0), v = v[0].unsqueeze(0);
    p = (*p)[0].unsqueeze(0), g = g[0].unsqueeze(0), beta = (*beta)[0].unsqueeze(0);
    options.cu_seqlens(at::tensor(cu, at::kLong));
    return *this;
  }
};

class Validation : public ::testing::TestWithParam<bool /*chunk*/> {
 protected:
  std::string fn() const { return GetParam() ? "chunk_comba" : "fused_recurrent_comba"; }

  void run(const Call& c) const {
    if (GetParam()) {
      chunk_comba(c.q, c.k, c.v, c.p, c.g, c.beta, c.options);
    } else {
      fused_recurrent_comba(c.q, c.k, c.v, c.p, c.g, c.beta, c.options);
    }
  }

  // The call must throw, and the message contain "<fn>: " and every fragment.
  void expect_error(const Call& c, std::vector<std::string> fragments) const {
    fragments.insert(fragments.begin(), fn() + ": ");
    try {
      run(c);
    } catch (const c10::Error& e) {
      const std::string message = e.what_without_backtrace();
      for (const auto& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string::npos)
            << "message lacks \"" << fragment << "\":\n  " << message;
      }
      return;
    }
    ADD_FAILURE() << fn() << " accepted the bad input (expected: " << fragments.back() << ")";
  }
};

TEST_P(Validation, ValidCallPasses) { EXPECT_NO_THROW(run(Call())); }

// ---- rank and shape -------------------------------------------------------------------

TEST_P(Validation, QWrongRank) {
  Call c;
  c.q = at::randn({B, T, H * K});
  expect_error(c, {"`q`", "4-D [B, T, H, K]", "got 3-D", "[2, 5, 16]"});
}

TEST_P(Validation, KShapeUnlikeQ) {
  Call c;
  c.k = at::randn({B, T, H, K + 1});
  expect_error(c, {"`k`", "[B, T, H, K] like q = [2, 5, 2, 8]", "got [2, 5, 2, 9]"});
}

TEST_P(Validation, KHeadsUnlikeQ) {
  Call c;
  c.k = at::randn({B, T, H + 1, K});
  expect_error(c, {"`k`", "[2, 5, 2, 8]", "got [2, 5, 3, 8]"});
}

TEST_P(Validation, PShapeUnlikeQ) {
  Call c;
  c.p = at::randn({B, T + 1, H, K});
  expect_error(c, {"`p`", "[2, 5, 2, 8]", "got [2, 6, 2, 8]"});
}

TEST_P(Validation, VWrongRank) {
  Call c;
  c.v = at::randn({B, T, HV * V});
  expect_error(c, {"`v`", "4-D [B, T, HV, V]", "got 3-D"});
}

TEST_P(Validation, VBatchUnlikeQ) {
  Call c;
  c.v = at::randn({B + 1, T, HV, V});
  expect_error(c, {"`v`", "B = 2", "got [3, 5, 4, 6]"});
}

TEST_P(Validation, VLengthUnlikeQ) {
  Call c;
  c.v = at::randn({B, T - 1, HV, V});
  expect_error(c, {"`v`", "T = 5", "got [2, 4, 4, 6]"});
}

TEST_P(Validation, ValueHeadsNotAMultipleOfHeads) {
  Call c;
  c.v = at::randn({B, T, 3, V});
  c.g = -at::rand({B, T, 3});
  c.beta = at::rand({B, T, 3});
  expect_error(c, {"`v`", "HV = 3", "multiple of H = 2"});
}

TEST_P(Validation, GShapeWrong) {
  Call c;
  c.g = -at::rand({B, T, H});  // per key head instead of per value head
  expect_error(c, {"`g`", "[B, T, HV] = [2, 5, 4]", "got [2, 5, 2]"});
}

TEST_P(Validation, BetaShapeWrong) {
  Call c;
  c.beta = at::rand({B, T, HV, 1});
  expect_error(c, {"`beta`", "[B, T, HV]", "got 4-D"});
}

// ---- dtypes ---------------------------------------------------------------------------

TEST_P(Validation, QNotFloating) {
  Call c;
  c.q = at::ones({B, T, H, K}, at::kInt);
  expect_error(c, {"`q`", "floating dtype", "got Int"});
}

TEST_P(Validation, KDtypeUnlikeQ) {
  Call c;
  c.k = c.k.to(at::kDouble);
  expect_error(c, {"`k`", "dtype Double", "expected Float like q"});
}

TEST_P(Validation, VDtypeUnlikeQ) {
  Call c;
  c.v = c.v.to(at::kBFloat16);
  expect_error(c, {"`v`", "dtype BFloat16", "expected Float like q"});
}

TEST_P(Validation, PDtypeUnlikeQ) {
  Call c;
  c.p = c.p->to(at::kHalf);
  expect_error(c, {"`p`", "dtype Half", "expected Float like q"});
}

TEST_P(Validation, GDtypeNeitherQsNorFloat32) {
  Call c;
  c.g = c.g.to(at::kHalf);
  expect_error(c, {"`g`", "expected dtype Float", "got Half"});
}

// g and beta may have q's dtype or Float: when q is Float that is one dtype, named once.
TEST_P(Validation, GDtypeNamesEachAllowedDtypeOnce) {
  Call c;
  c.g = c.g.to(at::kHalf);
  expect_error(c, {"`g` expected dtype Float, got Half"});
  c.q = c.q.to(at::kBFloat16), c.k = c.k.to(at::kBFloat16), c.v = c.v.to(at::kBFloat16);
  c.p = c.p->to(at::kBFloat16);
  expect_error(c, {"`g` expected dtype BFloat16 or Float, got Half"});
}

TEST_P(Validation, BetaNotFloating) {
  Call c;
  c.beta = at::ones({B, T, HV}, at::kLong);
  expect_error(c, {"`beta`", "got Long"});
}

// Models compute g (and often beta) in fp32 beside bf16 activations: not "mixed dtypes".
TEST_P(Validation, Float32GatesBesideBFloat16Accepted) {
  Call c;
  c.q = c.q.to(at::kBFloat16), c.k = c.k.to(at::kBFloat16), c.v = c.v.to(at::kBFloat16);
  c.p = c.p->to(at::kBFloat16);
  EXPECT_NO_THROW(run(c));
}

// ---- devices --------------------------------------------------------------------------

// A meta tensor stands in for "another device" on a CPU-only machine: the checks run
// before any data is touched.
TEST_P(Validation, KOnAnotherDevice) {
  Call c;
  c.k = at::empty({B, T, H, K}, at::TensorOptions().device(at::kMeta));
  expect_error(c, {"`k`", "expected to be on cpu like `q`", "got meta"});
}

TEST_P(Validation, GOnAnotherDevice) {
  Call c;
  c.g = at::empty({B, T, HV}, at::TensorOptions().device(at::kMeta));
  expect_error(c, {"`g`", "expected to be on cpu", "got meta"});
}

TEST_P(Validation, InitialStateOnAnotherDevice) {
  Call c;
  c.options.initial_state(at::empty({B, HV, K, V}, at::TensorOptions().device(at::kMeta)));
  expect_error(c, {"`initial_state`", "expected to be on cpu", "got meta"});
}

TEST_P(Validation, CudaVOnCpuQ) {
  COMBA_SKIP_WITHOUT_CUDA();
  Call c;
  c.v = c.v.cuda();
  expect_error(c, {"`v`", "expected to be on cpu like `q`", "got cuda:0"});
}

// ---- cu_seqlens -----------------------------------------------------------------------

TEST_P(Validation, VarlenValidCallPasses) {
  Call c;
  c.varlen({0, 2, 2, 5});
  EXPECT_NO_THROW(run(c));
}

TEST_P(Validation, CuSeqlensNotInt64) {
  Call c;
  c.varlen({0, 2, 5});
  c.options.cu_seqlens(c.options.cu_seqlens().to(at::kInt));
  expect_error(c, {"`cu_seqlens`", "expected dtype Long", "got Int"});
}

TEST_P(Validation, CuSeqlensNotStartingAtZero) {
  Call c;
  c.varlen({1, 2, 5});
  expect_error(c, {"`cu_seqlens`", "must start at 0", "got 1"});
}

TEST_P(Validation, CuSeqlensDecreasing) {
  Call c;
  c.varlen({0, 4, 2, 5});
  expect_error(c, {"`cu_seqlens`", "non-decreasing", "cu_seqlens[1] = 4 > cu_seqlens[2] = 2"});
}

TEST_P(Validation, CuSeqlensNotEndingAtT) {
  Call c;
  c.varlen({0, 2, 4});
  expect_error(c, {"`cu_seqlens`", "must end at T = 5", "got 4"});
}

TEST_P(Validation, CuSeqlensWithBatchAboveOne) {
  Call c;
  c.options.cu_seqlens(at::tensor(std::vector<int64_t>{0, 2, 5}, at::kLong));
  expect_error(c, {"`cu_seqlens`", "B = 1", "got B = 2"});
}

TEST_P(Validation, CuSeqlensWrongRank) {
  Call c;
  c.varlen({0, 2, 5});
  c.options.cu_seqlens(c.options.cu_seqlens().unsqueeze(0));
  expect_error(c, {"`cu_seqlens`", "1-D [N + 1]", "got 2-D"});
}

TEST_P(Validation, CuSeqlensTooShort) {
  Call c;
  c.varlen({0, 5});
  c.options.cu_seqlens(at::zeros({1}, at::kLong));
  expect_error(c, {"`cu_seqlens`", "at least 2 entries", "got 1"});
}

// ---- initial_state and scale ----------------------------------------------------------

TEST_P(Validation, InitialStateWrongShape) {
  Call c;
  c.options.initial_state(at::zeros({B, HV, K, V - 1}));
  expect_error(c, {"`initial_state`", "[N, HV, K, V] = [2, 4, 8, 6]", "got [2, 4, 8, 5]"});
}

TEST_P(Validation, InitialStateOnePerSequenceWhenPacked) {
  Call c;
  c.varlen({0, 1, 3, 5});  // N = 3 sequences
  c.options.initial_state(at::zeros({1, HV, K, V}));
  expect_error(c, {"`initial_state`", "[3, 4, 8, 6]", "got [1, 4, 8, 6]"});
}

TEST_P(Validation, InitialStateNotFloat32) {
  Call c;
  c.options.initial_state(at::zeros({B, HV, K, V}, at::kDouble));
  expect_error(c, {"`initial_state`", "expected dtype Float", "got Double"});
}

TEST_P(Validation, ScaleNotFinite) {
  Call c;
  c.options.scale(std::numeric_limits<double>::quiet_NaN());
  expect_error(c, {"`scale`", "finite", "nan"});
}

INSTANTIATE_TEST_SUITE_P(Both, Validation, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "chunk" : "recurrent");
                         });

}  // namespace
}  // namespace comba
