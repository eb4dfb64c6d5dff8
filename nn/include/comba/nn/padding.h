// Padding <-> packing: an attention_mask [B, T_mask] (nonzero = token; its last T columns
// apply) turns a padded batch into packed sequences (one per row, tokens in order) with
// cu_seqlens, so that padding never enters a state; outputs go back with zeros at padding.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace comba::nn {

struct Unpadding {
  at::Tensor token_index;  // int64 [total]: flat b * T + t of each token; undefined = no padding
  at::Tensor cu_seqlens;   // int64 [B + 1]; undefined = no padding
  int64_t batch = 0, seq_len = 0;

  bool has_padding() const { return token_index.defined(); }
  // x [B, T, ...] -> [1, total, ...]
  at::Tensor pack(const at::Tensor& x) const;
  // y [1, total, ...] -> [B, T, ...] with zeros at padding
  at::Tensor unpack(const at::Tensor& y) const;
};

// Checks the mask against [B, T] (naming `fn`) and builds the unpadding on `device`.
Unpadding unpad_from_mask(const at::Tensor& attention_mask, int64_t batch, int64_t seq_len,
                          const at::Device& device, const char* fn);

}  // namespace comba::nn
