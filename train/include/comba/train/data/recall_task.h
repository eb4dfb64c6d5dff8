// The built-in task: multi-query associative recall (MQAR). A sequence lists key/value
// pairs, then repeats some keys; the model must answer each with its value. It needs no
// download, chance is easy to state (1 / num_pairs when guessing among the values in
// context), and a recurrent-state model visibly learns it in minutes.
#pragma once
#include <cstdint>
#include <vector>

#include "comba/train/config/data_options.h"
#include "comba/train/rng.h"

namespace comba::train {

struct TokenSequence {
  std::vector<int64_t> input_ids;  // [seq_len]
  std::vector<int64_t> labels;     // [seq_len]; labels[t + 1] is the target read at t
};

// One sequence: k1 v1 ... kP vP  q1 a1 ... qQ aQ  pad...; labels hold the answers a_i at
// their own positions and nn::kIgnoreIndex elsewhere. Needs 2 * (P + Q) <= seq_len.
TokenSequence make_recall_sequence(const RecallOptions& options, int64_t seq_len,
                                   CounterRng& rng);

}  // namespace comba::train
