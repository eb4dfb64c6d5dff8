// CombaConfig: the model hyper-parameters, spelled with fla's CombaConfig keys so that an
// fla config.json maps onto it field by field. Plain fields (no setters) so that the
// trainer can fill it from YAML in one place; validate() names the offending field.
#pragma once
#include <cstdint>
#include <string>

namespace comba::nn {

struct CombaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 2048;
  int64_t num_hidden_layers = 21;
  int64_t num_heads = 6;          // query/key heads (H)
  int64_t head_dim = 256;         // K
  int64_t num_v_heads = 0;        // value heads (HV); 0 means num_heads. HV % H == 0 (GVA).
  double expand_v = 2.0;          // value head dim V = head_dim * expand_v (must be integral)
  bool use_short_conv = true;
  int64_t conv_size = 4;
  bool conv_bias = false;
  bool use_output_gate = true;    // fla's config key `use_gate`
  bool use_output_correction = true;
  bool use_inner_decay = true;
  double correction_factor = 1.0;
  bool allow_neg_eigval = false;  // beta in (0, 2) instead of (0, 1)
  double hidden_ratio = 4.0;
  int64_t intermediate_size = 0;  // 0 means 256-rounded 2/3 * hidden_ratio * hidden_size
  double norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  std::string attn_mode = "chunk";  // "chunk" or "fused_recurrent"
  int64_t max_position_embeddings = 2048;  // informational (no positional embedding)
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  int64_t pad_token_id = -1;  // -1 means none

  int64_t value_heads() const { return num_v_heads > 0 ? num_v_heads : num_heads; }
  int64_t head_v_dim() const;
  int64_t key_dim() const { return num_heads * head_dim; }
  int64_t value_dim() const { return value_heads() * head_v_dim(); }
  // The MLP width: intermediate_size, or fla's 256-rounded 2/3 * hidden_ratio * hidden_size.
  int64_t mlp_intermediate_size() const;
  // Throws c10::Error naming the field, what was expected and what came.
  void validate() const;
};

}  // namespace comba::nn
