// Store-based all-gather (see store_exchange.h).
#include "comba/train/distributed/store_exchange.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <thread>

namespace comba::train {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

void FailureNotice::raise(const std::string& message) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (raised_.load()) return;
    message_ = message;
  }
  raised_.store(true, std::memory_order_release);
}

std::string FailureNotice::message() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return message_;
}

void FailureNotice::throw_if_raised() const {
  if (raised()) throw PeerFailureError(message());
}

void wait_for_keys(c10d::Store& store, const std::vector<std::string>& keys,
                   const std::vector<int>& rank_of_key, std::chrono::milliseconds timeout,
                   const FailureNotice* notice, const std::string& what) {
  // Polling rather than Store::wait: a deadline and an announced failure must both end
  // the wait, and a check is one round trip. The sleep grows to 2 ms, so a long wait costs
  // little and a short one little latency.
  const auto start = Clock::now();
  auto pause = std::chrono::microseconds(20);
  while (true) {
    if (notice) notice->throw_if_raised();
    if (store.check(keys)) return;
    if (Clock::now() - start > timeout) break;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
  std::string missing;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!store.check({keys[i]})) missing += (missing.empty() ? "" : ", ") + std::to_string(rank_of_key[i]);
  }
  const double seconds = std::chrono::duration<double>(timeout).count();
  throw CollectiveTimeoutError("rank(s) " + missing + " did not reach " + what + " within " +
                               std::to_string(static_cast<int64_t>(seconds)) +
                               " s (distributed.timeout_s); they are stuck or gone, their "
                               "logs say why");
}

StoreExchange::StoreExchange(c10::intrusive_ptr<c10d::Store> store, std::string prefix, int rank,
                             int world_size, std::chrono::milliseconds timeout,
                             std::shared_ptr<const FailureNotice> notice)
    : store_(std::move(store)), prefix_(std::move(prefix)), rank_(rank), world_size_(world_size),
      timeout_(timeout), notice_(std::move(notice)) {}

std::string StoreExchange::key(int64_t round, int rank) const {
  return prefix_ + "/" + std::to_string(round) + "/" + std::to_string(rank);
}

std::vector<std::string> StoreExchange::all_gather(const std::string& mine, const std::string& what) {
  const int64_t round = round_++;
  std::vector<std::string> out(world_size_);
  out[rank_] = mine;
  try {
    // Every rank has read round - 2: it wrote round - 1, which this rank has read.
    if (round >= 2) store_->deleteKey(key(round - 2, rank_));
    store_->set(key(round, rank_), to_bytes(mine));
    std::vector<std::string> keys;
    std::vector<int> ranks;
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      keys.push_back(key(round, r));
      ranks.push_back(r);
    }
    if (keys.empty()) return out;
    wait_for_keys(*store_, keys, ranks, timeout_, notice_.get(), what);
    const auto values = store_->multiGet(keys);
    for (size_t i = 0; i < keys.size(); ++i) out[ranks[i]].assign(values[i].begin(), values[i].end());
  } catch (const c10::DistError& e) {
    if (notice_) notice_->throw_if_raised();
    throw std::runtime_error("the rendezvous store (hosted by rank 0) stopped answering during " +
                             what + ": " + first_line(e.what()) +
                             "; rank 0 has probably exited, its log says why");
  }
  return out;
}

}  // namespace comba::train
