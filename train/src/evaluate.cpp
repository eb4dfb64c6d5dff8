// Full-pass evaluation (see evaluate.h).
#include "comba/train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "comba/nn/labels.h"
#include "comba/train/data/packing.h"

namespace comba::train {
namespace {

// Throws naming the file and token when an id would index past the embedding.
void check_ids(const std::vector<int64_t>& ids, int64_t vocab_size, const FullPassOptions& o,
               const std::string& name, int64_t first_token) {
  if (vocab_size <= 0) return;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      throw std::runtime_error(o.key + ": " + name + ": token " +
                               std::to_string(first_token + static_cast<int64_t>(i)) + " is id " +
                               std::to_string(ids[i]) + ", outside the model's vocabulary (ids must be < " +
                               std::to_string(vocab_size) + ")");
    }
  }
}

}  // namespace

EvalSums full_pass_sums(nn::CombaForCausalLM& model, const ValidationSet& set,
                        const FullPassOptions& o, const torch::Device& device) {
  if (o.seq_len < 2) throw std::invalid_argument(o.key + ": seq_len must be at least 2, got " + std::to_string(o.seq_len));
  if (o.rows < 1) throw std::invalid_argument(o.key + ": batch must be at least 1, got " + std::to_string(o.rows));
  if (o.packed && o.eos_id < 0) throw std::invalid_argument(o.key + ": packed evaluation needs an EOS id");
  const int64_t window = o.packed ? o.rows * o.seq_len : o.seq_len;
  EvalSums total;
  std::vector<int64_t> ids;
  std::vector<int64_t> labels;
  int64_t rows_in_batch = 0;
  // Dense windows shorter than seq_len (a span's tail) are padded; pads are never scored
  // and, the model being causal, change nothing before them.
  const auto flush = [&] {
    if (rows_in_batch == 0) return;
    const EvalSums s = evaluate_sums(model, {make_batch(ids, labels, rows_in_batch, o.seq_len)}, device,
                                     Precision{}, /*accuracy=*/false);
    total.loss_sum += s.loss_sum;
    total.targets += s.targets;
    ids.clear();
    labels.clear();
    rows_in_batch = 0;
  };
  int64_t budget = o.max_tokens > 0 ? o.max_tokens : INT64_MAX;
  int64_t index = 0;  // window number over all spans, for the rank split
  for (size_t s = 0; s < set.spans.size() && budget > 0; ++s) {
    const TokenSpan& span = set.spans[s];
    const std::string& name = s < set.names.size() ? set.names[s] : std::to_string(s);
    const int64_t span_bytes = s < set.text_bytes.size() ? set.text_bytes[s] : -1;
    for (int64_t start = 0; start < span.size && budget > 0; start += window, ++index) {
      const int64_t len = std::min({window, span.size - start, budget});
      budget -= len;
      if (index % o.world != o.rank || len < 2) continue;  // one token predicts nothing
      // The window's share of the span's text; exact once every window of the span is read.
      if (span_bytes < 0) {
        total.text_bytes = -1;
      } else if (total.text_bytes >= 0) {
        total.text_bytes += static_cast<double>(span_bytes) * static_cast<double>(len) / static_cast<double>(span.size);
      }
      std::vector<int64_t> w(len);
      span.copy(start, len, w.data());
      check_ids(w, o.vocab_size, o, name, start);
      if (o.packed) {
        const PackedWindow packed = pack_documents(w, o.eos_id);
        const EvalSums r = evaluate_sums(model, {make_batch(w, packed.labels, 1, len, packed.cu_seqlens)},
                                         device, Precision{}, /*accuracy=*/false);
        total.loss_sum += r.loss_sum;
        total.targets += r.targets;
        continue;
      }
      ids.insert(ids.end(), w.begin(), w.end());
      labels.insert(labels.end(), w.begin(), w.end());
      ids.resize(ids.size() + (o.seq_len - len), 0);
      labels.resize(labels.size() + (o.seq_len - len), nn::kIgnoreIndex);
      if (++rows_in_batch == o.rows) flush();
    }
  }
  flush();
  return total;
}

FullPassResult full_pass_result(const EvalSums& sums, bool bytes) {
  FullPassResult r;
  r.tokens = sums.targets;
  r.loss = sums.loss_sum / static_cast<double>(std::max<int64_t>(1, sums.targets));
  r.perplexity = std::exp(r.loss);
  if (bytes) {
    r.bits_per_byte = r.loss / std::log(2.0);
  } else if (sums.text_bytes > 0) {
    r.bits_per_byte = sums.loss_sum / (std::log(2.0) * sums.text_bytes);
  }
  return r;
}

}  // namespace comba::train
