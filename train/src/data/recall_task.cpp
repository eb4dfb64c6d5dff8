// MQAR sequence generator (see recall_task.h).
#include "comba/train/data/recall_task.h"

#include "comba/nn/labels.h"

#include <stdexcept>
#include <string>

namespace comba::train {

TokenSequence make_recall_sequence(const RecallOptions& options, int64_t seq_len,
                                   CounterRng& rng) {
  const int64_t pairs = options.num_pairs;
  if (2 * (pairs + options.num_queries) > seq_len || pairs > options.key_vocab) {
    throw std::invalid_argument("make_recall_sequence: " + std::to_string(pairs) + " pairs and " +
                                std::to_string(options.num_queries) + " queries need seq_len >= " +
                                std::to_string(2 * (pairs + options.num_queries)) +
                                " and key_vocab >= num_pairs");
  }
  TokenSequence seq;
  seq.input_ids.assign(seq_len, 0);
  seq.labels.assign(seq_len, nn::kIgnoreIndex);

  // Distinct keys by a partial Fisher-Yates shuffle of 1..key_vocab.
  std::vector<int64_t> keys(options.key_vocab);
  for (int64_t i = 0; i < options.key_vocab; ++i) keys[i] = 1 + i;
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.below(options.key_vocab - i));
    std::swap(keys[i], keys[j]);
  }
  std::vector<int64_t> values(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    values[i] = 1 + options.key_vocab + static_cast<int64_t>(rng.below(options.value_vocab));
    seq.input_ids[2 * i] = keys[i];
    seq.input_ids[2 * i + 1] = values[i];
  }
  for (int64_t q = 0; q < options.num_queries; ++q) {
    const auto which = static_cast<int64_t>(rng.below(pairs));
    const int64_t at = 2 * (pairs + q);
    seq.input_ids[at] = keys[which];
    seq.input_ids[at + 1] = values[which];
    seq.labels[at + 1] = values[which];
  }
  return seq;
}

}  // namespace comba::train
