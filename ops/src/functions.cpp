#include "functions.h"

#include <algorithm>

namespace comba::detail {

namespace {
// Saved in this order; undefined tensors are saved as undefined.
enum Saved { kQ, kK, kV, kP, kG, kBeta, kInitial, kCu };
}  // namespace

template <typename Form>
variable_list CombaFunction<Form>::forward(AutogradContext* ctx, const at::Tensor& q,
                                           const at::Tensor& k, const at::Tensor& v,
                                           const OptTensor& p, const at::Tensor& g,
                                           const OptTensor& beta,
                                           const OptTensor& initial_state,
                                           const OptTensor& cu_seqlens,
                                           const CombaOptions& options) {
  const CombaInputs in{q,
                       k,
                       v,
                       p.value_or(at::Tensor()),
                       g,
                       beta.value_or(at::Tensor()),
                       initial_state.value_or(at::Tensor()),
                       cu_seqlens.value_or(at::Tensor())};
  const auto pb = describe_comba_problem(q, v, in.cu_seqlens, options);
  ctx->save_for_backward({in.q, in.k, in.v, in.p, in.g, in.beta, in.initial_state, in.cu_seqlens});
  ctx->saved_data["scale"] = pb.scale;
  ctx->saved_data["use_l2norm"] = pb.use_l2norm;
  ctx->saved_data["reference_path"] = pb.reference_path;
  auto out = Form::fwd(pb, in, options.kept_workspace());
  c10::List<at::Tensor> workspace;  // non-differentiable buffers the backward reuses
  for (const auto& t : out.saved) workspace.push_back(t);
  ctx->saved_data["workspace"] = workspace;
  return {out.o, out.final_state};
}

namespace {
bool any_requires_grad(const variable_list& tensors) {
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const at::Tensor& t) { return t.defined() && t.requires_grad(); });
}
}  // namespace

template <typename Form>
variable_list CombaFunction<Form>::backward(AutogradContext* ctx, variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  // create_graph=true runs this with grad mode on: the gradients would have to be
  // differentiable, and neither the kernels nor the reference's out= GEMMs are.
  TORCH_CHECK(!at::GradMode::is_enabled() ||
                  !(any_requires_grad(grad_outputs) || any_requires_grad(saved)),
              Form::kName,
              ": double backward is not supported (the backward was asked for a graph, "
              "create_graph=true); take the gradient with create_graph=false");
  const CombaInputs in{saved[kQ], saved[kK], saved[kV],       saved[kP],
                       saved[kG], saved[kBeta], saved[kInitial], saved[kCu]};
  const auto options = CombaOptions()
                           .scale(ctx->saved_data["scale"].toDouble())
                           .use_qk_l2norm_in_kernel(ctx->saved_data["use_l2norm"].toBool())
                           .use_reference_path(ctx->saved_data["reference_path"].toBool());
  const auto pb = describe_comba_problem(in.q, in.v, in.cu_seqlens, options);
  auto grad_o = grad_outputs[0];
  if (!grad_o.defined()) {
    grad_o = at::zeros({pb.batch, pb.seq_len, pb.value_heads, pb.value_dim}, in.q.options());
  }
  // The backward takes the kernels' workspace over and frees each buffer once it is read.
  // A second backward through a retained graph finds none and recomputes it.
  std::vector<at::Tensor> workspace;
  if (const auto it = ctx->saved_data.find("workspace"); it != ctx->saved_data.end()) {
    workspace = it->second.toTensorList().vec();
    ctx->saved_data.erase(it);
  }
  const auto grads = Form::bwd(pb, in, grad_o, grad_outputs[1], std::move(workspace));
  // One entry per forward argument; options get none.
  return {grads.q, grads.k, grads.v, grads.p, grads.g, grads.beta, grads.initial_state,
          at::Tensor(), at::Tensor()};
}

template class CombaFunction<ChunkForm>;
template class CombaFunction<FusedRecurrentForm>;

}  // namespace comba::detail
