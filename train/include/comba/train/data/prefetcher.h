// Builds micro-batches on a background thread, `depth` ahead of the loop, so that the
// device never waits for the host to sample and tokenize. Batches come out in index
// order starting at `start` (the data position of a resumed run); with a DataShard, only
// this rank's share of each step.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "comba/train/data/batch.h"
#include "comba/train/data/data_source.h"

namespace comba::train {

// The micro-batches one rank of a data-parallel run reads. A step takes `stride`
// consecutive global indices (batch.grad_accum_steps); this rank takes the `block` of
// them starting at `offset` (rank * block). Indices stay global, so the data position in
// a checkpoint does not depend on the world size. The default reads everything.
struct DataShard {
  int64_t offset = 0;
  int64_t block = 1;
  int64_t stride = 1;
  // Global index of this rank's k-th micro-batch counted from the global position `start`
  // (a step boundary).
  int64_t global_index(int64_t start, int64_t k) const {
    return start + (k / block) * stride + offset + k % block;
  }
};

class Prefetcher {
 public:
  Prefetcher(const DataSource& source, int64_t start, int64_t depth, bool pin_memory,
             DataShard shard = {});
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next micro-batch (blocks until built); rethrows a failure of the worker.
  Batch next();
  // The global data position to checkpoint (read it at a step boundary): the index of the
  // next step's first micro-batch. Without a shard, the index next() returns next.
  int64_t position() const {
    return start_ + (consumed_ / shard_.block) * shard_.stride + consumed_ % shard_.block;
  }

 private:
  void work();

  const DataSource& source_;
  const int64_t depth_;
  const bool pin_memory_;
  const DataShard shard_;
  const int64_t start_;
  int64_t consumed_ = 0;  // consumer side: batches handed out
  int64_t built_ = 0;     // worker side: batches started
  std::deque<Batch> ready_;
  std::exception_ptr failure_;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread worker_;  // last: starts after every member above exists
};

}  // namespace comba::train
