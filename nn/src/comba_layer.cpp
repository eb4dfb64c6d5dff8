// CombaLayer (SPEC section 3): projections, short convs, inner decay and output
// correction, gates, the operator call, gated output norm. Padded batches are unpacked
// into packed sequences (cu_seqlens) so that padding never enters a state, and the output
// is scattered back with zeros at padding positions.
#include "comba/nn/comba_layer.h"

#include "comba/core/checks.h"
#include "comba/nn/comba_gates.h"
#include "comba/nn/decay_correction.h"
#include "comba/nn/padding.h"
#include "comba/nn/rms_norm.h"
#include "comba/ops/comba.h"
#include "comba/ops/decode_step.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/torch.h>

#include <cmath>

namespace comba::nn {

CombaLayerOptions CombaLayerOptions::from_config(const CombaConfig& config) {
  return CombaLayerOptions(config.hidden_size)
      .head_dim(config.head_dim)
      .num_heads(config.num_heads)
      .num_v_heads(config.value_heads())
      .expand_v(config.expand_v)
      .mode(config.attn_mode)
      .use_short_conv(config.use_short_conv)
      .conv_size(config.conv_size)
      .conv_bias(config.conv_bias)
      .use_output_gate(config.use_output_gate)
      .use_output_correction(config.use_output_correction)
      .use_inner_decay(config.use_inner_decay)
      .correction_factor(config.correction_factor)
      .allow_neg_eigval(config.allow_neg_eigval)
      .norm_eps(config.norm_eps);
}

CombaLayerImpl::CombaLayerImpl(const CombaLayerOptions& options_) : options(options_) { reset(); }

void CombaLayerImpl::reset() {
  const auto& o = options;
  const core::ArgChecker check("CombaLayer");
  check.require(o.hidden_size() > 0, "option `hidden_size` expected > 0, got ", o.hidden_size());
  check.require(o.num_heads() > 0, "option `num_heads` expected > 0, got ", o.num_heads());
  check.require(o.head_dim() > 0, "option `head_dim` expected > 0, got ", o.head_dim());
  check.require(o.num_v_heads() >= 0, "option `num_v_heads` expected >= 0 (0 = num_heads), got ",
                o.num_v_heads());
  num_v_heads_ = o.num_v_heads() > 0 ? o.num_v_heads() : o.num_heads();
  check.require(num_v_heads_ % o.num_heads() == 0, "option `num_v_heads` expected a multiple of num_heads = ",
                o.num_heads(), ", got ", num_v_heads_);
  const double v_dim = static_cast<double>(o.head_dim()) * o.expand_v();
  check.require(o.expand_v() > 0 && std::fabs(v_dim - std::round(v_dim)) < 1e-9,
                "option `expand_v` expected head_dim * expand_v to be a positive integer, got ", o.head_dim(),
                " * ", o.expand_v(), " = ", v_dim);
  check.require(o.mode() == "chunk" || o.mode() == "fused_recurrent",
                "option `mode` expected \"chunk\" or \"fused_recurrent\", got \"", o.mode(), "\"");
  check.require(o.conv_size() > 0, "option `conv_size` expected > 0, got ", o.conv_size());
  head_v_dim_ = static_cast<int64_t>(std::llround(v_dim));
  key_dim_ = o.num_heads() * o.head_dim();
  value_dim_ = num_v_heads_ * head_v_dim_;

  const auto linear = [&](const char* name, int64_t in, int64_t out) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
  };
  q_proj = linear("q_proj", o.hidden_size(), key_dim_);
  k_proj = linear("k_proj", o.hidden_size(), key_dim_);
  v_proj = linear("v_proj", o.hidden_size(), value_dim_);
  a_proj = linear("a_proj", o.hidden_size(), num_v_heads_);
  b_proj = linear("b_proj", o.hidden_size(), num_v_heads_);
  A_log = register_parameter("A_log", torch::empty({num_v_heads_}));
  dt_bias = register_parameter("dt_bias", torch::empty({num_v_heads_}));
  if (o.use_output_correction()) D = register_parameter("D", torch::empty({o.num_heads()}));
  if (o.use_inner_decay()) decay = register_parameter("decay", torch::empty({o.num_heads()}));
  if (o.use_short_conv()) {
    const auto conv = [&](const char* name, int64_t channels) {
      return register_module(
          name, ShortConvolution(ShortConvolutionOptions(channels, o.conv_size()).bias(o.conv_bias())));
    };
    q_conv1d = conv("q_conv1d", key_dim_);
    k_conv1d = conv("k_conv1d", key_dim_);
    v_conv1d = conv("v_conv1d", value_dim_);
  }
  if (o.use_output_gate()) g_proj = linear("g_proj", o.hidden_size(), value_dim_);
  o_norm = register_module("o_norm", GatedRMSNorm(RMSNormOptions(head_v_dim_).eps(o.norm_eps())));
  o_proj = linear("o_proj", value_dim_, o.hidden_size());
  reset_parameters();
}

void CombaLayerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  // A = U(0, 16); dt = exp(U(log 1e-3, log 0.1)) clamped at 1e-4, stored through the
  // inverse softplus so that softplus(dt_bias) = dt at initialisation.
  A_log.copy_(torch::empty_like(A_log).uniform_(0.0, 16.0).log());
  const auto dt = torch::exp(torch::empty_like(dt_bias).uniform_(std::log(1e-3), std::log(0.1)))
                      .clamp_min(1e-4);
  dt_bias.copy_(dt + torch::log(-torch::expm1(-dt)));
  if (D.defined()) D.fill_(options.correction_factor());
  if (decay.defined()) decay.fill_(1.0);
}

torch::Tensor CombaLayerImpl::forward(const torch::Tensor& x, const CombaLayerInputs& inputs) {
  return mix_without_padding("CombaLayer::forward", x, options.hidden_size(), inputs,
                             [this](const torch::Tensor& tokens, const torch::Tensor& cu_seqlens, LayerState* state) {
                               return mix(tokens, cu_seqlens, state);
                             });
}

torch::Tensor CombaLayerImpl::forward_normalized(const torch::Tensor& x, const RMSNormImpl& norm,
                                                 const CombaLayerInputs& inputs) {
  return mix_without_padding("CombaLayer::forward_normalized", x, options.hidden_size(), inputs,
                             [this, &norm](const torch::Tensor& tokens, const torch::Tensor& cu_seqlens,
                                           LayerState* state) { return mix(tokens, cu_seqlens, state, &norm); });
}

bool CombaLayerImpl::decode_state_in_place(LayerState& state, const torch::Tensor& q, const torch::Tensor& v) const {
  auto& s = state.recurrent;
  if (!s.defined()) return false;
  const auto dtype = s.scalar_type();
  const bool dtype_ok = q.scalar_type() == torch::kDouble ? dtype == torch::kDouble
                                                          : dtype == torch::kFloat || dtype == torch::kBFloat16;
  const bool fits = s.dim() == 4 && s.size(0) == q.size(0) && s.size(1) == num_v_heads_ &&
                    s.size(2) == q.size(3) && s.size(3) == v.size(3) && s.device() == q.device();
  if (!dtype_ok || !fits) return false;
  // Once (the first step after a prefill), so that every later step finds it dense.
  if (!s.is_contiguous()) s = s.contiguous();
  return true;
}

