// Document boundaries for packed training (see packing.h).
#include "comba/train/data/packing.h"

#include "comba/nn/labels.h"

namespace comba::train {

PackedWindow pack_documents(const std::vector<int64_t>& tokens, int64_t eos_id) {
  PackedWindow packed;
  packed.labels = tokens;
  packed.cu_seqlens.push_back(0);
  const auto length = static_cast<int64_t>(tokens.size());
  for (int64_t i = 0; i + 1 < length; ++i) {
    if (tokens[i] == eos_id) {
      packed.cu_seqlens.push_back(i + 1);
      packed.labels[i + 1] = nn::kIgnoreIndex;
    }
  }
  packed.cu_seqlens.push_back(length);
  return packed;
}

}  // namespace comba::train
