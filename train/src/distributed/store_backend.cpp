// CPU collectives over the TCPStore (see store_backend.h).
#include "comba/train/distributed/store_backend.h"

#include <ATen/ATen.h>

#include <cstring>
#include <stdexcept>

namespace comba::train {

class StoreBackend::StoreWork final : public c10d::Work {
 public:
  StoreWork(int rank, c10d::OpType type, std::vector<at::Tensor> tensors)
      : c10d::Work(rank, type), tensors_(std::move(tensors)) {}
  void complete(std::exception_ptr failure) { finish(std::move(failure)); }
  std::vector<at::Tensor> result() override { return tensors_; }

 private:
  std::vector<at::Tensor> tensors_;
};

namespace {

std::string bytes_of(const at::Tensor& t) {
  return {static_cast<const char*>(t.const_data_ptr()), t.nbytes()};
}

// A tensor like `like` holding `bytes` (copied, so alignment is the allocator's).
at::Tensor tensor_of(const std::string& bytes, const at::Tensor& like) {
  TORCH_CHECK(bytes.size() == like.nbytes(), "comba-store: a rank sent ", bytes.size(),
              " bytes for a tensor of ", like.nbytes(), " (the ranks disagree on shapes)");
  at::Tensor t = at::empty_like(like, at::MemoryFormat::Contiguous);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

void check_tensor(const std::vector<at::Tensor>& tensors, const char* op) {
  TORCH_CHECK(tensors.size() == 1, "comba-store ", op, ": expected one tensor, got ", tensors.size());
  const auto& t = tensors[0];
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided, "comba-store ", op,
              ": expected a dense CPU tensor, got ", t.device(), " ", t.layout(),
              " (GPU tensors go through NCCL)");
}

}  // namespace

StoreBackend::StoreBackend(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                           std::chrono::milliseconds timeout,
                           std::shared_ptr<const FailureNotice> notice)
    : c10d::Backend(rank, world_size),
      exchange_(std::move(store), "op", rank, world_size, timeout, std::move(notice)),
      worker_([this] { work_loop(); }) {}

StoreBackend::~StoreBackend() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void StoreBackend::work_loop() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      // Pending jobs still run at shutdown: their works may be waited on. A job whose
      // peers are gone ends through the FailureNotice or its deadline.
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

c10::intrusive_ptr<c10d::Work> StoreBackend::enqueue(
    c10d::OpType type, std::vector<at::Tensor> tensors,
    std::function<void(StoreExchange&, const std::string&)> run) {
  auto work = c10::make_intrusive<StoreWork>(getRank(), type, tensors);
  const std::lock_guard<std::mutex> lock(mutex_);
  const std::string what = c10d::opTypeToString(type) + " #" + std::to_string(next_op_++);
  queue_.emplace_back([this, work, run = std::move(run), what] {
    try {
      run(exchange_, what);
      work->complete(nullptr);
    } catch (...) {
      work->complete(std::current_exception());
    }
  });
  changed_.notify_all();
  return work;
}

c10::intrusive_ptr<c10d::Work> StoreBackend::allreduce(std::vector<at::Tensor>& tensors,
                                                       const c10d::AllreduceOptions& opts) {
  check_tensor(tensors, "allreduce");
  const auto op = opts.reduceOp.op_;
  TORCH_CHECK(op == c10d::ReduceOp::SUM || op == c10d::ReduceOp::AVG ||
                  op == c10d::ReduceOp::MIN || op == c10d::ReduceOp::MAX,
              "comba-store allreduce: only SUM, AVG, MIN and MAX are implemented");
  at::Tensor t = tensors[0];
  return enqueue(c10d::OpType::ALLREDUCE, tensors, [t, op](StoreExchange& ex, const std::string& what) {
    const auto all = ex.all_gather(bytes_of(t.contiguous()), what);
    // Rank order for every rank: the same additions, so the same bits everywhere.
    at::Tensor acc = tensor_of(all[0], t);
    for (size_t r = 1; r < all.size(); ++r) {
      const at::Tensor other = tensor_of(all[r], t);
      if (op == c10d::ReduceOp::MIN) acc = at::minimum(acc, other);
      else if (op == c10d::ReduceOp::MAX) acc = at::maximum(acc, other);
      else acc.add_(other);
    }
    if (op == c10d::ReduceOp::AVG) acc.div_(static_cast<double>(all.size()));
    t.copy_(acc);
  });
}

c10::intrusive_ptr<c10d::Work> StoreBackend::broadcast(std::vector<at::Tensor>& tensors,
                                                       const c10d::BroadcastOptions& opts) {
  check_tensor(tensors, "broadcast");
  const auto root = static_cast<int>(opts.rootRank);
  TORCH_CHECK(root >= 0 && root < getSize(), "comba-store broadcast: root ", root, " out of range");
  at::Tensor t = tensors[0];
  const bool is_root = root == getRank();
  return enqueue(c10d::OpType::BROADCAST, tensors,
                 [t, root, is_root](StoreExchange& ex, const std::string& what) {
                   // Every rank posts (the others an empty string): one full round keeps
                   // the store's key clean-up rule simple (see store_exchange.h).
                   const auto all = ex.all_gather(is_root ? bytes_of(t.contiguous()) : "", what);
                   if (!is_root) t.copy_(tensor_of(all[root], t));
                 });
}

c10::intrusive_ptr<c10d::Work> StoreBackend::barrier(const c10d::BarrierOptions& /*opts*/) {
  return enqueue(c10d::OpType::BARRIER, {},
                 [](StoreExchange& ex, const std::string& what) { ex.all_gather("", what); });
}

}  // namespace comba::train
