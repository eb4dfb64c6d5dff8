// Attention: projections, RoPE, causal (windowed) softmax attention over each sequence,
// output projection. Padded batches are unpacked into packed sequences (cu_seqlens) as in
// CombaLayer, so padding never enters a cache; a decode state holds right-aligned keys and
// values (each row's tokens in its last columns) with a validity mask.
#include "comba/nn/attention.h"

#include "comba/core/checks.h"
#include "comba/nn/padding.h"
#include "comba/nn/rotary.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef COMBA_WITH_CUDA
#include "launch/attention_cuda.h"
#endif

namespace comba::nn {

AttentionOptions AttentionOptions::from_spec(const CombaConfig& config, const AttentionSpec& spec) {
  return AttentionOptions(config.hidden_size, spec.num_heads)
      .num_kv_heads(spec.kv_heads())
      .qkv_bias(spec.qkv_bias)
      .window_size(spec.window_size)
      .rope_theta(spec.rope_theta);
}

AttentionImpl::AttentionImpl(const AttentionOptions& options_) : options(options_) { reset(); }

void AttentionImpl::reset() {
  const auto& o = options;
  const core::ArgChecker check("Attention");
  check.require(o.hidden_size() > 0, "option `hidden_size` expected > 0, got ", o.hidden_size());
  check.require(o.num_heads() > 0, "option `num_heads` expected > 0, got ", o.num_heads());
  check.require(o.hidden_size() % o.num_heads() == 0, "option `num_heads` expected to divide hidden_size = ",
                o.hidden_size(), ", got ", o.num_heads());
  check.require(o.num_kv_heads() >= 0, "option `num_kv_heads` expected >= 0 (0 = num_heads), got ",
                o.num_kv_heads());
  num_kv_heads_ = o.num_kv_heads() > 0 ? o.num_kv_heads() : o.num_heads();
  check.require(o.num_heads() % num_kv_heads_ == 0, "option `num_kv_heads` expected to divide num_heads = ",
                o.num_heads(), ", got ", num_kv_heads_);
  head_dim_ = o.hidden_size() / o.num_heads();
  check.require(head_dim_ % 2 == 0, "option `num_heads` expected an even head_dim = hidden_size / num_heads (RoPE ",
                "rotates pairs), got ", o.hidden_size(), " / ", o.num_heads(), " = ", head_dim_);
  check.require(o.window_size() >= 0, "option `window_size` expected >= 0 (0 = no window), got ",
                o.window_size());
  check.require(o.rope_theta() > 0, "option `rope_theta` expected > 0, got ", o.rope_theta());

  const auto linear = [&](const char* name, int64_t in, int64_t out, bool bias) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)));
  };
  const int64_t kv_dim = num_kv_heads_ * head_dim_;
  q_proj = linear("q_proj", o.hidden_size(), o.hidden_size(), o.qkv_bias());
  k_proj = linear("k_proj", o.hidden_size(), kv_dim, o.qkv_bias());
  v_proj = linear("v_proj", o.hidden_size(), kv_dim, o.qkv_bias());
  o_proj = linear("o_proj", o.hidden_size(), o.hidden_size(), false);
}

namespace {

// The sequences of one call: N rows (the batch rows, or the packed sequences of
// cu_seqlens) and, for packed input, their lengths on the host.
struct Sequences {
  int64_t count = 0;
  std::vector<int64_t> lengths;  // packed only
  int64_t max_length = 0;
};

// Query i may see key j (both positions) when j <= i and, with a window w, j > i - w.
at::Tensor allowed(const at::Tensor& query_pos, const at::Tensor& key_pos, int64_t window) {
  auto mask = key_pos <= query_pos;
  if (window > 0) mask = mask.logical_and(key_pos > query_pos - window);
  return mask;
}

// q [N, H, Tq, D], k and v [N, HKV, Tk, D]; mask bool [N or 1, 1, Tq, Tk] (true = attend)
// or undefined for plain causal (Tq == Tk). Grouped heads: query head h reads kv head
// h / (H / HKV), which repeat_interleave spells.
at::Tensor sdpa(const at::Tensor& q, at::Tensor k, at::Tensor v, const at::Tensor& mask, double scale) {
  const int64_t group = q.size(1) / k.size(1);
  if (q.is_cuda()) {
    return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                            0.0, /*is_causal=*/!mask.defined(), scale, /*enable_gqa=*/group > 1);
  }
  if (group > 1) {
    k = k.repeat_interleave(group, 1);
    v = v.repeat_interleave(group, 1);
  }
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                          0.0, /*is_causal=*/!mask.defined(), scale);
}

