// A model small enough for exact (fp64) checks in seconds: hidden 32, 2 layers, head_dim 16.
#pragma once
#include "comba/nn/config.h"

namespace comba::train::testing {

inline nn::CombaConfig tiny_model_config(int64_t vocab = 48) {
  nn::CombaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.expand_v = 1.0;
  c.tie_word_embeddings = false;  // so that lm_head.weight exists for the group checks
  return c;
}

}  // namespace comba::train::testing
