// Bucketed, overlapped gradient all-reduce (see grad_reducer.h).
#include "comba/train/distributed/grad_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <functional>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include "comba/train/master_weights.h"

namespace comba::train {

struct GradientReducer::Impl {
  struct Slot {
    torch::Tensor param;
    torch::Tensor reduced;  // whose .grad is reduced: param, or its master
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket's flat buffer
    bool ready = false;
  };
  struct Bucket {
    torch::Tensor flat;           // [sum of member numels], the members' dtype and device
    std::vector<size_t> members;  // slot indices
    size_t pending = 0;           // members whose gradient has not arrived this step
    c10::intrusive_ptr<c10d::Work> work;
  };

  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::mutex mutex;  // hooks run on autograd threads
  bool armed = false;
  size_t next_launch = 0;  // buckets are launched in index order
  int64_t launched_by_hooks = 0;

  void on_gradient(size_t index);
  void launch_ready();
};

namespace {

// Runs `ready` after AccumulateGrad has added this backward's gradient into .grad.
class ReadyHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  explicit ReadyHook(std::function<void()> ready) : ready_(std::move(ready)) {}
  void operator()(const torch::autograd::Variable& /*param*/) override { ready_(); }

 private:
  std::function<void()> ready_;
};

}  // namespace

void GradientReducer::Impl::on_gradient(size_t index) {
  const std::lock_guard<std::mutex> lock(mutex);
  if (!armed) return;
  Slot& slot = slots[index];
  if (slot.ready) return;  // a second backward before wait(): its gradient is already in .grad
  slot.ready = true;
  Bucket& bucket = buckets[slot.bucket];
  if (!slot.reduced.is_same(slot.param)) fold_gradient(slot.param, slot.reduced);
  const torch::Tensor grad = slot.reduced.grad();
  bucket.flat.narrow(0, slot.offset, grad.numel()).copy_(grad.reshape({-1}));
  if (--bucket.pending == 0) {
    const size_t before = next_launch;
    launch_ready();
    launched_by_hooks += static_cast<int64_t>(next_launch - before);
  }
}

void GradientReducer::Impl::launch_ready() {
  while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
    Bucket& bucket = buckets[next_launch++];
    std::vector<torch::Tensor> tensors = {bucket.flat};
    bucket.work = backend->allreduce(tensors, c10d::AllreduceOptions());
  }
}

GradientReducer::GradientReducer(const std::vector<torch::Tensor>& parameters,
                                 c10::intrusive_ptr<c10d::Backend> backend, int64_t bucket_bytes,
                                 const std::vector<torch::Tensor>& masters)
    : impl_(std::make_unique<Impl>()) {
  if (!masters.empty() && masters.size() != parameters.size()) {
    throw std::invalid_argument("GradientReducer: expected one master per parameter (" +
                                std::to_string(parameters.size()) + "), got " +
                                std::to_string(masters.size()));
  }
  impl_->backend = std::move(backend);
  std::unordered_set<const void*> seen;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> unique;  // (param, reduced)
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto& p = parameters[i];
    if (p.requires_grad() && seen.insert(p.unsafeGetTensorImpl()).second) {
      unique.emplace_back(p, masters.empty() ? p : masters[i]);
    }
  }
  // Reverse order: the last layers' gradients come first in backward.
  auto& buckets = impl_->buckets;
  int64_t bucket_numel = 0;
  for (auto it = unique.rbegin(); it != unique.rend(); ++it) {
    const torch::Tensor& p = it->second;
    bool start_new = buckets.empty();
    if (!start_new) {
      const torch::Tensor& first = impl_->slots[buckets.back().members.front()].reduced;
      start_new = first.scalar_type() != p.scalar_type() || first.device() != p.device() ||
                  (bucket_numel + p.numel()) * p.element_size() > bucket_bytes;
    }
    if (start_new) {
      buckets.emplace_back();
      bucket_numel = 0;
    }
    Impl::Slot slot;
    slot.param = it->first;
    slot.reduced = p;
    slot.bucket = buckets.size() - 1;
    slot.offset = bucket_numel;
    buckets.back().members.push_back(impl_->slots.size());
    impl_->slots.push_back(slot);
    bucket_numel += p.numel();
  }
  for (auto& bucket : buckets) {
    int64_t numel = 0;
    for (size_t i : bucket.members) numel += impl_->slots[i].param.numel();
    const auto& first = impl_->slots[bucket.members.front()].reduced;
    bucket.flat = torch::zeros({numel}, first.options().requires_grad(false));
  }
  for (size_t i = 0; i < impl_->slots.size(); ++i) {
    const torch::Tensor& p = impl_->slots[i].param;
    if (torch::autograd::impl::post_acc_grad_hooks(p) != nullptr) {
      throw std::logic_error("GradientReducer: a parameter already has a post-accumulate-grad "
                             "hook (two reducers on one model?)");
    }
    Impl* impl = impl_.get();
    torch::autograd::impl::set_post_acc_grad_hooks(
        p, std::make_unique<ReadyHook>([impl, i] { impl->on_gradient(i); }));
  }
}

GradientReducer::~GradientReducer() {
  for (const auto& slot : impl_->slots) {
    torch::autograd::impl::set_post_acc_grad_hooks(slot.param, nullptr);
  }
}

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

int64_t GradientReducer::launched_during_backward() const {
  const std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->launched_by_hooks;
}

void GradientReducer::arm() {
  const std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->armed) throw std::logic_error("GradientReducer::arm: already armed (wait() missing)");
  for (auto& bucket : impl_->buckets) {
    bucket.flat.zero_();  // gradients that never come count as zeros
    bucket.pending = bucket.members.size();
    bucket.work.reset();
  }
  for (auto& slot : impl_->slots) slot.ready = false;
  impl_->next_launch = 0;
  impl_->launched_by_hooks = 0;
  impl_->armed = true;
}

void GradientReducer::wait() {
  Impl& s = *impl_;
  {
    const std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.armed) throw std::logic_error("GradientReducer::wait: not armed");
    for (auto& bucket : s.buckets) bucket.pending = 0;  // late or missing gradients: zeros
    s.launch_ready();
    s.armed = false;
  }
  const torch::NoGradGuard no_grad;
  for (auto& bucket : s.buckets) {
    bucket.work->wait();
    for (size_t i : bucket.members) {
      torch::Tensor& p = s.slots[i].reduced;
      const auto sum = bucket.flat.narrow(0, s.slots[i].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
    }
    bucket.work.reset();
  }
}

}  // namespace comba::train