// Causal (windowed) attention within one dense block of sequences: q [N, T, H, D], k and
// v [N, T, HKV, D] -> [N, T, H, D].
at::Tensor attend_block(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                        double scale) {
  const int64_t T = q.size(1);
  at::Tensor mask;
  if (window > 0 && window < T) {
    const auto pos = at::arange(T, q.options().dtype(at::kLong));
    mask = allowed(pos.unsqueeze(1), pos.unsqueeze(0), window).view({1, 1, T, T});
  }
  return sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, scale).transpose(1, 2);
}

#ifdef COMBA_WITH_CUDA
// Packed sequences through the flash kernels: x [1, total, heads, D] -> [total, heads, D].
at::Tensor flash_packed(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu_seqlens,
                        int64_t max_length, int64_t window, double scale) {
  return detail::cuda::FlashVarlenFunction::apply(q[0], k[0], v[0], cu_seqlens, max_length, scale,
                                                   window > 0 ? window - 1 : -1)[0];
}
#endif

// Attention without a cache: dense [B, T] (cu_seqlens undefined) or packed [1, total].
at::Tensor attend_fresh(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu_seqlens,
                        const Sequences& seqs, int64_t window, double scale) {
  const int64_t T = q.size(1);
  if (T == 0) return at::zeros_like(q);
#ifdef COMBA_WITH_CUDA
  if (detail::cuda::flash_varlen_supported(q, k, v)) {
    if (cu_seqlens.defined()) {
      return flash_packed(q, k, v, cu_seqlens, seqs.max_length, window, scale).unsqueeze(0);
    }
    if (window > 0 && window < T) {
      // A window on a dense batch: the batch rows as packed sequences of length T.
      const int64_t B = q.size(0);
      const auto flat = [B, T](const at::Tensor& t) { return t.reshape({1, B * T, t.size(2), t.size(3)}); };
      const auto cu = at::arange(0, (B + 1) * T, T, q.options().dtype(at::kInt));
      return flash_packed(flat(q), flat(k), flat(v), cu, T, window, scale).view(q.sizes());
    }
  }
#endif
  if (!cu_seqlens.defined()) return attend_block(q, k, v, window, scale);
  // Packed without the flash kernels: one dense block per sequence.
  std::vector<at::Tensor> outs;
  int64_t start = 0;
  for (const int64_t length : seqs.lengths) {
    if (length > 0) {
      const auto piece = [&](const at::Tensor& t) { return t.narrow(1, start, length); };
      outs.push_back(attend_block(piece(q), piece(k), piece(v), window, scale));
    }
    start += length;
  }
  return outs.empty() ? at::zeros_like(q) : at::cat(outs, 1);
}

// Right-aligned rows of packed tokens: row n holds its lengths[n] tokens in its last
// columns (an Unpadding whose layout is left padding, reused for pack/unpack).
Unpadding right_aligned(const Sequences& seqs, const at::Device& device) {
  std::vector<int64_t> index;
  int64_t total = 0;
  for (const int64_t length : seqs.lengths) total += length;
  index.reserve(static_cast<size_t>(total));
  for (int64_t n = 0; n < seqs.count; ++n) {
    const int64_t length = seqs.lengths[static_cast<size_t>(n)];
    for (int64_t j = 0; j < length; ++j) index.push_back(n * seqs.max_length + seqs.max_length - length + j);
  }
  Unpadding layout;
  layout.batch = seqs.count;
  layout.seq_len = seqs.max_length;
  layout.token_index = at::tensor(index, at::kLong).to(device);
  return layout;
}

// With a window only the last `window` columns can be seen by a later query.
void keep_last_window(at::Tensor& keys, at::Tensor& values, at::Tensor& valid, int64_t window) {
  const int64_t length = keys.size(2);
  if (window <= 0 || length <= window) return;
  keys = keys.narrow(2, length - window, window);
  values = values.narrow(2, length - window, window);
  valid = valid.narrow(1, length - window, window);
}

// The new tokens of a call as right-aligned rows [N, Tn, heads, D], their validity [N, Tn]
// and counts [N]; `layout` packs rows back for packed input.
struct NewTokens {
  at::Tensor q, k, v, valid, lengths;
  Unpadding layout;  // has_padding() only for packed input
};

