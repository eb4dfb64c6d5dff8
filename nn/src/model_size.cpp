// Parameter counts from a CombaConfig and the memory check (see model_size.h). The counts
// mirror the modules' constructors (comba_layer.cpp, attention.cpp, mlp.cpp, block.cpp,
// model.cpp, causal_lm.cpp); a test compares them with the modules' own parameters.
#include "comba/nn/model_size.h"

#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#ifdef COMBA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace comba::nn {

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  TORCH_CHECK(!__builtin_mul_overflow(a, b, &out), what, " = ", a, " x ", b, " overflows int64 (at most ",
              INT64_MAX, ")");
  return out;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  TORCH_CHECK(!__builtin_add_overflow(a, b, &out), what, " = ", a, " + ", b, " overflows int64 (at most ",
              INT64_MAX, ")");
  return out;
}

ParameterCount count_parameters(const CombaConfig& c) {
  const std::string prefix = "CombaConfig: the parameter count overflows: ";
  const auto mul = [&](int64_t a, int64_t b, const char* what) { return checked_mul(a, b, prefix + what); };
  const auto add = [&](int64_t a, int64_t b, const char* what) { return checked_add(a, b, prefix + what); };
  const int64_t hidden = c.hidden_size, heads = c.num_heads, v_heads = c.value_heads();
  const int64_t key_dim = mul(heads, c.head_dim, "num_heads x head_dim");
  const int64_t head_v_dim = c.head_v_dim();
  const int64_t value_dim = mul(v_heads, head_v_dim, "num_v_heads x (head_dim x expand_v)");
  const int64_t qk_dims = mul(2, key_dim, "2 x num_heads x head_dim");
  const int64_t qkv_dims = add(qk_dims, value_dim, "q, k and v dims");

  // CombaLayer: q, k, v, a, b, [g], o projections; A_log, dt_bias, [D], [decay]; the
  // short convs; the gated output norm.
  int64_t out_dims = c.use_output_gate ? add(value_dim, value_dim, "g and o dims") : value_dim;
  int64_t projected = add(qkv_dims, out_dims, "projection dims");
  projected = add(projected, mul(2, v_heads, "2 x num_v_heads"), "projection dims");
  int64_t attention = mul(hidden, projected, "hidden_size x (q, k, v, a, b, g, o dims)");
  attention = add(attention, mul(2, v_heads, "A_log and dt_bias"), "attention");
  if (c.use_output_correction) attention = add(attention, heads, "attention");
  if (c.use_inner_decay) attention = add(attention, heads, "attention");
  if (c.use_short_conv) {
    attention = add(attention, mul(qkv_dims, c.conv_size, "(q, k, v dims) x conv_size"), "attention");
    if (c.conv_bias) attention = add(attention, qkv_dims, "attention");
  }
  attention = add(attention, head_v_dim, "attention");

  ParameterCount out;
  out.attention_per_layer = attention;
  out.mlp_per_layer = mul(mul(3, hidden, "3 x hidden_size"), c.mlp_intermediate_size(),
                          "3 x hidden_size x intermediate size (the MLP)");
  const int64_t mlp_and_norms = add(out.mlp_per_layer, mul(2, hidden, "2 x hidden_size"), "one layer");
  out.per_layer = add(attention, mlp_and_norms, "one layer");
  for (const AttentionSpec& spec : c.attn) {
    const int64_t n = static_cast<int64_t>(spec.layers.size());
    out.attention_layers += n;
    out.softmax_attention = add(out.softmax_attention,
                                mul(n, count_attention_parameters(c, spec), "attn layers x their parameters"),
                                "the attention layers");
  }
  out.comba_layers = c.num_hidden_layers - out.attention_layers;
  out.layers = mul(out.comba_layers, out.per_layer, "num_hidden_layers x the parameters of one layer");
  out.layers = add(out.layers, mul(out.attention_layers, mlp_and_norms, "attn layers x (MLP and norms)"), "the layers");
  out.layers = add(out.layers, out.softmax_attention, "the layers");
  out.embeddings = mul(c.vocab_size, hidden, "vocab_size x hidden_size");
  out.norm = hidden;
  out.lm_head = c.tie_word_embeddings ? 0 : out.embeddings;
  add(add(add(out.embeddings, out.layers, "the model"), out.norm, "the model"), out.lm_head, "the model");
  return out;
}

int64_t count_attention_parameters(const CombaConfig& c, const AttentionSpec& spec) {
  const std::string prefix = "CombaConfig: the parameter count overflows: ";
  const auto mul = [&](int64_t a, int64_t b, const char* what) { return checked_mul(a, b, prefix + what); };
  const auto add = [&](int64_t a, int64_t b, const char* what) { return checked_add(a, b, prefix + what); };
  const int64_t hidden = c.hidden_size;
  const int64_t kv_dim = mul(spec.kv_heads(), hidden / std::max<int64_t>(spec.num_heads, 1),
                             "attn num_kv_heads x head dim");
  const int64_t out_dims = add(add(hidden, hidden, "attn q and o dims"), mul(2, kv_dim, "attn k and v dims"),
                               "attn q, k, v and o dims");
  int64_t count = mul(hidden, out_dims, "hidden_size x (attn q, k, v and o dims)");
  if (spec.qkv_bias) count = add(count, add(hidden, mul(2, kv_dim, "attn k and v dims"), "attn biases"), "attn");
  return count;
}

