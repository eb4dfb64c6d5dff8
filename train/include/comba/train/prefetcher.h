// Builds micro-batches on a background thread, `depth` ahead of the loop, so that the
// device never waits for the host to sample and tokenize. Batches come out in index
// order starting at `start` (the data position of a resumed run).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "comba/train/batch.h"
#include "comba/train/data_source.h"

namespace comba::train {

class Prefetcher {
 public:
  Prefetcher(const DataSource& source, int64_t start, int64_t depth, bool pin_memory);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next micro-batch (blocks until built); rethrows a failure of the worker.
  Batch next();
  // Index of the batch the next call to next() returns: the data position to checkpoint.
  int64_t position() const { return position_; }

 private:
  void work();

  const DataSource& source_;
  const int64_t depth_;
  const bool pin_memory_;
  int64_t position_;      // consumer side
  int64_t next_to_build_; // worker side
  std::deque<Batch> ready_;
  std::exception_ptr failure_;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread worker_;  // last: starts after every member above exists
};

}  // namespace comba::train
