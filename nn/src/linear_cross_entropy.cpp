// Linear + cross entropy in slices of tokens (see linear_cross_entropy.h).
#include "comba/nn/linear_cross_entropy.h"

#include "comba/core/checks.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#ifdef COMBA_WITH_CUDA
#include "launch/launchers.h"
#endif

namespace comba::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One fp32 slice of logits near this size: large enough that the GEMMs stay efficient,
// small beside the model's activations.
constexpr int64_t kSliceBytes = int64_t{256} << 20;

int64_t tokens_per_slice(int64_t vocab, int64_t asked) {
  if (asked > 0) return asked;
  return std::max<int64_t>(1, kSliceBytes / (vocab * static_cast<int64_t>(sizeof(float))));
}

// Whether a slice's logits go through the fused row kernel (one read and one write of the
// logits in their own dtype) instead of the fp32 ATen composition.
bool fused_rows(const torch::Tensor& hidden) {
#ifdef COMBA_WITH_CUDA
  return hidden.is_cuda() && detail::cuda::cross_entropy_rows_supported(hidden);
#else
  (void)hidden;
  return false;
#endif
}

// d_weight += d_logits^T hidden with fp32 (fp64) accumulation across slices; 16-bit GEMMs
// on the GPU write fp32 directly, elsewhere the operands are widened first.
void accumulate_weight_grad(torch::Tensor& d_weight, const torch::Tensor& d_logits, const torch::Tensor& hidden) {
  const auto acc = d_weight.scalar_type();
  if (hidden.scalar_type() != acc && hidden.is_cuda()) {
    d_weight.add_(at::mm(d_logits.t(), hidden, acc));
  } else {
    d_weight.addmm_(d_logits.t().to(acc), hidden.to(acc));
  }
}

class LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& targets, int64_t ignore_index, int64_t slice, bool with_grad) {
    // The inputs are already in the compute dtype; the fp32 softmax must stay fp32.
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const int64_t n = hidden.size(0), vocab = weight.size(0);
    const auto acc = hidden.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto loss = torch::zeros({}, hidden.options().dtype(acc));
    torch::Tensor d_hidden, d_weight;
    if (with_grad) {
      d_hidden = torch::empty_like(hidden);
      d_weight = torch::zeros(weight.sizes(), weight.options().dtype(acc));
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const bool fused = fused_rows(hidden);
    const auto row_loss = fused ? torch::empty({n}, hidden.options().dtype(torch::kFloat)) : torch::Tensor();
    for (int64_t start = 0; start < n; start += slice) {
      const int64_t len = std::min(slice, n - start);
      const auto h = hidden.narrow(0, start, len);
      const auto t = targets.narrow(0, start, len);
#ifdef COMBA_WITH_CUDA
      if (fused) {
        // The logits stay in the compute dtype; the kernel turns them into their gradient.
        const auto logits = torch::mm(h, weight.t());
        detail::cuda::cross_entropy_rows(logits, t.contiguous(), ignore_index, row_loss.narrow(0, start, len),
                                         with_grad);
        if (with_grad) {
          auto d_h = d_hidden.narrow(0, start, len);
          torch::mm_out(d_h, logits, weight);
          accumulate_weight_grad(d_weight, logits, h);
        }
        continue;
      }
#endif
      const auto logits = torch::mm(h, weight.t()).to(acc);  // [len, V]
      const auto counted = t.ne(ignore_index);
      const auto in_range = t.ge(0) & t.lt(vocab);
      const auto bad = counted & in_range.logical_not();  // out of range: NaN, not a device fault
      const auto used = counted & in_range;
      const auto safe = torch::where(used, t, torch::zeros_like(t)).unsqueeze(1);
      const auto lse = logits.logsumexp(1);
      const auto token_loss = lse - logits.gather(1, safe).squeeze(1);
      loss += torch::where(used, token_loss, torch::zeros_like(token_loss)).sum() +
              torch::where(bad, torch::full_like(token_loss, nan), torch::zeros_like(token_loss)).sum();
      if (!with_grad) continue;
      // softmax - one_hot(target) on counted rows, zero on ignored rows.
      auto d_logits = (logits - lse.unsqueeze(1)).exp_();
      d_logits.scatter_add_(1, safe, used.to(acc).neg().unsqueeze(1));
      const auto row_scale = torch::where(bad, torch::full_like(lse, nan), used.to(acc));
      d_logits.mul_(row_scale.unsqueeze(1));
      const auto d_logits_c = d_logits.to(hidden.scalar_type());
      auto d_h = d_hidden.narrow(0, start, len);
      torch::mm_out(d_h, d_logits_c, weight);
      accumulate_weight_grad(d_weight, d_logits_c, h);
    }
    if (fused) loss = row_loss.sum();
    if (with_grad) ctx->save_for_backward({d_hidden, d_weight.to(weight.scalar_type())});
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto& grad = grad_outputs[0];
    // Grad mode is on in a backward only with create_graph: its gradients would be
    // constants here, silently wrong as a graph.
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "linear_cross_entropy: double backward (create_graph=true) is not supported");
    const auto saved = ctx->get_saved_variables();
    TORCH_CHECK(saved.size() == 2 && saved[0].defined(),
                "linear_cross_entropy: backward through a call made without gradients");
    return {saved[0] * grad.to(saved[0].scalar_type()), saved[1] * grad.to(saved[1].scalar_type()),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, const LinearCrossEntropyOptions& options) {
  const core::ArgChecker check("linear_cross_entropy");
  check.rank(hidden, "hidden", 2, "[N, H]").floating(hidden, "hidden");
  check.rank(weight, "weight", 2, "[V, H]").floating(weight, "weight");
  check.shape(targets, "targets", {hidden.size(0)}, "[N]");
  check.dtype_in(targets, "targets", {torch::kLong});
  check.require(weight.size(1) == hidden.size(1), "argument `weight` expected [V, H] with H = ", hidden.size(1),
                " (hidden's last dim), got ", core::shape_str(weight.sizes()));
  check.require(weight.size(0) > 0, "argument `weight` expected a non-empty vocabulary, got ",
                core::shape_str(weight.sizes()));
  check.require(weight.device() == hidden.device() && targets.device() == hidden.device(),
                "arguments `hidden`, `weight`, `targets` expected on one device, got ", hidden.device(), ", ",
                weight.device(), ", ", targets.device());
  check.require(options.tokens_per_slice() >= 0, "argument `tokens_per_slice` expected >= 0, got ",
                options.tokens_per_slice());
  const int64_t vocab = weight.size(0);
  if (!targets.is_cuda() && targets.numel() > 0) {
    const auto counted = targets.ne(options.ignore_index());
    const auto out_of_range = counted & (targets.lt(0) | targets.ge(vocab));
    if (out_of_range.any().item<bool>()) {
      const int64_t at = out_of_range.nonzero()[0][0].item<int64_t>();
      TORCH_CHECK(false, "linear_cross_entropy: argument `targets` expected ids in [0, ", vocab, ") or ",
                  options.ignore_index(), ", got ", targets[at].item<int64_t>(), " at position ", at);
    }
  }
  // The compute dtype: autocast's when it is on for this device, else hidden's.
  auto compute = hidden.scalar_type();
  const auto device_type = hidden.device().type();
  if (at::autocast::is_autocast_enabled(device_type) && hidden.scalar_type() != torch::kDouble) {
    compute = at::autocast::get_autocast_dtype(device_type);
  }
  const auto h = hidden.to(compute);
  const auto w = weight.to(compute);
  const bool with_grad = torch::GradMode::is_enabled() && (h.requires_grad() || w.requires_grad());
  return LinearCrossEntropyFunction::apply(h, w, targets, options.ignore_index(),
                                           tokens_per_slice(vocab, options.tokens_per_slice()), with_grad);
}

}  // namespace comba::nn
