// Unpadding of attention masks into packed sequences, shared by the mixers and the model.
#include "comba/nn/padding.h"

#include "comba/nn/layer_inputs.h"

#include "comba/core/checks.h"

#include <vector>

namespace comba::nn {

Unpadding unpad_from_mask(const at::Tensor& attention_mask, int64_t batch, int64_t seq_len,
                          const at::Device& device, const char* fn) {
  const core::ArgChecker check(fn);
  check.rank(attention_mask, "attention_mask", 2, "[B, T_mask]");
  check.require(attention_mask.size(0) == batch && attention_mask.size(1) >= seq_len,
                "argument `attention_mask` expected [B = ", batch, ", T_mask >= ", seq_len, "], got shape ",
                attention_mask.sizes());
  Unpadding out;
  out.batch = batch;
  out.seq_len = seq_len;
  const auto is_token = attention_mask.slice(1, attention_mask.size(1) - seq_len).to(device).ne(0);  // [B, T]
  if (is_token.all().item<bool>()) return out;
  out.token_index = is_token.reshape(-1).nonzero().squeeze(1);
  const auto lengths = is_token.sum(1, /*keepdim=*/false, at::kLong);
  out.cu_seqlens = at::cat({at::zeros({1}, lengths.options()), lengths.cumsum(0)});
  return out;
}

namespace {
// [lead..., rest of `sizes` after its first `skip` entries]
std::vector<int64_t> with_lead(std::vector<int64_t> lead, at::IntArrayRef sizes, size_t skip) {
  const auto rest = sizes.slice(skip);
  lead.insert(lead.end(), rest.begin(), rest.end());
  return lead;
}
}  // namespace

at::Tensor Unpadding::pack(const at::Tensor& x) const {
  return x.reshape(with_lead({batch * seq_len}, x.sizes(), 2)).index_select(0, token_index).unsqueeze(0);
}

at::Tensor Unpadding::unpack(const at::Tensor& y) const {
  return at::zeros(with_lead({batch * seq_len}, y.sizes(), 2), y.options())
      .index_copy(0, token_index, y[0])
      .view(with_lead({batch, seq_len}, y.sizes(), 2));
}

torch::Tensor mix_without_padding(const char* fn, const torch::Tensor& x, int64_t hidden_size,
                                  const CombaLayerInputs& inputs, const UnpaddedMixer& mix) {
  const core::ArgChecker check(fn);
  check.rank(x, "x", 3, "[B, T, hidden]").floating(x, "x");
  check.require(x.size(2) == hidden_size, "argument `x` expected hidden = ", hidden_size, " [B, T, hidden], got shape ",
                x.sizes());
  const auto& mask = inputs.attention_mask();
  if (!mask.defined()) return mix(x, inputs.cu_seqlens(), inputs.state());
  check.require(!inputs.cu_seqlens().defined(),
                "arguments `attention_mask` and `cu_seqlens` expected one or the other, got both");
  const auto unpadding = unpad_from_mask(mask, x.size(0), x.size(1), x.device(), fn);
  if (!unpadding.has_padding()) return mix(x, {}, inputs.state());
  return unpadding.unpack(mix(unpadding.pack(x), unpadding.cu_seqlens, inputs.state()));
}

}  // namespace comba::nn
