// How much memory a Comba model needs, from its CombaConfig alone (before any tensor
// exists), and the check that it fits the device it is meant for: a config too large for
// the machine is an error naming the bytes needed, the bytes there are and the config keys
// behind the largest part, instead of std::bad_alloc, an allocator abort or the OOM killer.
// All arithmetic is overflow-checked: products beyond int64 are errors naming the keys.
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

#include "comba/nn/config.h"

namespace comba::nn {

// Parameters of CombaForCausalLM(config), by part (CombaModel is all but lm_head).
// In a hybrid config (CombaConfig::attn) the attention layers' blocks hold an Attention
// mixer in place of the CombaLayer: layers = comba_layers x per_layer + attention_layers x
// (MLP + norms) + softmax_attention.
struct ParameterCount {
  int64_t embeddings = 0;           // vocab_size x hidden_size
  int64_t attention_per_layer = 0;  // one CombaLayer
  int64_t mlp_per_layer = 0;        // one CombaMLP: 3 x hidden_size x intermediate size
  int64_t per_layer = 0;            // one Comba block: the CombaLayer, MLP and the two norms
  int64_t comba_layers = 0;         // layers with a CombaLayer (num_hidden_layers - attention_layers)
  int64_t attention_layers = 0;     // layers with softmax Attention (the attn specs' layers)
  int64_t softmax_attention = 0;    // the Attention mixers of all those layers: q, k, v, o (+ qkv biases)
  int64_t layers = 0;               // every block
  int64_t norm = 0;                 // the final norm
  int64_t lm_head = 0;              // vocab_size x hidden_size; 0 when tie_word_embeddings

  int64_t model() const { return embeddings + layers + norm; }  // CombaModel
  int64_t total() const { return model() + lm_head; }            // CombaForCausalLM
};

// Expects a config whose sizes validate() accepts (validate() calls this to refuse configs
// whose counts overflow int64); throws c10::Error naming the keys of a product that does.
ParameterCount count_parameters(const CombaConfig& config);

// Parameters of one Attention layer of `spec` in a model of `config`: q_proj and o_proj
// hidden x hidden, k_proj and v_proj hidden x (num_kv_heads x head_dim), plus the q/k/v
// biases when qkv_bias (fla's Attention; RoPE has none).
int64_t count_attention_parameters(const CombaConfig& config, const AttentionSpec& spec);

// Bytes `device` can hold at most: the physical memory for the CPU; for a GPU, its free
// memory (the driver's) plus what the caching allocator holds unused.
int64_t device_memory_bytes(const c10::Device& device);

// Throws c10::Error when `bytes` exceed device_memory_bytes(device):
// "<what> need N bytes (x GiB) but <device> has M bytes (y GiB)[; <detail>]".
void check_memory_fits(int64_t bytes, const c10::Device& device, const std::string& what,
                       const std::string& detail = "");

// The largest part of `count` with the config keys it grows with, e.g. "embeddings +
// lm_head = 2 x vocab_size x hidden_size = 2 x 1000000000000 x 64".
std::string largest_part(const CombaConfig& config, const ParameterCount& count, bool with_lm_head = true);

// check_memory_fits for the parameters of CombaForCausalLM(config) (CombaModel without
// lm_head when `with_lm_head` is false) in `dtype` on `device`, naming the largest part.
// Validates the config first.
void check_parameters_fit(const CombaConfig& config, c10::ScalarType dtype, const c10::Device& device,
                          bool with_lm_head = true);

// a * b and a + b for non-negative sizes; c10::Error naming `what` when beyond int64.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);
int64_t checked_add(int64_t a, int64_t b, const std::string& what);

}  // namespace comba::nn
