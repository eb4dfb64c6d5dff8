// All-gather of small byte strings through a c10d::Store (the TCPStore every rank joins at
// MASTER_ADDR:MASTER_PORT). It carries the host-side agreements of data-parallel training
// (config check, per-step target counts and stop requests, loss sums, the checkpoint to
// resume) and, in store_backend.h, the CPU collectives. Every rank calls all_gather in the
// same order; round n writes "<prefix>/<n>/<rank>" and reads every rank's key of round n.
// Waiting polls with short sleeps, so that a deadline and a failure announced by another
// rank (FailureNotice) both end a wait promptly and with a message naming the ranks.
#pragma once
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace comba::train {

// Another rank failed (and said why through the store): this rank stops too.
class PeerFailureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A rank did not arrive at a collective in time.
class CollectiveTimeoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Set once by the watchdog when another rank announced a failure; every wait checks it.
class FailureNotice {
 public:
  void raise(const std::string& message);
  bool raised() const { return raised_.load(std::memory_order_acquire); }
  std::string message() const;
  void throw_if_raised() const;  // PeerFailureError with the message

 private:
  std::atomic<bool> raised_{false};
  mutable std::mutex mutex_;
  std::string message_;
};

class StoreExchange {
 public:
  // `store` is used only by this object (give each thread its own clone).
  StoreExchange(c10::intrusive_ptr<c10d::Store> store, std::string prefix, int rank,
                int world_size, std::chrono::milliseconds timeout,
                std::shared_ptr<const FailureNotice> notice);

  // Every rank's `mine`, in rank order. `what` names the exchange in errors.
  std::vector<std::string> all_gather(const std::string& mine, const std::string& what);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  std::string key(int64_t round, int rank) const;

  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<const FailureNotice> notice_;
  int64_t round_ = 0;
};

// Waits until every key exists in `store`: polls, checks `notice` between polls, and after
// `timeout` throws CollectiveTimeoutError naming the ranks whose keys are missing
// (`rank_of_key[i]` is the rank that writes keys[i]).
void wait_for_keys(c10d::Store& store, const std::vector<std::string>& keys,
                   const std::vector<int>& rank_of_key, std::chrono::milliseconds timeout,
                   const FailureNotice* notice, const std::string& what);

}  // namespace comba::train
