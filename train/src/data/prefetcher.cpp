// Background batch building (see prefetcher.h).
#include "comba/train/data/prefetcher.h"

#include <torch/torch.h>

namespace comba::train {

Prefetcher::Prefetcher(const DataSource& source, int64_t start, int64_t depth, bool pin_memory,
                       DataShard shard)
    : source_(source),
      depth_(std::max<int64_t>(1, depth)),
      pin_memory_(pin_memory),
      shard_(shard),
      start_(start),
      worker_([this] { work(); }) {}

Prefetcher::~Prefetcher() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void Prefetcher::work() {
  while (true) {
    int64_t index = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] {
        return stopping_ || static_cast<int64_t>(ready_.size()) < depth_;
      });
      if (stopping_) return;
      index = shard_.global_index(start_, built_++);
    }
    try {
      Batch batch = source_.train_batch(index);
      if (pin_memory_) batch = batch.pinned();
      const std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(batch));
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      failure_ = std::current_exception();
      stopping_ = true;
    }
    changed_.notify_all();
  }
}

Batch Prefetcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !ready_.empty() || failure_; });
  if (ready_.empty() && failure_) std::rethrow_exception(failure_);
  Batch batch = std::move(ready_.front());
  ready_.pop_front();
  ++consumed_;
  lock.unlock();
  changed_.notify_all();
  return batch;
}

}  // namespace comba::train
