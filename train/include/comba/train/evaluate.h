// Full-pass evaluation: the loss over every token of a validation set once, in consecutive
// windows (no overlap, the last partial window included), instead of a few random windows.
// Shared by the trainer (eval.full_pass) and comba-eval, so both report the same number.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "comba/nn/causal_lm.h"
#include "comba/train/data/data_source.h"
#include "comba/train/train_step.h"

namespace comba::train {

struct FullPassOptions {
  int64_t seq_len = 0;     // tokens per window; within a window t is scored on t + 1
  int64_t rows = 1;        // windows per forward
  int64_t max_tokens = 0;  // read at most this many tokens (0: all)
  // Documents split at eos_id and run as their own sequences (cu_seqlens): each forward is
  // one row of rows * seq_len tokens, and a document's first token gets no target.
  bool packed = false;
  int64_t eos_id = -1;
  int64_t vocab_size = 0;  // ids are checked against it (0: no check)
  // Data parallel: this process takes windows rank, rank + world, ...; add the EvalSums.
  int rank = 0;
  int world = 1;
  std::string key = "data";  // the flag or config key the spans came from, for messages
};

// Summed loss and targets over this rank's windows (model in eval mode, no gradients).
EvalSums full_pass_sums(nn::CombaForCausalLM& model, const ValidationSet& set,
                        const FullPassOptions& options, const torch::Device& device);

struct FullPassResult {
  int64_t tokens = 0;         // scored targets
  double loss = 0;            // mean token loss (nats)
  double perplexity = 0;      // exp(loss)
  // Byte data: loss / ln 2. Token shards whose headers record their text's byte count:
  // loss_sum / (ln 2 * text bytes read). -1 when unknown.
  double bits_per_byte = -1;
};
FullPassResult full_pass_result(const EvalSums& sums, bool bytes);

}  // namespace comba::train
