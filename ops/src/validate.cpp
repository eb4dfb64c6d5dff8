// Boundary checks of the operator. Non-contiguous tensors are accepted (the operator
// makes its own contiguous copies), so no check here is about strides.
#include <array>
#include <cmath>

#include "comba/core/checks.h"
#include "problem.h"

namespace comba::detail {

namespace {

void validate_cu_seqlens(const core::ArgChecker& check, const at::Tensor& cu, int64_t batch,
                         int64_t seq_len, const at::Device& device) {
  check.rank(cu, "cu_seqlens", 1, "[N + 1]");
  check.dtype_in(cu, "cu_seqlens", {at::kLong});
  check.require(cu.size(0) >= 2, "argument `cu_seqlens` expected at least 2 entries [N + 1], got ",
                cu.size(0));
  check.require(batch == 1, "argument `cu_seqlens` requires batch size B = 1 (packed sequences), got B = ",
                batch);
  check.require(cu.device() == device || cu.device().is_cpu(),
                "argument `cu_seqlens` expected to be on ", device, " or the CPU, got ", cu.device());
  const auto host = cu.to(at::kCPU).contiguous();
  const auto* b = host.data_ptr<int64_t>();
  const int64_t n = host.numel();
  check.require(b[0] == 0, "argument `cu_seqlens` must start at 0, got ", b[0]);
  for (int64_t i = 1; i < n; ++i) {
    check.require(b[i] >= b[i - 1], "argument `cu_seqlens` must be non-decreasing, got cu_seqlens[",
                  i - 1, "] = ", b[i - 1], " > cu_seqlens[", i, "] = ", b[i]);
  }
  check.require(b[n - 1] == seq_len, "argument `cu_seqlens` must end at T = ", seq_len, ", got ",
                b[n - 1]);
}

}  // namespace

CombaProblem describe_comba_problem(const at::Tensor& q, const at::Tensor& v,
                                    const at::Tensor& cu_seqlens, const CombaOptions& options) {
  CombaProblem pb;
  pb.batch = q.size(0);
  pb.seq_len = q.size(1);
  pb.heads = q.size(2);
  pb.key_dim = q.size(3);
  pb.value_heads = v.size(2);
  pb.value_dim = v.size(3);
  pb.dtype = q.scalar_type();
  pb.state_dtype = pb.dtype == at::kDouble ? at::kDouble : at::kFloat;
  pb.varlen = cu_seqlens.defined();
  pb.num_seqs = pb.varlen ? cu_seqlens.size(0) - 1 : pb.batch;
  pb.scale = options.scale().value_or(1.0 / std::sqrt(static_cast<double>(pb.key_dim)));
  pb.use_l2norm = options.use_qk_l2norm_in_kernel();
  pb.output_final_state = options.output_final_state();
  pb.reference_path = options.use_reference_path();
  return pb;
}

CombaProblem validate_comba_inputs(const char* fn, const at::Tensor& q,
                                   const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& p, const at::Tensor& g,
                                   const at::Tensor& beta, const CombaOptions& options) {
  const core::ArgChecker check(fn);
  check.rank(q, "q", 4, "[B, T, H, K]").floating(q, "q");
  check.shape(k, "k", q.sizes(), "[B, T, H, K] like q").floating(k, "k");
  if (p.defined()) check.shape(p, "p", q.sizes(), "[B, T, H, K] like q").floating(p, "p");
  check.rank(v, "v", 4, "[B, T, HV, V]").floating(v, "v");

  CombaProblem pb = describe_comba_problem(q, v, at::Tensor(), options);

  check.require(v.size(0) == pb.batch && v.size(1) == pb.seq_len,
                "argument `v` expected shape [B, T, HV, V] with B = ", pb.batch, ", T = ", pb.seq_len,
                " from q, got ", v.sizes());
  check.require(pb.heads > 0 && pb.key_dim > 0 && pb.value_heads > 0 && pb.value_dim > 0,
                "head counts and head dims must be positive, got q ", q.sizes(),
                " and v ", v.sizes());
  check.require(pb.value_heads % pb.heads == 0, "argument `v` has HV = ", pb.value_heads,
                " value heads, expected a multiple of H = ", pb.heads, " (q/k heads)");

  const char* same_dtype = "all of q, k, v, p must share one dtype";
  check.require(k.scalar_type() == pb.dtype, "argument `k` has dtype ", k.scalar_type(),
                ", expected ", pb.dtype, " like q (", same_dtype, ")");
  check.require(v.scalar_type() == pb.dtype, "argument `v` has dtype ", v.scalar_type(),
                ", expected ", pb.dtype, " like q (", same_dtype, ")");
  if (p.defined()) {
    check.require(p.scalar_type() == pb.dtype, "argument `p` has dtype ", p.scalar_type(),
                  ", expected ", pb.dtype, " like q (", same_dtype, ")");
  }

  const std::array<int64_t, 3> gate_shape{pb.batch, pb.seq_len, pb.value_heads};
  check.shape(g, "g", gate_shape, "[B, T, HV]");
  check.dtype_in(g, "g", {pb.dtype, at::kFloat});
  if (beta.defined()) {
    check.shape(beta, "beta", gate_shape, "[B, T, HV]");
    check.dtype_in(beta, "beta", {pb.dtype, at::kFloat});
  }

  const auto device = q.device();
  check.device(k, "k", device, "q").device(v, "v", device, "q").device(g, "g", device, "q");
  if (p.defined()) check.device(p, "p", device, "q");
  if (beta.defined()) check.device(beta, "beta", device, "q");

  if (options.cu_seqlens().defined()) {
    validate_cu_seqlens(check, options.cu_seqlens(), pb.batch, pb.seq_len, device);
    pb = describe_comba_problem(q, v, options.cu_seqlens(), options);
  }

  const auto& h0 = options.initial_state();
  if (h0.defined()) {
    check.shape(h0, "initial_state", {pb.num_seqs, pb.value_heads, pb.key_dim, pb.value_dim},
                "[N, HV, K, V]");
    check.dtype_in(h0, "initial_state", {pb.state_dtype});
    check.device(h0, "initial_state", device, "q");
  }

  check.require(std::isfinite(pb.scale), "argument `scale` must be finite, got ", pb.scale);
  if (const auto split = options.split_length()) {
    check.require(*split >= 0 && *split % kChunkSize == 0, "argument `split_length` expected 0 or a positive multiple of ",
                  kChunkSize, " (the chunk length), got ", *split);
  }
  return pb;
}

}  // namespace comba::detail