std::string largest_part(const CombaConfig& c, const ParameterCount& count, bool with_lm_head) {
  const bool untied = with_lm_head && count.lm_head > 0;
  const int64_t embeddings = untied ? count.embeddings + count.lm_head : count.embeddings;
  // Each at most count.layers, so no overflow.
  const int64_t mlps = c.num_hidden_layers * count.mlp_per_layer;
  const int64_t attention = count.comba_layers * count.attention_per_layer + count.softmax_attention;
  const std::string L = std::to_string(c.num_hidden_layers), D = std::to_string(c.hidden_size);
  if (embeddings >= mlps && embeddings >= attention) {
    return std::string(untied ? "embeddings + lm_head = 2 x " : "embeddings = ") + "vocab_size x hidden_size = " +
           (untied ? "2 x " : "") + std::to_string(c.vocab_size) + " x " + D;
  }
  if (mlps >= attention) {
    return "MLPs = num_hidden_layers x 3 x hidden_size x intermediate_size = " + L + " x 3 x " + D + " x " +
           std::to_string(c.mlp_intermediate_size()) +
           (c.intermediate_size > 0 ? "" : " (intermediate_size from hidden_ratio)");
  }
  const std::string comba = "attention = num_hidden_layers x " + std::to_string(count.attention_per_layer) +
                            " (hidden_size x the q, k, v, gate and output dims of num_heads, num_v_heads, "
                            "head_dim, expand_v) = " +
                            L + " x " + std::to_string(count.attention_per_layer);
  if (count.attention_layers == 0) return comba;
  return "attention = " + std::to_string(count.comba_layers) + " Comba layers x " +
         std::to_string(count.attention_per_layer) +
         " (hidden_size x the q, k, v, gate and output dims of num_heads, num_v_heads, head_dim, expand_v) + " +
         std::to_string(count.softmax_attention) + " in the " + std::to_string(count.attention_layers) +
         " attn layers (hidden_size x the q, k, v and o dims)";
}

int64_t device_memory_bytes(const c10::Device& device) {
#ifdef COMBA_WITH_CUDA
  if (device.is_cuda()) {
    const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
    const c10::cuda::CUDAGuard guard(index);
    size_t free = 0, total = 0;
    C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    // Memory the caching allocator reserved but no tensor uses is free to this process.
    // Before the process's first CUDA allocation the allocator has no state for the device
    // (its stats query throws) and holds nothing.
    int64_t cached = 0;
    if (c10::cuda::CUDACachingAllocator::get()->initialized()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      cached = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;  // [0]: all pools
    }
    return static_cast<int64_t>(free) + std::max<int64_t>(cached, 0);
  }
#endif
  TORCH_CHECK(device.is_cpu(), "device_memory_bytes: expected a CPU or (in CUDA builds) CUDA device, got ",
              device.str());
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  TORCH_CHECK(pages > 0 && page_size > 0, "device_memory_bytes: sysconf cannot tell the physical memory size");
  return checked_mul(pages, page_size, "physical pages x page size");
}

namespace {

std::string gib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace

void check_memory_fits(int64_t bytes, const c10::Device& device, const std::string& what, const std::string& detail) {
  const int64_t available = device_memory_bytes(device);
  if (bytes <= available) return;
  const std::string where = device.is_cpu() ? "this machine has " : device.str() + " has ";
  const std::string kind = device.is_cpu() ? " of memory" : " free";
  TORCH_CHECK(false, what, " need ", bytes, " bytes (", gib(bytes), ") but ", where, available, " bytes (",
              gib(available), ")", kind, detail.empty() ? "" : "; ", detail);
}

void check_parameters_fit(const CombaConfig& config, c10::ScalarType dtype, const c10::Device& device,
                          bool with_lm_head) {
  config.validate();
  const ParameterCount count = count_parameters(config);
  const int64_t parameters = with_lm_head ? count.total() : count.model();
  const auto element = static_cast<int64_t>(c10::elementSize(dtype));
  const std::string what = with_lm_head ? "CombaForCausalLM" : "CombaModel";
  const int64_t bytes = checked_mul(parameters, element, what + ": parameter bytes (parameters x element size)");
  check_memory_fits(bytes, device,
                    what + ": the parameters (" + std::to_string(parameters) + " x " + std::to_string(element) +
                        " bytes, " + c10::toString(dtype) + ")",
                    "the largest part is " + largest_part(config, count, with_lm_head));
}

}  // namespace comba::nn
