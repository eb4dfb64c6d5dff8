// torch.ops.comba: the operator for Python (torch.ops.load_library) and the dispatcher.
// The Autograd kernel runs the autograd Functions; the CPU / CUDA kernels serve calls
// below autograd (inference mode, no tensor needing grad); Meta gives shapes only.
#include <torch/library.h>

#include "comba/ops/comba.h"
#include "problem.h"

namespace comba::detail {
namespace {

using OpFn = std::tuple<at::Tensor, at::Tensor> (*)(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&,
                                                    const c10::optional<at::Tensor>&,
                                                    const at::Tensor&,
                                                    const c10::optional<at::Tensor>&,
                                                    const CombaOptions&);

template <OpFn Fn>
std::tuple<at::Tensor, at::Tensor> op(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, const c10::optional<at::Tensor>& p,
                                      const at::Tensor& g, const c10::optional<at::Tensor>& beta,
                                      c10::optional<double> scale,
                                      const c10::optional<at::Tensor>& initial_state,
                                      bool output_final_state, bool use_qk_l2norm_in_kernel,
                                      const c10::optional<at::Tensor>& cu_seqlens,
                                      bool use_reference_path, c10::optional<int64_t> split_length) {
  const auto options = CombaOptions()
                           .scale(scale)
                           .initial_state(initial_state.value_or(at::Tensor()))
                           .output_final_state(output_final_state)
                           .use_qk_l2norm_in_kernel(use_qk_l2norm_in_kernel)
                           .cu_seqlens(cu_seqlens.value_or(at::Tensor()))
                           .use_reference_path(use_reference_path)
                           .split_length(split_length);
  return Fn(q, k, v, p, g, beta, options);
}

std::tuple<at::Tensor, at::Tensor> meta(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const c10::optional<at::Tensor>& p,
                                        const at::Tensor& g,
                                        const c10::optional<at::Tensor>& beta,
                                        c10::optional<double> scale,
                                        const c10::optional<at::Tensor>& initial_state,
                                        bool output_final_state, bool use_qk_l2norm_in_kernel,
                                        const c10::optional<at::Tensor>& cu_seqlens,
                                        bool use_reference_path, c10::optional<int64_t> split_length) {
  (void)k, (void)p, (void)g, (void)beta, (void)scale, (void)initial_state,
      (void)use_qk_l2norm_in_kernel, (void)use_reference_path, (void)split_length;
  const auto n = cu_seqlens.has_value() ? cu_seqlens->size(0) - 1 : q.size(0);
  auto o = at::empty({q.size(0), q.size(1), v.size(2), v.size(3)}, q.options());
  auto state_dtype = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto final_state = output_final_state
                         ? at::empty({n, v.size(2), q.size(3), v.size(3)},
                                     q.options().dtype(state_dtype))
                         : at::Tensor();
  return {o, final_state};
}

constexpr const char* kArgs =
    "(Tensor q, Tensor k, Tensor v, Tensor? p, Tensor g, Tensor? beta, float? scale=None, "
    "Tensor? initial_state=None, bool output_final_state=False, "
    "bool use_qk_l2norm_in_kernel=False, Tensor? cu_seqlens=None, "
    "bool use_reference_path=False, int? split_length=None) -> (Tensor, Tensor)";

}  // namespace

TORCH_LIBRARY(comba, m) {
  m.def(torch::schema((std::string("chunk_comba") + kArgs).c_str()));
  m.def(torch::schema((std::string("fused_recurrent_comba") + kArgs).c_str()));
}

#define COMBA_REGISTER_KERNELS(KEY)                                   \
  TORCH_LIBRARY_IMPL(comba, KEY, m) {                                 \
    m.impl("chunk_comba", &op<&comba::chunk_comba>);                  \
    m.impl("fused_recurrent_comba", &op<&comba::fused_recurrent_comba>); \
  }
COMBA_REGISTER_KERNELS(Autograd)
COMBA_REGISTER_KERNELS(CPU)
COMBA_REGISTER_KERNELS(CUDA)
#undef COMBA_REGISTER_KERNELS

TORCH_LIBRARY_IMPL(comba, Meta, m) {
  m.impl("chunk_comba", &meta);
  m.impl("fused_recurrent_comba", &meta);
}

}  // namespace comba::detail
