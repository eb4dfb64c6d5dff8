// The tiny model configs of the tests, one family: a base and the variants the suites
// need, each spelled as its change from the base, so that a test says which shape it uses.
#pragma once
#include <cstdint>

#include "comba/nn/config.h"

namespace comba::testing {

// The base: vocab 64, hidden 32, 2 layers, H = 2 heads of K = 16, V = K (HV = H), MLP 64,
// every optional part on, untied: fp64-exact checks in milliseconds.
inline nn::CombaConfig tiny_config() {
  nn::CombaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.num_v_heads = 0;
  c.expand_v = 1.0;
  c.intermediate_size = 64;
  c.initializer_range = 0.02;
  c.tie_word_embeddings = false;
  return c;
}

// The trainer's: the base with `vocab` tokens (the recall task's 48 by default) and the
// MLP width derived from hidden_ratio (256), untied so that lm_head.weight exists for the
// optimizer's parameter-group checks.
inline nn::CombaConfig tiny_train_config(int64_t vocab = 48) {
  nn::CombaConfig c = tiny_config();
  c.vocab_size = vocab;
  c.intermediate_size = 0;
  return c;
}

// The base with every optional part off (short convolutions, output gate, output
// correction, inner decay) and tied embeddings: the fewest tensors a model can have.
inline nn::CombaConfig tiny_bare_config() {
  nn::CombaConfig c = tiny_config();
  c.use_short_conv = false;
  c.use_output_gate = false;
  c.use_output_correction = false;
  c.use_inner_decay = false;
  c.tie_word_embeddings = true;
  return c;
}

// Grouped value heads with a non-integer expand_v and odd sizes (model folders): vocab
// 61, K = 8, HV = 4, V = 12, MLP 48.
inline nn::CombaConfig tiny_gva_config(bool tied = false) {
  nn::CombaConfig c = tiny_config();
  c.vocab_size = 61;
  c.head_dim = 8;
  c.num_v_heads = 4;
  c.expand_v = 1.5;
  c.intermediate_size = 48;
  c.tie_word_embeddings = tied;
  return c;
}

// A hybrid (fla's `attn`): the base with 4 layers, 1 and 3 softmax attention, 0 and 2
// Comba. Layer 1: 4 heads of 8 over 2 key/value heads (GQA) with qkv biases, full causal;
// layer 3: 2 heads of 16, no bias, a 5-token sliding window, rope_theta 500. A list of
// two specs (fla's list form).
inline nn::CombaConfig tiny_hybrid_config() {
  nn::CombaConfig c = tiny_config();
  c.num_hidden_layers = 4;
  nn::AttentionSpec grouped;
  grouped.layers = {1};
  grouped.num_heads = 4;
  grouped.num_kv_heads = 2;
  grouped.qkv_bias = true;
  nn::AttentionSpec windowed;
  windowed.layers = {3};
  windowed.num_heads = 2;
  windowed.window_size = 5;
  windowed.rope_theta = 500.0;
  c.attn = {grouped, windowed};
  c.attn_is_list = true;
  return c;
}

}  // namespace comba::testing
