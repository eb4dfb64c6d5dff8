// CombaConfig: the model hyper-parameters, spelled with fla's CombaConfig keys so that an
// fla config.json maps onto it field by field. Plain fields (no setters) so that the
// trainer can fill it from YAML in one place; validate() names the offending field.
//
// The fields are listed once, in COMBA_CONFIG_FIELDS; the struct, config.json (io), the
// YAML keys model.* (train), the checkpoint's and a model folder's architecture checks and
// operator== all walk that list (for_each_field), so adding a field is one line there plus
// its rule in validate().
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace comba::nn {

// The values of attn_mode.
inline constexpr std::array<const char*, 2> kAttnModes = {"chunk", "fused_recurrent"};

// What a field means for trained weights.
enum class FieldRole {
  kShape,     // decides which tensors exist and their shapes (a model folder must agree)
  kFunction,  // same tensors, another function (a resumed run must agree; a folder may differ)
  kFree,      // initialisation, compute path, token ids: free to change between runs
};

// The values a field may be given as text (YAML / --set): numbers above a bound, strings
// from a list (empty: any). Checks spanning fields stay in validate().
struct FieldRange {
  double min = -std::numeric_limits<double>::infinity();
  bool min_inclusive = true;
  std::vector<std::string> choices;

  static FieldRange any() { return {}; }
  static FieldRange at_least(double v) { return {v, true, {}}; }
  static FieldRange positive() { return {0.0, false, {}}; }
  static FieldRange non_negative() { return {0.0, true, {}}; }
  template <size_t N>
  static FieldRange one_of(const std::array<const char*, N>& values) {
    return {-std::numeric_limits<double>::infinity(), true, std::vector<std::string>(values.begin(), values.end())};
  }
};

// X(type, name, default, hf_key, hf_null, range, role, help), one line a field:
//   name     the member and the YAML key model.<name>
//   hf_key   fla's config.json key
//   hf_null  the value JSON null (fla's None) stands for; an integer field holding it is
//            written as null. std::nullopt: null is an error.
//   range    a FieldRange: what YAML / --set may give
//   role     a FieldRole: what a change means for saved weights
//   help     one line for --help
// Columns after `default` are expressions in comba::nn.
#define COMBA_CONFIG_FIELDS(X)                                                                                     \
  X(int64_t, vocab_size, 32000, "vocab_size", std::nullopt, FieldRange::at_least(1), FieldRole::kShape, "")        \
  X(int64_t, hidden_size, 2048, "hidden_size", std::nullopt, FieldRange::at_least(1), FieldRole::kShape, "")       \
  X(int64_t, num_hidden_layers, 21, "num_hidden_layers", std::nullopt, FieldRange::at_least(1), FieldRole::kShape, \
    "")                                                                                                            \
  X(int64_t, num_heads, 6, "num_heads", std::nullopt, FieldRange::at_least(1), FieldRole::kShape,                  \
    "query/key heads (H)")                                                                                         \
  X(int64_t, head_dim, 256, "head_dim", std::nullopt, FieldRange::at_least(1), FieldRole::kShape, "K")             \
  X(int64_t, num_v_heads, 0, "num_v_heads", int64_t{0}, FieldRange::non_negative(), FieldRole::kShape,             \
    "value heads (HV); 0 means num_heads; HV % H == 0 (GVA)")                                                      \
  X(double, expand_v, 2.0, "expand_v", std::nullopt, FieldRange::positive(), FieldRole::kShape,                    \
    "value head dim = head_dim * expand_v (an integer)")                                                           \
  X(bool, use_short_conv, true, "use_short_conv", std::nullopt, FieldRange::any(), FieldRole::kShape, "")          \
  X(int64_t, conv_size, 4, "conv_size", std::nullopt, FieldRange::at_least(1), FieldRole::kShape, "")              \
  X(bool, conv_bias, false, "conv_bias", std::nullopt, FieldRange::any(), FieldRole::kShape, "")                   \
  X(bool, use_output_gate, true, "use_gate", std::nullopt, FieldRange::any(), FieldRole::kShape, "")               \
  X(bool, use_output_correction, true, "use_output_correction", std::nullopt, FieldRange::any(), FieldRole::kShape, \
    "")                                                                                                            \
  X(bool, use_inner_decay, true, "use_inner_decay", std::nullopt, FieldRange::any(), FieldRole::kShape, "")        \
  X(double, correction_factor, 1.0, "correction_factor", std::nullopt, FieldRange::any(), FieldRole::kFree,        \
    "initial D")                                                                                                   \
  X(bool, allow_neg_eigval, false, "allow_neg_eigval", std::nullopt, FieldRange::any(), FieldRole::kFunction,      \
    "beta in (0, 2) instead of (0, 1)")                                                                            \
  X(double, hidden_ratio, 4.0, "hidden_ratio", 4.0, FieldRange::positive(), FieldRole::kShape,                     \
    "MLP width / hidden_size when intermediate_size is 0")                                                         \
  X(int64_t, intermediate_size, 0, "intermediate_size", int64_t{0}, FieldRange::non_negative(), FieldRole::kShape, \
    "0: from hidden_ratio (256-rounded 2/3 * hidden_ratio * hidden_size)")                                         \
  X(double, norm_eps, 1e-6, "norm_eps", std::nullopt, FieldRange::positive(), FieldRole::kFunction, "")            \
  X(bool, tie_word_embeddings, false, "tie_word_embeddings", std::nullopt, FieldRange::any(), FieldRole::kShape,   \
    "")                                                                                                            \
  X(double, initializer_range, 0.02, "initializer_range", std::nullopt, FieldRange::positive(), FieldRole::kFree,  \
    "")                                                                                                            \
  X(std::string, attn_mode, "chunk", "attn_mode", std::nullopt, FieldRange::one_of(kAttnModes), FieldRole::kFree,  \
    "")                                                                                                            \
  X(int64_t, max_position_embeddings, 2048, "max_position_embeddings", std::nullopt, FieldRange::at_least(1),      \
    FieldRole::kFree, "informational (no positional embedding)")                                                  \
  X(int64_t, bos_token_id, 1, "bos_token_id", int64_t{-1}, FieldRange::at_least(-1), FieldRole::kFree, "-1: none") \
  X(int64_t, eos_token_id, 2, "eos_token_id", int64_t{-1}, FieldRange::at_least(-1), FieldRole::kFree, "-1: none") \
  X(int64_t, pad_token_id, -1, "pad_token_id", int64_t{-1}, FieldRange::at_least(-1), FieldRole::kFree, "-1: none")

// One entry of fla's `attn` config: the layers that use softmax attention (class
// Attention, attention.h) in place of the Comba mixer; norms and MLP are unchanged.
// fla's defaults: num_kv_heads = num_heads, no qkv bias, no window, rope_theta 10000.
struct AttentionSpec {
  std::vector<int64_t> layers;  // layer indices, each in at most one spec of a config
  int64_t num_heads = 0;        // head_dim = hidden_size / num_heads
  int64_t num_kv_heads = 0;     // 0 (fla's missing or null) = num_heads; num_heads % it == 0
  bool qkv_bias = false;
  int64_t window_size = 0;  // 0 = fla's null (full causal); w > 0: a query sees its last w keys, itself included
  double rope_theta = 10000.0;

  int64_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
};
bool operator==(const AttentionSpec& a, const AttentionSpec& b);
inline bool operator!=(const AttentionSpec& a, const AttentionSpec& b) { return !(a == b); }

struct CombaConfig {
#define COMBA_CONFIG_MEMBER(type, name, default_value, ...) type name = default_value;
  COMBA_CONFIG_FIELDS(COMBA_CONFIG_MEMBER)
#undef COMBA_CONFIG_MEMBER

  // fla's `attn`: empty = a pure Comba model. Outside COMBA_CONFIG_FIELDS (not a scalar):
  // validate, operator==, config.json and YAML handle it by name. attn_is_list keeps
  // fla's spelling (one object or a list of objects) for writing back.
  std::vector<AttentionSpec> attn;
  bool attn_is_list = false;

  // The spec that makes `layer` an attention layer, or nullptr for a Comba layer.
  const AttentionSpec* attention_for_layer(int64_t layer) const;
  bool is_hybrid() const { return !attn.empty(); }

  int64_t value_heads() const { return num_v_heads > 0 ? num_v_heads : num_heads; }
  int64_t head_v_dim() const;
  int64_t key_dim() const { return num_heads * head_dim; }
  int64_t value_dim() const { return value_heads() * head_v_dim(); }
  // The MLP width: intermediate_size, or fla's 256-rounded 2/3 * hidden_ratio * hidden_size.
  int64_t mlp_intermediate_size() const;
  // Throws c10::Error naming the field, what was expected and what came.
  void validate() const;
};

// One field of the list, as for_each_field hands it to a visitor.
template <class T>
struct ConfigField {
  const char* name;
  const char* hf_key;
  std::optional<T> hf_null;
  FieldRange range;
  FieldRole role;
  const char* help;
  T CombaConfig::*member;
};

// Calls visit(ConfigField<T>) for every field, in the list's order (a generic lambda
// reads or writes `config.*field.member`).
template <class Visitor>
void for_each_field(Visitor&& visit) {
#define COMBA_CONFIG_VISIT(type, name, default_value, hf_key, hf_null, range, role, help) \
  visit(ConfigField<type>{#name, hf_key, hf_null, range, role, help, &CombaConfig::name});
  COMBA_CONFIG_FIELDS(COMBA_CONFIG_VISIT)
#undef COMBA_CONFIG_VISIT
}

// Field by field.
bool operator==(const CombaConfig& a, const CombaConfig& b);
inline bool operator!=(const CombaConfig& a, const CombaConfig& b) { return !(a == b); }

}  // namespace comba::nn
