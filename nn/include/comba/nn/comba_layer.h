// CombaLayer: the token mixer of SPEC section 3 (fla's layers/comba.py), with every option
// of fla's layer. Parameter names follow fla's checkpoints: q_proj, k_proj, v_proj,
// a_proj, b_proj, g_proj, o_proj, q_conv1d, k_conv1d, v_conv1d, A_log, dt_bias, D, decay,
// o_norm.
#pragma once
#include "comba/nn/cache.h"
#include "comba/nn/config.h"
#include "comba/nn/layer_inputs.h"
#include "comba/nn/rms_norm.h"
#include "comba/nn/short_conv.h"
#include "comba/ops/comba.h"

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

namespace comba::nn {

struct CombaLayerOptions {
  CombaLayerOptions(int64_t hidden_size) : hidden_size_(hidden_size) {}
  // The layer options of a model config (everything but the layer index).
  static CombaLayerOptions from_config(const CombaConfig& config);

  TORCH_ARG(int64_t, hidden_size);
  TORCH_ARG(int64_t, head_dim) = 256;
  TORCH_ARG(int64_t, num_heads) = 6;
  TORCH_ARG(int64_t, num_v_heads) = 0;  // 0 = num_heads
  TORCH_ARG(double, expand_v) = 2.0;
  TORCH_ARG(std::string, mode) = "chunk";  // "chunk" or "fused_recurrent"
  TORCH_ARG(bool, use_short_conv) = true;
  TORCH_ARG(int64_t, conv_size) = 4;
  TORCH_ARG(bool, conv_bias) = false;
  TORCH_ARG(bool, use_output_gate) = true;
  TORCH_ARG(bool, use_output_correction) = true;
  TORCH_ARG(bool, use_inner_decay) = true;
  TORCH_ARG(double, correction_factor) = 1.0;
  TORCH_ARG(bool, allow_neg_eigval) = false;
  TORCH_ARG(double, norm_eps) = 1e-5;
  TORCH_ARG(int64_t, layer_idx) = 0;  // which LayerState of a CombaCache it uses
};

// Above this length, eval-mode inputs take the chunk path (fla switches at 64 as well).
inline constexpr int64_t kRecurrentMaxLenInEval = 64;

class CombaLayerImpl : public torch::nn::Module {
 public:
  explicit CombaLayerImpl(const CombaLayerOptions& options);
  void reset();
  // A_log, dt_bias, D and decay as SPEC section 3; projections and convs keep LibTorch's
  // defaults until the model's init_weights.
  void reset_parameters();

  // x [B, T, hidden] -> [B, T, hidden] (padding positions of attention_mask give zeros).
  // With a LayerState the state is read and the state after the last token written back;
  // a decode step (T = 1, no grad, the state already there) writes it IN PLACE, into the
  // same tensors (the recurrent state may be fp32 or bf16 then), so that a CUDA graph of
  // the step can be replayed.
  torch::Tensor forward(const torch::Tensor& x, const CombaLayerInputs& inputs = {});
  // forward(norm(x)) with the norm fused into the input projections (rms_norm_linears):
  // the normed input is not kept for the backward, and its gradient is summed over the
  // projections inside their GEMMs. The block's pre-norm path.
  torch::Tensor forward_normalized(const torch::Tensor& x, const RMSNormImpl& norm,
                                   const CombaLayerInputs& inputs = {});

  int64_t key_dim() const { return key_dim_; }
  int64_t value_dim() const { return value_dim_; }
  int64_t head_v_dim() const { return head_v_dim_; }
  int64_t value_heads() const { return num_v_heads_; }
  // What the operator keeps of its chunk workspace for backward (CombaOptions::
  // kept_workspace); the backward recomputes the rest. Set by CombaModel::set_recompute.
  void set_kept_workspace(comba::KeptWorkspace keep) { kept_workspace_ = keep; }
  comba::KeptWorkspace kept_workspace() const { return kept_workspace_; }
  // The operator's sequence split (CombaOptions::split_length; unset: its automatic
  // choice). Set by CombaModel::set_split_length.
  void set_split_length(c10::optional<int64_t> length) { split_length_ = length; }
  c10::optional<int64_t> split_length() const { return split_length_; }

  CombaLayerOptions options;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
  torch::nn::Linear a_proj{nullptr}, b_proj{nullptr}, g_proj{nullptr}, o_proj{nullptr};
  ShortConvolution q_conv1d{nullptr}, k_conv1d{nullptr}, v_conv1d{nullptr};
  GatedRMSNorm o_norm{nullptr};  // plain RMSNorm (gate undefined) without the output gate
  torch::Tensor A_log;    // [HV]
  torch::Tensor dt_bias;  // [HV]
  torch::Tensor D;        // [H], only with use_output_correction
  torch::Tensor decay;    // [H], only with use_inner_decay

 private:
  // The mixer on unpadded input: x [B, T, hidden]; cu_seqlens optional.
  // With `norm`, x is the block's input and the projections see norm(x).
  torch::Tensor mix(const torch::Tensor& x, const torch::Tensor& cu_seqlens, LayerState* state,
                    const RMSNormImpl* norm = nullptr);
  // Whether a decode step can update state.recurrent in place (comba_decode_step_): [B, HV,
  // K, V] on q's device, fp32 / bf16 (fp64 for fp64 inputs); makes it contiguous if needed.
  // q [B, 1, H, K], v [B, 1, HV, V].
  bool decode_state_in_place(LayerState& state, const torch::Tensor& q, const torch::Tensor& v) const;

  int64_t num_v_heads_ = 0, key_dim_ = 0, value_dim_ = 0, head_v_dim_ = 0;
  comba::KeptWorkspace kept_workspace_ = comba::KeptWorkspace::kAll;
  c10::optional<int64_t> split_length_;
};
TORCH_MODULE(CombaLayer);

}  // namespace comba::nn
