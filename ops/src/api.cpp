// Public functions: check every argument once, then hand over to the autograd Function.
#include "comba/ops/comba.h"
#include "functions.h"
#include "sequence_split.h"

namespace comba {

namespace {

template <typename Function>
std::tuple<at::Tensor, at::Tensor> run(const char* fn, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const c10::optional<at::Tensor>& p,
                                       const at::Tensor& g,
                                       const c10::optional<at::Tensor>& beta,
                                       const CombaOptions& options) {
  const auto p_or_none = p.value_or(at::Tensor());
  const auto beta_or_none = beta.value_or(at::Tensor());
  const auto pb = detail::validate_comba_inputs(fn, q, k, v, p_or_none, g, beta_or_none, options);
  const auto gate = Function::FormType::gate(g);
  const bool needs_grad =
      at::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad() || g.requires_grad() ||
       (p_or_none.defined() && p_or_none.requires_grad()) ||
       (beta_or_none.defined() && beta_or_none.requires_grad()) ||
       (options.initial_state().defined() && options.initial_state().requires_grad()));
  if (!needs_grad) {  // inference / decode: no autograd node, no saved tensors
    auto out = Function::FormType::fwd(pb, {q, k, v, p_or_none, gate, beta_or_none,
                                        options.initial_state(), options.cu_seqlens()},
                                       KeptWorkspace::kNone);
    return {out.o, options.output_final_state() ? out.final_state : at::Tensor()};
  }
  auto optional = [](const at::Tensor& t) {
    return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
  };
  auto out = Function::apply(q, k, v, optional(p_or_none), gate, optional(beta_or_none),
                             optional(options.initial_state()), optional(options.cu_seqlens()),
                             options);
  return {out[0], options.output_final_state() ? out[1] : at::Tensor()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_comba(const at::Tensor& q, const at::Tensor& k,
                                               const at::Tensor& v,
                                               const c10::optional<at::Tensor>& p,
                                               const at::Tensor& g,
                                               const c10::optional<at::Tensor>& beta,
                                               const CombaOptions& options) {
  if (options.split_length().value_or(0) > 0) {
    const auto p_or_none = p.value_or(at::Tensor()), beta_or_none = beta.value_or(at::Tensor());
    const auto pb = detail::validate_comba_inputs("chunk_comba", q, k, v, p_or_none, g, beta_or_none, options);
    if (const auto segments = detail::plan_sequence_split(pb, options)) {
      return detail::chunk_comba_split(pb, *segments, q, k, v, p_or_none, g, beta_or_none, options);
    }
  }
  return run<detail::ChunkCombaFunction>("chunk_comba", q, k, v, p, g, beta, options);
}

std::tuple<at::Tensor, at::Tensor> fused_recurrent_comba(const at::Tensor& q,
                                                         const at::Tensor& k,
                                                         const at::Tensor& v,
                                                         const c10::optional<at::Tensor>& p,
                                                         const at::Tensor& g,
                                                         const c10::optional<at::Tensor>& beta,
                                                         const CombaOptions& options) {
  return run<detail::FusedRecurrentCombaFunction>("fused_recurrent_comba", q, k, v, p, g, beta,
                                                  options);
}

}  // namespace comba
