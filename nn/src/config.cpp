// CombaConfig's derived sizes and validation.
#include "comba/nn/config.h"

#include "comba/nn/model_size.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace comba::nn {

int64_t CombaConfig::head_v_dim() const {
  return static_cast<int64_t>(std::llround(static_cast<double>(head_dim) * expand_v));
}

int64_t CombaConfig::mlp_intermediate_size() const {
  if (intermediate_size > 0) return intermediate_size;
  // fla's GatedMLP: int(hidden * ratio * 2 / 3), rounded up to a multiple of 256.
  const auto raw = static_cast<int64_t>(static_cast<double>(hidden_size) * hidden_ratio * 2.0 / 3.0);
  return 256 * ((raw + 255) / 256);
}

namespace {

// fla's parse_attention_config rules plus what its Attention layer asserts (heads divide
// hidden_size and group evenly) and what RoPE on two halves needs (an even head_dim).
// Messages name the key path: attn (one object) or attn[i] (a list).
void validate_attention_specs(const CombaConfig& c) {
  std::vector<int64_t> owner(static_cast<size_t>(std::max<int64_t>(c.num_hidden_layers, 0)), -1);
  TORCH_CHECK(c.attn_is_list || c.attn.size() <= 1, "CombaConfig: field `attn` expected one object or a list, got ",
              c.attn.size(), " specs with attn_is_list false");
  for (size_t i = 0; i < c.attn.size(); ++i) {
    const AttentionSpec& spec = c.attn[i];
    const std::string at = c.attn_is_list ? "attn[" + std::to_string(i) + "]" : std::string("attn");
    const auto spec_index = static_cast<int64_t>(i);
    for (const int64_t layer : spec.layers) {
      TORCH_CHECK(layer >= 0 && layer < c.num_hidden_layers, "CombaConfig: ", at, ".layers: layer ", layer,
                  " out of range [0, ", c.num_hidden_layers, ") (num_hidden_layers)");
      int64_t& assigned = owner[static_cast<size_t>(layer)];
      TORCH_CHECK(assigned != spec_index, "CombaConfig: ", at, ".layers: duplicate layer ", layer);
      TORCH_CHECK(assigned < 0, "CombaConfig: ", at, ".layers: layer ", layer, " is already assigned by attn[",
                  assigned, "]");
      assigned = spec_index;
    }
    TORCH_CHECK(spec.num_heads > 0, "CombaConfig: ", at, ".num_heads: expected > 0, got ", spec.num_heads);
    TORCH_CHECK(spec.num_kv_heads >= 0, "CombaConfig: ", at,
                ".num_kv_heads: expected > 0 (or 0/null = num_heads), got ", spec.num_kv_heads);
    TORCH_CHECK(spec.num_heads % spec.kv_heads() == 0, "CombaConfig: ", at,
                ".num_kv_heads: expected a divisor of num_heads = ", spec.num_heads, ", got ", spec.kv_heads());
    TORCH_CHECK(c.hidden_size % spec.num_heads == 0, "CombaConfig: ", at,
                ".num_heads: expected a divisor of hidden_size = ", c.hidden_size, ", got ", spec.num_heads);
    const int64_t head_dim = c.hidden_size / spec.num_heads;
    TORCH_CHECK(head_dim % 2 == 0, "CombaConfig: ", at, ".num_heads: expected an even head dim hidden_size / ",
                "num_heads (RoPE rotates pairs), got ", c.hidden_size, " / ", spec.num_heads, " = ", head_dim);
    TORCH_CHECK(spec.window_size >= 0, "CombaConfig: ", at,
                ".window_size: expected a positive integer (or 0/null = no window), got ", spec.window_size);
    TORCH_CHECK(std::isfinite(spec.rope_theta) && spec.rope_theta > 0, "CombaConfig: ", at,
                ".rope_theta: expected positive and finite, got ", spec.rope_theta);
  }
}

}  // namespace

void CombaConfig::validate() const {
  const auto positive = [](int64_t value, const char* field) {
    TORCH_CHECK(value > 0, "CombaConfig: field `", field, "` expected > 0, got ", value);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_heads, "num_heads");
  positive(head_dim, "head_dim");
  positive(conv_size, "conv_size");
  TORCH_CHECK(num_v_heads >= 0, "CombaConfig: field `num_v_heads` expected >= 0 (0 = num_heads), got ",
              num_v_heads);
  TORCH_CHECK(value_heads() % num_heads == 0, "CombaConfig: field `num_v_heads` expected a multiple of ",
              "num_heads = ", num_heads, ", got ", value_heads());
  const double v_dim = static_cast<double>(head_dim) * expand_v;
  TORCH_CHECK(expand_v > 0 && std::fabs(v_dim - std::round(v_dim)) < 1e-9,
              "CombaConfig: field `expand_v` expected head_dim * expand_v to be a positive integer, got ",
              head_dim, " * ", expand_v, " = ", v_dim);
  // Sizes derived in floating point must fit int64 before they are converted.
  constexpr double kMaxDerived = 4.0e18;
  TORCH_CHECK(v_dim <= kMaxDerived, "CombaConfig: field `expand_v` expected head_dim * expand_v <= ", kMaxDerived,
              ", got ", head_dim, " * ", expand_v, " = ", v_dim);
  TORCH_CHECK(intermediate_size >= 0, "CombaConfig: field `intermediate_size` expected >= 0 (0 = derived), got ",
              intermediate_size);
  TORCH_CHECK(intermediate_size > 0 || hidden_ratio > 0,
              "CombaConfig: field `hidden_ratio` expected > 0 when intermediate_size is 0, got ", hidden_ratio);
  TORCH_CHECK(intermediate_size > 0 || static_cast<double>(hidden_size) * hidden_ratio * 2.0 / 3.0 <= kMaxDerived,
              "CombaConfig: field `hidden_ratio` expected hidden_size * hidden_ratio * 2/3 <= ", kMaxDerived,
              " when intermediate_size is 0, got ", hidden_size, " * ", hidden_ratio, " * 2/3");
  TORCH_CHECK(norm_eps > 0, "CombaConfig: field `norm_eps` expected > 0, got ", norm_eps);
  TORCH_CHECK(initializer_range >= 0, "CombaConfig: field `initializer_range` expected >= 0, got ",
              initializer_range);
  TORCH_CHECK(std::any_of(kAttnModes.begin(), kAttnModes.end(), [&](const char* m) { return attn_mode == m; }),
              "CombaConfig: field `attn_mode` expected \"chunk\" or \"fused_recurrent\", got \"", attn_mode, "\"");
  validate_attention_specs(*this);
  count_parameters(*this);  // absurd sizes: products beyond int64 are errors naming the keys
}

const AttentionSpec* CombaConfig::attention_for_layer(int64_t layer) const {
  for (const auto& spec : attn) {
    if (std::find(spec.layers.begin(), spec.layers.end(), layer) != spec.layers.end()) return &spec;
  }
  return nullptr;
}

bool operator==(const AttentionSpec& a, const AttentionSpec& b) {
  return a.layers == b.layers && a.num_heads == b.num_heads && a.kv_heads() == b.kv_heads() &&
         a.qkv_bias == b.qkv_bias && a.window_size == b.window_size && a.rope_theta == b.rope_theta;
}

bool operator==(const CombaConfig& a, const CombaConfig& b) {
  bool same = a.attn == b.attn;
  for_each_field([&](const auto& field) { same = same && a.*field.member == b.*field.member; });
  return same;
}

}  // namespace comba::nn
