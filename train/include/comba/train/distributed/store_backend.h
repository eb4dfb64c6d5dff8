// CPU collectives for data-parallel training, as a c10d::Backend over the TCPStore.
//
// Why not Gloo: the torch wheel ships ProcessGroupGloo.hpp but not the gloo headers it
// includes, and Debian's libgloo-dev (a 2022 snapshot) lacks the Store methods that
// header overrides, so its classes would not match the gloo inside libtorch_cpu. This
// backend needs nothing beyond the wheel: each collective is one StoreExchange round
// (every rank posts its bytes, reads everyone's), run in order on a worker thread so that
// the gradient all-reduce overlaps the backward pass. Reductions add the ranks' values in
// rank order, so every rank gets the same bits. The data goes through the store host
// (rank 0), which suits tests and small CPU runs, not large models; GPUs use NCCL.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "comba/train/distributed/store_exchange.h"

namespace comba::train {

class StoreBackend final : public c10d::Backend {
 public:
  // `store` is used only by this backend's worker thread.
  StoreBackend(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
               std::chrono::milliseconds timeout, std::shared_ptr<const FailureNotice> notice);
  ~StoreBackend() override;

  const std::string getBackendName() const override { return "comba-store"; }

  // Dense CPU tensors, one per call; SUM, AVG, MIN and MAX.
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;

 private:
  class StoreWork;
  c10::intrusive_ptr<c10d::Work> enqueue(c10d::OpType type, std::vector<at::Tensor> tensors,
                                         std::function<void(StoreExchange&, const std::string&)> run);
  void work_loop();

  StoreExchange exchange_;  // used by the worker thread only
  int64_t next_op_ = 0;     // numbers the operations in messages
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread worker_;  // last: starts after every member above exists
};

}  // namespace comba::train
