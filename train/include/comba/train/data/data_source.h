// Where micro-batches come from. A source is a pure function of the batch index (see
// rng.h): train_batch(i) is the i-th micro-batch of the run, whatever happened before,
// so that a checkpoint stores the data position as one integer and a background thread
// can build batches ahead. Sources are immutable after construction and thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comba/train/data/batch.h"
#include "comba/train/config/data_options.h"
#include "comba/train/data/token_shard.h"

namespace comba::train {

// The validation tokens: spans (a shard, or a held-out byte range of a text file) and the
// file each came from (for messages). `bytes`: each token is one byte of text, so bits per
// byte is the mean loss / ln 2. `text_bytes[i]`: the UTF-8 bytes of text span i encodes
// (a shard's header records it, see token_shard.h), -1 when unknown; empty: all unknown.
struct ValidationSet {
  std::vector<TokenSpan> spans;
  std::vector<std::string> names;
  bool bytes = false;
  std::vector<int64_t> text_bytes;
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual Batch train_batch(int64_t index) const = 0;
  // Evaluation batches: the same fixed set at every evaluation.
  virtual Batch eval_batch(int64_t index) const = 0;
  // Whether eval should report answer accuracy (tasks with one right answer per target).
  virtual bool reports_accuracy() const { return false; }
  // Every validation token, for a full pass (evaluate.h); empty for generated tasks.
  virtual ValidationSet validation_set() const { return {}; }
  virtual std::string describe() const = 0;
};

// Builds the source named by options.kind. vocab_size is the model's (checked against
// what the task needs); eos_id is used when options.eos_id is null.
std::unique_ptr<DataSource> make_data_source(const DataOptions& options,
                                             const BatchOptions& batch, uint64_t seed,
                                             int64_t vocab_size, int64_t eos_id);

}  // namespace comba::train
