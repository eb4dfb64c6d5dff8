// The gradient checker applied to chunk_comba / fused_recurrent_comba: a random fp64
// problem of the requested shape, every floating input checked. Inputs are scaled so the
// recurrence stays well conditioned (norm ~1 q, k, p without l2norm; beta in (0, 1);
// g = log(sigmoid(.)) < 0), which keeps central differences accurate.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <numeric>

#include "comba/ops/comba.h"
#include "comba/tools/gradcheck.h"

namespace comba::tools {

const char* function_name(CombaFunction fn) {
  return fn == CombaFunction::kChunk ? "chunk_comba" : "fused_recurrent_comba";
}

GradcheckReport gradcheck_comba(CombaFunction fn, const CombaGradcheckConfig& c) {
  const bool varlen = !c.segments.empty();
  const int64_t B = varlen ? 1 : c.batch;
  const int64_t T = varlen ? std::accumulate(c.segments.begin(), c.segments.end(), int64_t{0})
                           : c.seq_len;
  const int64_t N = varlen ? static_cast<int64_t>(c.segments.size()) : B;
  const int64_t H = c.heads, HV = c.value_heads, K = c.key_dim, V = c.value_dim;

  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + 17);
  auto randn = [&](at::IntArrayRef sizes) { return at::randn(sizes, gen, at::kDouble); };
  const double qk_scale = c.l2norm ? 1.0 : 1.0 / std::sqrt(static_cast<double>(K));

  at::Tensor cu_seqlens;
  if (varlen) {
    std::vector<int64_t> cu{0};
    for (const int64_t len : c.segments) cu.push_back(cu.back() + len);
    cu_seqlens = at::tensor(cu, at::kLong);
  }
  std::vector<NamedInput> inputs{
      {"q", randn({B, T, H, K}) * qk_scale},
      {"k", randn({B, T, H, K}) * qk_scale},
      {"v", randn({B, T, HV, V})},
      {"p", c.with_p ? randn({B, T, H, K}) * qk_scale : at::Tensor()},
      {"g", at::log_sigmoid(randn({B, T, HV}) + 1.5)},
      {"beta", c.with_beta ? at::sigmoid(randn({B, T, HV})) : at::Tensor()},
      {"initial_state", c.initial_state ? randn({N, HV, K, V}) * 0.5 : at::Tensor()}};

  auto call = [fn, c, cu_seqlens](const std::vector<at::Tensor>& x) -> std::vector<at::Tensor> {
    auto optional = [](const at::Tensor& t) {
      return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
    };
    auto options = CombaOptions()
                       .scale(c.scale)
                       .initial_state(x[6])
                       .output_final_state(c.final_state)
                       .use_qk_l2norm_in_kernel(c.l2norm)
                       .cu_seqlens(cu_seqlens);
    const auto [o, final_state] =
        fn == CombaFunction::kChunk
            ? chunk_comba(x[0], x[1], x[2], optional(x[3]), x[4], optional(x[5]), options)
            : fused_recurrent_comba(x[0], x[1], x[2], optional(x[3]), x[4], optional(x[5]),
                                    options);
    return {o, final_state};
  };
  return gradcheck(call, inputs, c.check);
}

}  // namespace comba::tools