NewTokens new_tokens(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu_seqlens,
                     const Sequences& seqs) {
  NewTokens out;
  const auto long_opts = q.options().dtype(at::kLong);
  if (cu_seqlens.defined()) {
    out.layout = right_aligned(seqs, q.device());
    out.q = out.layout.unpack(q);
    out.k = out.layout.unpack(k);
    out.v = out.layout.unpack(v);
    out.valid = out.layout.unpack(at::ones({1, q.size(1)}, q.options().dtype(at::kBool)));
    out.lengths = at::tensor(seqs.lengths, at::kLong).to(q.device());
  } else {
    out.q = q;
    out.k = k;
    out.v = v;
    out.valid = at::ones({q.size(0), q.size(1)}, q.options().dtype(at::kBool));
    out.lengths = at::full({seqs.count}, q.size(1), long_opts);
  }
  return out;
}

// Writes the cache [N, HKV, L, D] (right aligned) and the next positions into the state.
void write_state(LayerState& state, at::Tensor keys, at::Tensor values, at::Tensor valid, const at::Tensor& next,
                 int64_t window) {
  keep_last_window(keys, values, valid, window);
  state.key = keys.contiguous();
  state.value = values.contiguous();
  state.key_valid = valid.contiguous();
  state.positions = next;
}

// Attention of the new tokens to the cached keys and to each other. The cache and the new
// rows are concatenated along L; a column's position is counted back from the row's last
// token, so gaps (rows with fewer new tokens than others) need no special case.
at::Tensor attend_cached(LayerState& state, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& cu_seqlens, const Sequences& seqs, const at::Tensor& start,
                         int64_t window, double scale) {
  const core::ArgChecker check("Attention::forward");
  const int64_t N = seqs.count, HKV = k.size(2), D = k.size(3);
  const auto& cache_k = state.key;
  check.require(cache_k.dim() == 4 && cache_k.size(0) == N && cache_k.size(1) == HKV && cache_k.size(3) == D,
                "argument `state` expected key [N = ", N, ", HKV = ", HKV, ", L, D = ", D, "], got shape ",
                cache_k.sizes());
  check.require(state.value.defined() && state.value.sizes() == cache_k.sizes(),
                "argument `state` expected value of key's shape ", cache_k.sizes(), ", got ",
                state.value.defined() ? state.value.sizes() : at::IntArrayRef{});
  const int64_t L = cache_k.size(2);
  at::Tensor cache_valid = state.key_valid;
  if (cache_valid.defined()) {
    check.require(cache_valid.dim() == 2 && cache_valid.size(0) == N && cache_valid.size(1) == L,
                  "argument `state` expected key_valid [N = ", N, ", L = ", L, "], got shape ", cache_valid.sizes());
    cache_valid = cache_valid.to(q.device(), at::kBool);
  } else {
    cache_valid = at::ones({N, L}, q.options().dtype(at::kBool));
  }

  const auto fresh = new_tokens(q, k, v, cu_seqlens, seqs);
  const int64_t Tn = fresh.q.size(1);
  const auto dtype = q.scalar_type();
  auto keys = at::cat({cache_k.to(q.device(), dtype), fresh.k.transpose(1, 2)}, 2);  // [N, HKV, L + Tn, D]
  auto values = at::cat({state.value.to(q.device(), dtype), fresh.v.transpose(1, 2)}, 2);
  auto valid = at::cat({cache_valid, fresh.valid}, 1);  // [N, L + Tn]

  const auto long_opts = q.options().dtype(at::kLong);
  const auto next = start + fresh.lengths;                            // [N]
  const auto after = valid.flip(1).cumsum(1).flip(1);                 // valid columns at or after each
  const auto key_pos = next.unsqueeze(1) - after;                     // [N, L + Tn]
  const auto query_pos = next.unsqueeze(1) - Tn + at::arange(Tn, long_opts).unsqueeze(0);  // [N, Tn]
  auto mask = allowed(query_pos.unsqueeze(2), key_pos.unsqueeze(1), window).logical_and(valid.unsqueeze(1));
  // Padding query slots see everything (their outputs are dropped): no all-masked row.
  mask = mask.logical_or(fresh.valid.logical_not().unsqueeze(2));
  auto o = sdpa(fresh.q.transpose(1, 2), keys, values, mask.unsqueeze(1), scale).transpose(1, 2);  // [N, Tn, H, D]
  if (cu_seqlens.defined()) o = fresh.layout.pack(o);

  const bool gaps = cu_seqlens.defined() &&
                    std::any_of(seqs.lengths.begin(), seqs.lengths.end(), [Tn](int64_t l) { return l < Tn; });
  if (gaps) {
    // Right-align again: a stable sort puts each row's invalid columns first, its tokens
    // after them in order; then drop the columns no row uses.
    // (std::optional spelled out: sort(true, 1) would pick the overload sort(dim, descending).)
    const auto order =
        std::get<1>(valid.to(at::kInt).sort(std::optional<bool>(true), /*dim=*/1, /*descending=*/false));
    const auto by_column = order.view({N, 1, -1, 1}).expand_as(keys);
    keys = keys.gather(2, by_column);
    values = values.gather(2, by_column);
    valid = valid.gather(1, order);
    const int64_t used = valid.sum(1).max().item<int64_t>();
    const int64_t total = valid.size(1);
    keys = keys.narrow(2, total - used, used);
    values = values.narrow(2, total - used, used);
    valid = valid.narrow(1, total - used, used);
  }
  write_state(state, keys, values, valid, next, window);
  return o;
}

}  // namespace

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const CombaLayerInputs& inputs) {
  return mix_without_padding("Attention::forward", x, options.hidden_size(), inputs,
                             [this](const torch::Tensor& tokens, const torch::Tensor& cu_seqlens, LayerState* state) {
                               return attend(tokens, cu_seqlens, state);
                             });
}