torch::Tensor CombaLayerImpl::mix(const torch::Tensor& x, const torch::Tensor& cu_seqlens, LayerState* state,
                                  const RMSNormImpl* norm) {
  const int64_t batch = x.size(0), seq_len = x.size(1);
  const int64_t heads = options.num_heads(), head_dim = options.head_dim();
  const bool recurrent =
      options.mode() == "fused_recurrent" || (!is_training() && seq_len <= kRecurrentMaxLenInEval);

  // A decode step (one token per sequence, a carried state, inference) updates the cache's
  // tensors in place: the same storage every step, so that a CUDA graph of the model's step
  // (generate's cuda_graph) replays it.
  const bool decode_step = state != nullptr && seq_len == 1 && !cu_seqlens.defined() && recurrent &&
                           !torch::GradMode::is_enabled();

  // q, k, v, a, b and the output gate: one input, six GEMMs.
  std::vector<torch::Tensor> weights = {q_proj->weight, k_proj->weight, v_proj->weight, a_proj->weight,
                                        b_proj->weight};
  if (options.use_output_gate()) weights.push_back(g_proj->weight);
  std::vector<torch::Tensor> projected;
  if (norm != nullptr) {
    projected = rms_norm_linears(x, norm->weight, norm->options.eps(), {}, weights);
  } else {
    for (const auto& w : weights) projected.push_back(torch::nn::functional::linear(x, w));
  }
  auto q = projected[0], k = projected[1], v = projected[2];
  if (options.use_short_conv()) {
    const auto run = [&](ShortConvolution& conv, const torch::Tensor& input, at::Tensor* carried) {
      auto out = conv(input, carried ? *carried : torch::Tensor(), cu_seqlens);
      if (carried) {
        const bool in_place = decode_step && carried->defined() &&
                              carried->sizes() == out.final_state.sizes() &&
                              carried->scalar_type() == out.final_state.scalar_type();
        if (in_place) {
          carried->copy_(out.final_state);
        } else {
          *carried = out.final_state;
        }
      }
      return out.output;
    };
    q = run(q_conv1d, q, state ? &state->conv_q : nullptr);
    k = run(k_conv1d, k, state ? &state->conv_k : nullptr);
    v = run(v_conv1d, v, state ? &state->conv_v : nullptr);
  } else {
    q = torch::silu(q);
    k = torch::silu(k);
    v = torch::silu(v);
  }
  // Under autocast the projections come out in the autocast dtype while fp32 parameters
  // (decay, D) would promote products back to fp32: the operator wants one dtype.
  const auto dtype = q.scalar_type();
  q = q.view({batch, seq_len, heads, head_dim});
  k = k.to(dtype).view({batch, seq_len, heads, head_dim});
  v = v.to(dtype).view({batch, seq_len, num_v_heads_, head_v_dim_});
  // p = k sigmoid(decay), q' = q - D p, with decay and D in fp32 (one fused kernel on CUDA).
  const auto corrected = decay_correction(q, k, options.use_inner_decay() ? decay : torch::Tensor(),
                                          options.use_output_correction() ? D : torch::Tensor());
  q = corrected.q;
  const auto& p = corrected.p;

  // g and beta [B, T, HV] in fp32 (fp64 for fp64 x; the projections come out in x's dtype
  // or the autocast dtype), both from one fused kernel on CUDA.
  const auto gates = comba_gates(projected[3], projected[4], A_log, dt_bias);
  const auto& g = gates.g;
  auto beta = options.allow_neg_eigval() ? gates.beta * 2.0 : gates.beta;

  torch::Tensor o;
  if (decode_step && decode_state_in_place(*state, q, v)) {
    // The cache's recurrent state is read and written in place by the step (fp32, or bf16
    // when the caller keeps it so: see generate's bf16_decode_state).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    o = torch::empty({batch, 1, num_v_heads_, head_v_dim_}, q.options());
    comba::comba_decode_step_(q.contiguous(), k.contiguous(), v.contiguous(), p.contiguous(), g.contiguous(),
                              beta.contiguous(), state->recurrent, o,
                              comba::DecodeStepOptions().use_qk_l2norm_in_kernel(true));
  } else {
    // A state kept in bf16 (a decode-only choice) enters and leaves the operator as fp32.
    const bool bf16_state = state && state->recurrent.defined() && state->recurrent.scalar_type() == torch::kBFloat16;
    auto op_options = comba::CombaOptions()
                          .output_final_state(state != nullptr)
                          .use_qk_l2norm_in_kernel(true)
                          .cu_seqlens(cu_seqlens)
                          .kept_workspace(kept_workspace_)
                          .split_length(split_length_);
    if (state && state->recurrent.defined()) {
      op_options.initial_state(bf16_state ? state->recurrent.to(torch::kFloat) : state->recurrent);
    }
    torch::Tensor final_state;
    {
      // The operator has its own dtype policy (fp32 state and accumulation); keep autocast
      // from re-casting inside it.
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      std::tie(o, final_state) = recurrent ? comba::fused_recurrent_comba(q, k, v, p, g, beta, op_options)
                                           : comba::chunk_comba(q, k, v, p, g, beta, op_options);
    }
    if (state) state->recurrent = bf16_state ? final_state.to(torch::kBFloat16) : final_state;
  }

  // The gated norm per value head, then o_proj, without keeping the normed output
  // (rms_norm_linear recomputes it in the backward).
  const auto gate = options.use_output_gate() ? projected[5] : torch::Tensor();
  return rms_norm_linear(o.reshape({batch, seq_len, value_dim_}), o_norm->weight, o_norm->options.eps(), gate,
                         o_proj->weight);
}

}  // namespace comba::nn
