// Document packing: a flat window of tokens whose documents end with an EOS id becomes
// one row with cu_seqlens boundaries, so that the model runs each document as its own
// sequence. The first token of every later document gets no target: predicting it would
// read the previous document's last position.
#pragma once
#include <cstdint>
#include <vector>

namespace comba::train {

struct PackedWindow {
  std::vector<int64_t> cu_seqlens;  // [N + 1]: 0, ends of documents..., tokens.size()
  std::vector<int64_t> labels;      // tokens with nn::kIgnoreIndex at every document start > 0
};

PackedWindow pack_documents(const std::vector<int64_t>& tokens, int64_t eos_id);

}  // namespace comba::train