torch::Tensor AttentionImpl::attend(const torch::Tensor& x, const torch::Tensor& cu_seqlens, LayerState* state) {
  const core::ArgChecker check("Attention::forward");
  const int64_t B = x.size(0), T = x.size(1), H = options.num_heads(), HKV = num_kv_heads_, D = head_dim_;
  const int64_t window = options.window_size();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));

  Sequences seqs;
  if (cu_seqlens.defined()) {
    check.rank(cu_seqlens, "cu_seqlens", 1, "[N + 1]");
    check.require(B == 1, "argument `cu_seqlens` expected a packed batch B = 1, got x of shape ", x.sizes());
    check.require(cu_seqlens.size(0) >= 2, "argument `cu_seqlens` expected [N + 1] with N >= 1, got shape ",
                  cu_seqlens.sizes());
    const auto cu = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
    const auto* p = cu.data_ptr<int64_t>();
    check.require(p[0] == 0 && p[cu.numel() - 1] == T, "argument `cu_seqlens` expected to run from 0 to T = ", T,
                  ", got ", p[0], " .. ", p[cu.numel() - 1]);
    seqs.count = cu.numel() - 1;
    for (int64_t n = 0; n < seqs.count; ++n) {
      check.require(p[n + 1] >= p[n], "argument `cu_seqlens` expected non-decreasing, got ", p[n], " then ",
                    p[n + 1]);
      seqs.lengths.push_back(p[n + 1] - p[n]);
      seqs.max_length = std::max(seqs.max_length, p[n + 1] - p[n]);
    }
  } else {
    seqs.count = B;
    seqs.max_length = T;
  }

  // RoPE positions: each sequence counts from 0 or from the state's next position.
  const auto long_opts = x.options().dtype(at::kLong);
  at::Tensor start = at::zeros({seqs.count}, long_opts);
  if (state && state->positions.defined()) {
    check.require(state->positions.dim() == 1 && state->positions.size(0) == seqs.count,
                  "argument `state` expected positions [N = ", seqs.count, "], got shape ",
                  state->positions.sizes());
    start = state->positions.to(x.device(), at::kLong);
  }
  at::Tensor positions;  // [B, T]
  if (cu_seqlens.defined()) {
    const auto lengths = at::tensor(seqs.lengths, at::kLong).to(x.device());
    const auto cu = cu_seqlens.to(x.device(), at::kLong);
    const auto offset = (start - cu.narrow(0, 0, seqs.count)).repeat_interleave(lengths, 0, T);
    positions = (at::arange(T, long_opts) + offset).unsqueeze(0);
  } else {
    positions = start.unsqueeze(1) + at::arange(T, long_opts).unsqueeze(0);
  }

  auto q = q_proj(x);
  // Under autocast the projections may differ in dtype from the cache: one dtype, q's.
  const auto dtype = q.scalar_type();
  q = apply_rotary(q.view({B, T, H, D}), positions, options.rope_theta());
  auto k = apply_rotary(k_proj(x).to(dtype).view({B, T, HKV, D}), positions, options.rope_theta());
  auto v = v_proj(x).to(dtype).view({B, T, HKV, D});

  at::Tensor o;
  if (state && state->key.defined()) {
    o = attend_cached(*state, q, k, v, cu_seqlens, seqs, start, window, scale);
  } else {
    o = attend_fresh(q, k, v, cu_seqlens, seqs, window, scale);
    if (state) {
      const auto fresh = new_tokens(q, k, v, cu_seqlens, seqs);
      write_state(*state, fresh.k.transpose(1, 2), fresh.v.transpose(1, 2), fresh.valid, start + fresh.lengths,
                  window);
    }
  }
  return o_proj(o.reshape({B, T, H * D}));
}

}  // namespace comba::nn

