// Public functions: check every argument once, then hand over to the autograd Function.
#include "comba/ops/comba.h"
#include "functions.h"
#include "sequence_split.h"

namespace comba {

namespace {

// The operator on validated inputs (`pb` from validate_comba_inputs); p, beta may be undefined.
template <typename Function>
std::tuple<at::Tensor, at::Tensor> run(const detail::CombaProblem& pb, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& p, const at::Tensor& g,
                                       const at::Tensor& beta, const CombaOptions& options) {
  const auto gate = Function::FormType::gate(g);
  const bool needs_grad =
      at::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad() || g.requires_grad() ||
       (p.defined() && p.requires_grad()) || (beta.defined() && beta.requires_grad()) ||
       (options.initial_state().defined() && options.initial_state().requires_grad()));
  if (!needs_grad) {  // inference / decode: no autograd node, no saved tensors
    auto out = Function::FormType::fwd(pb, {q, k, v, p, gate, beta, options.initial_state(), options.cu_seqlens()},
                                       KeptWorkspace::kNone);
    return {out.o, options.output_final_state() ? out.final_state : at::Tensor()};
  }
  auto optional = [](const at::Tensor& t) {
    return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
  };
  auto out = Function::apply(q, k, v, optional(p), gate, optional(beta), optional(options.initial_state()),
                             optional(options.cu_seqlens()), options);
  return {out[0], options.output_final_state() ? out[1] : at::Tensor()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_comba(const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& v,
                                               const c10::optional<at::Tensor>& p,
                                               const at::Tensor& g,
                                               const c10::optional<at::Tensor>& beta,
                                               const CombaOptions& options) {
  const auto p_or_none = p.value_or(at::Tensor()), beta_or_none = beta.value_or(at::Tensor());
  const auto pb = detail::validate_comba_inputs("chunk_comba", q, k, v, p_or_none, g, beta_or_none, options);
  if (const auto segments = detail::plan_sequence_split(pb, options)) {
    return detail::chunk_comba_split(pb, *segments, q, k, v, p_or_none, g, beta_or_none, options);
  }
  return run<detail::ChunkCombaFunction>(pb, q, k, v, p_or_none, g, beta_or_none, options);
}

std::tuple<at::Tensor, at::Tensor> fused_recurrent_comba(const at::Tensor& q,
                                                         const at::Tensor& k,
                                                         const at::Tensor& v,
                                                         const c10::optional<at::Tensor>& p,
                                                         const at::Tensor& g,
                                                         const c10::optional<at::Tensor>& beta,
                                                         const CombaOptions& options) {
  const auto p_or_none = p.value_or(at::Tensor()), beta_or_none = beta.value_or(at::Tensor());
  const auto pb =
      detail::validate_comba_inputs("fused_recurrent_comba", q, k, v, p_or_none, g, beta_or_none, options);
  return run<detail::FusedRecurrentCombaFunction>(pb, q, k, v, p_or_none, g, beta_or_none, options);
}

}  // namespace comba
