// chunk_comba's CUDA kernels at the sizes models train with, every output and gradient
// against the operator's fp32 ATen reference path (use_reference_path) on the same GPU,
// run on the very values the kernels saw (inputs and cotangents rounded to bf16 / fp16).
// Sizes: the SPEC section 4 shapes, a single 32k-token sequence, K = 256 / V = 512,
// 20 packed segments of random lengths (0 included), and two long documents among 40
// short ones (the scans' two launches); bf16 also with the forward keeping only its
// states (KeptWorkspace::kStates: the backward forms V' again). 16-bit inputs run the tensor-core
// chunk kernels (K > 128 in two key halves); fp32 inputs the fused recurrent kernels.
// GPU only: skips without CUDA.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "comba/ops/comba.h"
#include "support/comba_case.h"
#include "support/require.h"

namespace comba::test {
namespace {

struct LargeCase {
  std::string name;
  int64_t batch, seq_len, heads, value_heads, key_dim, value_dim;
  std::vector<int64_t> segments;  // packed lengths (then batch is 1), or empty
};

void PrintTo(const LargeCase& c, std::ostream* out) { *out << c.name; }

std::vector<at::Tensor> run(const LargeCase& c, const std::vector<at::Tensor>& inputs,
                            const at::Tensor& cu, const at::Tensor& d_o, const at::Tensor& d_s,
                            at::ScalarType dtype, bool reference, KeptWorkspace keep) {
  std::vector<at::Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto dt = i < 4 ? dtype : at::kFloat;  // q k v p in dtype; g, beta, h0 fp32
    leaves.push_back(inputs[i].to(dt).detach().requires_grad_(true));
  }
  auto options = CombaOptions().initial_state(leaves[6]).output_final_state(true)
                     .use_qk_l2norm_in_kernel(true).use_reference_path(reference)
                     .kept_workspace(keep);
  if (cu.defined()) options.cu_seqlens(cu);
  auto [o, s] = chunk_comba(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5],
                            options);
  const auto loss = (o.to(at::kFloat) * d_o).sum() + (s * d_s).sum();
  loss.backward();
  std::vector<at::Tensor> out = {o.detach().to(at::kFloat), s.detach()};
  for (const auto& leaf : leaves) out.push_back(leaf.grad().to(at::kFloat));
  return out;
}

class ChunkCudaLarge : public ::testing::TestWithParam<LargeCase> {};

void check(const LargeCase& c, at::ScalarType dtype, KeptWorkspace keep = KeptWorkspace::kAll) {
  torch::manual_seed(1234);
  const auto dev = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  int64_t n = c.batch, total = c.seq_len;
  at::Tensor cu;
  if (!c.segments.empty()) {
    std::vector<int64_t> offsets = {0};
    for (const auto len : c.segments) offsets.push_back(offsets.back() + len);
    total = offsets.back();
    n = static_cast<int64_t>(c.segments.size());
    cu = torch::tensor(offsets, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA);
  }
  const int64_t b = c.segments.empty() ? c.batch : 1;
  auto round = [&](const at::Tensor& x) { return x.to(dtype).to(at::kFloat); };
  const std::vector<at::Tensor> inputs = {
      round(torch::randn({b, total, c.heads, c.key_dim}, dev)),
      round(torch::randn({b, total, c.heads, c.key_dim}, dev)),
      round(torch::randn({b, total, c.value_heads, c.value_dim}, dev)),
      round(torch::randn({b, total, c.heads, c.key_dim}, dev)),
      torch::log_sigmoid(torch::randn({b, total, c.value_heads}, dev) + 2),
      torch::rand({b, total, c.value_heads}, dev),
      torch::randn({n, c.value_heads, c.key_dim, c.value_dim}, dev)};
  const auto d_o = round(torch::randn({b, total, c.value_heads, c.value_dim}, dev));
  const auto d_s = torch::randn({n, c.value_heads, c.key_dim, c.value_dim}, dev);

  const auto got = run(c, inputs, cu, d_o, d_s, dtype, /*reference=*/false, keep);
  const auto want = run(c, inputs, cu, d_o, d_s, at::kFloat, /*reference=*/true, KeptWorkspace::kAll);
  const std::string tag = keep == KeptWorkspace::kStates ? "+kept_states" : "";
  const char* names[] = {"o", "state", "dq", "dk", "dv", "dp", "dg", "dbeta", "dh0"};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(at::isfinite(got[i]).all().item<bool>()) << c.name << ": " << names[i];
    const double error = relative_error(got[i], want[i]);
    const double limit =
        dtype == at::kFloat ? tolerance_for(want[i], dtype) : tensor_core_tolerance(want[i], dtype);
    std::cout << "[comba-error] large/" << c.name << '/' << c10::toString(dtype) << tag << ' '
              << names[i] << ' ' << std::scientific << std::setprecision(2) << error << " tol "
              << limit << std::defaultfloat << '\n';
    EXPECT_LE(error, limit) << c.name << ": " << names[i];
  }
}

TEST_P(ChunkCudaLarge, BFloat16) {
  COMBA_SKIP_WITHOUT_CUDA();
  check(GetParam(), at::kBFloat16);
}

TEST_P(ChunkCudaLarge, BFloat16KeptStates) {
  COMBA_SKIP_WITHOUT_CUDA();
  check(GetParam(), at::kBFloat16, KeptWorkspace::kStates);
}

TEST_P(ChunkCudaLarge, Float16) {
  COMBA_SKIP_WITHOUT_CUDA();
  check(GetParam(), at::kHalf);
}

// fp32 inputs run the exact fused recurrent kernels (the chunk kernels are 16-bit only).
TEST_P(ChunkCudaLarge, Float32) {
  COMBA_SKIP_WITHOUT_CUDA();
  check(GetParam(), at::kFloat);
}

std::vector<LargeCase> cases() {
  std::vector<int64_t> lengths;
  torch::manual_seed(7);
  const auto draws = torch::randint(0, 600, {20}, at::TensorOptions().dtype(at::kLong));
  for (int i = 0; i < 20; ++i) lengths.push_back(draws[i].item<int64_t>());
  lengths[3] = 0;  // an empty segment
  // One long document among 40 short ones (empty, one token, chunk edges): the scans walk
  // the short ones and the long one in two launches of different widths.
  std::vector<int64_t> long_and_short = {8000, 0, 1, 64, 65};
  for (int i = 4; i < 40; ++i) long_and_short.push_back((i * 37) % 150);
  long_and_short.push_back(5000);  // a second long one, past the short ones
  return {
      {"B8_T2048_H16_K128_V128", 8, 2048, 16, 16, 128, 128, {}},
      {"B1_T4096_H2_K128_V256", 1, 4096, 2, 2, 128, 256, {}},
      {"B1_T1000_H1_K256_V512", 1, 1000, 1, 1, 256, 512, {}},
      {"B2_T256_H8_K256_V512", 2, 256, 8, 8, 256, 512, {}},  // 64-column scan slices
      {"B1_T32768_H2_K128_V128", 1, 32768, 2, 2, 128, 128, {}},
      {"varlen20_H4_GVA2_K64_V128", 1, 0, 2, 4, 64, 128, lengths},
      {"varlen20_H2_GVA2_K192_V64", 1, 0, 1, 2, 192, 64, lengths},
      {"varlen_long_and_short_H4_K128_V128", 1, 0, 4, 4, 128, 128, long_and_short},
  };
}

INSTANTIATE_TEST_SUITE_P(Large, ChunkCudaLarge, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<LargeCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace comba::test
