// Process group setup, host-side agreements, failure propagation (see distributed.h).
#include "comba/train/distributed/distributed.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "comba/core/log.h"
#include "comba/train/precision.h"
#include "comba/train/distributed/store_backend.h"
#ifdef COMBA_WITH_NCCL
#include "nccl_backend.h"
#endif

namespace comba::train {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kVariables = "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT";
constexpr auto kWatchInterval = milliseconds(100);
// How long a rank that learnt of another's failure may take to stop by itself.
constexpr auto kGrace = std::chrono::seconds(30);
// How long rank 0 keeps the store up after a failure, for the others to read why.
constexpr auto kLinger = std::chrono::seconds(10);

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int int_from_env(const char* name, int min_value, int max_value) {
  const char* v = env_or_null(name);
  if (!v) {
    throw std::invalid_argument(std::string(name) + ": not set (a distributed launch needs " +
                                kVariables + "; torchrun sets them all)");
  }
  char* end = nullptr;
  const long parsed = std::strtol(v, &end, 10);
  if (*end != '\0' || parsed < min_value || parsed > max_value) {
    throw std::invalid_argument(std::string(name) + ": expected an integer in [" +
                                std::to_string(min_value) + ", " + std::to_string(max_value) +
                                "], got \"" + v + "\"");
  }
  return static_cast<int>(parsed);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

milliseconds to_ms(double seconds) { return milliseconds(static_cast<int64_t>(seconds * 1000.0)); }

}  // namespace

DistributedEnv DistributedEnv::from_env() {
  DistributedEnv env;
  const bool has_rank = env_or_null("RANK") != nullptr;
  const bool has_world = env_or_null("WORLD_SIZE") != nullptr;
  if (!has_rank && !has_world) return env;
  env.launched = true;
  env.world_size = int_from_env("WORLD_SIZE", 1, 1 << 20);
  env.rank = int_from_env("RANK", 0, env.world_size - 1);
  env.local_rank = env_or_null("LOCAL_RANK") ? int_from_env("LOCAL_RANK", 0, 1 << 20) : env.rank;
  const char* addr = env_or_null("MASTER_ADDR");
  if (!addr) {
    throw std::invalid_argument(std::string("MASTER_ADDR: not set (a distributed launch needs ") +
                                kVariables + "; torchrun sets them all)");
  }
  env.master_addr = addr;
  env.master_port = int_from_env("MASTER_PORT", 1, 65535);
  const char* agent = env_or_null("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent && std::string(agent) == "True";
  if (const char* attempt = env_or_null("TORCHELASTIC_RESTART_COUNT")) env.attempt = attempt;
  return env;
}

torch::Device device_for_rank(const std::string& name, const DistributedEnv& env) {
  if (!env.launched) return resolve_device(name);
  const bool cuda_index = name.rfind("cuda:", 0) == 0;
  if (cuda_index && env.world_size > 1) {
    throw std::invalid_argument("device: \"" + name + "\" names one GPU for all " +
                                std::to_string(env.world_size) +
                                " ranks; use device: cuda (each rank takes cuda:LOCAL_RANK)");
  }
  if (cuda_index || name == "cpu") return resolve_device(name);
  if (name == "auto" && !torch::cuda::is_available()) return torch::Device(torch::kCPU);
  resolve_device("cuda");  // throws, naming the key, when no GPU is usable
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (env.local_rank >= count) {
    throw std::invalid_argument("LOCAL_RANK " + std::to_string(env.local_rank) + " has no GPU: " +
                                std::to_string(count) +
                                " are visible (start at most that many processes per node)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

struct DistributedContext::Impl {
  DistributedEnv env;
  torch::Device device{torch::kCPU};
  milliseconds timeout{0};
  std::string prefix;
  c10::intrusive_ptr<c10d::TCPStore> tcp;  // the connection (and on rank 0 the server)
  c10::intrusive_ptr<c10d::Store> store;   // prefixed view, main thread only
  std::shared_ptr<FailureNotice> notice = std::make_shared<FailureNotice>();
  std::unique_ptr<StoreExchange> host;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::mutex backend_mutex;  // the watchdog reads `backend` while setup may still assign it

  std::thread watchdog;
  std::mutex watch_mutex;
  std::condition_variable watch_cv;
  bool watch_stop = false;
  bool finished = false;

  // A private connection with this run's key prefix (one per thread).
  c10::intrusive_ptr<c10d::Store> connection() const {
    return c10::make_intrusive<c10d::PrefixStore>(prefix, tcp->clone());
  }
  ~Impl() { stop_watchdog(); }
  void watch();
  void stop_watchdog();
  void leave(milliseconds linger);
  void announce(const std::string& what) noexcept;
  void close_after_failure() noexcept;
};

void DistributedContext::Impl::watch() {
  c10::intrusive_ptr<c10d::Store> own;
  try {
    own = connection();
  } catch (const std::exception& e) {
    log::error("distributed watchdog: cannot connect to the store: " + first_line(e.what()));
    return;
  }
  std::string failure;
  while (failure.empty()) {
    {
      std::unique_lock<std::mutex> lock(watch_mutex);
      if (watch_cv.wait_for(lock, kWatchInterval, [this] { return watch_stop; })) return;
    }
    try {
      if (!own->check({"abort"})) continue;
      const auto bytes = own->get("abort");
      const std::string text(bytes.begin(), bytes.end());
      const auto cut = text.find('\n');
      const std::string from = text.substr(0, cut);
      if (from == std::to_string(env.rank)) return;  // this rank failed and said so itself
      failure = "rank " + from + " failed: " + text.substr(cut + 1);
    } catch (const std::exception& e) {
      failure = "lost the rendezvous store at " + env.master_addr + ":" +
                std::to_string(env.master_port) + " (" + first_line(e.what()) +
                "); its host (rank 0 or torchrun) has exited";
    }
  }
  notice->raise(failure);
  log::error("rank " + std::to_string(env.rank) + " stops: " + failure);
  {
    const std::lock_guard<std::mutex> lock(backend_mutex);
    if (backend) {
      try {
        backend->abort();  // NCCL: pending collectives fail instead of waiting for the dead rank
      } catch (...) {
      }
    }
  }
  {
    std::unique_lock<std::mutex> lock(watch_mutex);
    if (watch_cv.wait_for(lock, kGrace, [this] { return watch_stop; })) return;
  }
  log::error("rank " + std::to_string(env.rank) + " did not stop within " +
             std::to_string(kGrace.count()) + " s of the failure; exiting");
  try {
    own->add("left", 1);
  } catch (...) {
  }
  std::_Exit(1);
}

void DistributedContext::Impl::stop_watchdog() {
  {
    const std::lock_guard<std::mutex> lock(watch_mutex);
    watch_stop = true;
  }
  watch_cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
}

void DistributedContext::Impl::leave(milliseconds linger) {
  // Rank 0 hosts the store: it goes last, or the others' final store calls would fail.
  try {
    const bool hosts = env.rank == 0 && !env.agent_store;
    if (!hosts) {
      store->add("left", 1);
      return;
    }
    const auto deadline = Clock::now() + linger;
    while (store->add("left", 0) < env.world_size - 1 && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
  } catch (...) {
  }
}

DistributedContext::DistributedContext(const DistributedEnv& env, const torch::Device& device,
                                       const DistributedOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.env = env;
  s.device = device;
  s.timeout = to_ms(options.timeout_s);
  s.prefix = "comba/attempt_" + env.attempt + "/";
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0 && !env.agent_store;
  store_options.waitWorkers = false;
  store_options.timeout = s.timeout;
  try {
    s.tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw std::runtime_error(
        std::string(store_options.isServer ? "rank 0 cannot host" : "rank " + std::to_string(env.rank) + " cannot reach") +
        " the rendezvous store at MASTER_ADDR:MASTER_PORT = " + env.master_addr + ":" +
        std::to_string(env.master_port) + ": " + first_line(e.what()));
  }
  s.store = c10::make_intrusive<c10d::PrefixStore>(s.prefix, s.tcp);
  s.host = std::make_unique<StoreExchange>(s.store, "host", env.rank, env.world_size, s.timeout,
                                           s.notice);
  s.watchdog = std::thread([&s] { s.watch(); });
  try {
    // Everyone is here (and agrees on the world size) before the backend starts.
    const auto sizes = s.host->all_gather(std::to_string(env.world_size), "the rendezvous");
    for (int r = 0; r < env.world_size; ++r) {
      if (sizes[r] != std::to_string(env.world_size)) {
        throw std::runtime_error("rank " + std::to_string(r) + " has WORLD_SIZE " + sizes[r] +
                                 ", rank " + std::to_string(env.rank) + " has " +
                                 std::to_string(env.world_size));
      }
    }
    c10::intrusive_ptr<c10d::Backend> backend;
    if (device.is_cuda()) {
#ifdef COMBA_WITH_NCCL
      // Its own connection: NCCL's threads use the store too.
      backend = make_nccl_backend(c10::make_intrusive<c10d::PrefixStore>("nccl/", s.connection()),
                                  env.rank, env.world_size, device, s.timeout);
#else
      throw std::runtime_error("this build has no NCCL support (it was built without the CUDA "
                               "toolkit or nccl.h), so it cannot train on GPUs in several "
                               "processes; rebuild with CUDA, or use device: cpu");
#endif
    } else {
      backend = c10::make_intrusive<StoreBackend>(s.connection(), env.rank, env.world_size,
                                                  s.timeout, s.notice);
    }
    const std::lock_guard<std::mutex> lock(s.backend_mutex);
    s.backend = std::move(backend);
  } catch (const std::exception& e) {
    if (!dynamic_cast<const PeerFailureError*>(&e)) s.announce(e.what());
    s.close_after_failure();
    throw;
  }
}

void DistributedContext::Impl::announce(const std::string& what) noexcept {
  if (notice->raised()) return;  // another rank failed first and has said so
  try {
    if (store->add("abort_count", 1) == 1) {
      const std::string text = std::to_string(env.rank) + "\n" + what;
      store->set("abort", std::vector<uint8_t>(text.begin(), text.end()));
    }
  } catch (...) {
  }
}

void DistributedContext::Impl::close_after_failure() noexcept {
  stop_watchdog();
  // Waits in progress end now, then the backend goes.
  notice->raise("rank " + std::to_string(env.rank) + " is stopping");
  {
    const std::lock_guard<std::mutex> lock(backend_mutex);
    if (backend) {
      try {
        backend->abort();
      } catch (...) {
      }
      backend.reset();
    }
  }
  leave(std::min<milliseconds>(timeout, kLinger));
}

DistributedContext::~DistributedContext() {
  if (!impl_->finished) impl_->close_after_failure();
}

int DistributedContext::rank() const { return impl_->env.rank; }
int DistributedContext::world_size() const { return impl_->env.world_size; }
const torch::Device& DistributedContext::device() const { return impl_->device; }
const c10::intrusive_ptr<c10d::Backend>& DistributedContext::backend() const { return impl_->backend; }

std::string DistributedContext::describe() const {
  const auto& e = impl_->env;
  return "rank " + std::to_string(e.rank) + " of " + std::to_string(e.world_size) + " (local rank " +
         std::to_string(e.local_rank) + "), backend " + impl_->backend->getBackendName() +
         ", store at " + e.master_addr + ":" + std::to_string(e.master_port) +
         (e.agent_store ? " (torchrun's)" : "");
}

std::vector<std::string> DistributedContext::all_gather(const std::string& mine,
                                                        const std::string& what) {
  return impl_->host->all_gather(mine, what);
}

std::vector<std::vector<double>> DistributedContext::all_gather_doubles(
    const std::vector<double>& mine, const std::string& what) {
  const std::string bytes(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(double));
  std::vector<std::vector<double>> out;
  for (const auto& b : all_gather(bytes, what)) {
    std::vector<double> values(b.size() / sizeof(double));
    std::memcpy(values.data(), b.data(), values.size() * sizeof(double));
    out.push_back(std::move(values));
  }
  return out;
}

std::string DistributedContext::broadcast_string(const std::string& value_on_rank0,
                                                 const std::string& what) {
  return all_gather(is_main() ? value_on_rank0 : std::string(), what)[0];
}

void DistributedContext::broadcast_tensors(const std::vector<torch::Tensor>& tensors) {
  const torch::NoGradGuard no_grad;
  // One flat buffer per dtype: one collective each instead of one per tensor.
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_dtype;
  for (const auto& t : tensors) {
    if (t.numel() > 0) by_dtype[t.scalar_type()].push_back(t);
  }
  for (auto& [dtype, group] : by_dtype) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : group) flat_parts.push_back(t.reshape({-1}));
    std::vector<torch::Tensor> flat = {torch::cat(flat_parts)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    impl_->backend->broadcast(flat, options)->wait();
    int64_t offset = 0;
    for (auto& t : group) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

StepAgreement DistributedContext::agree_on_step(int64_t targets, bool stop_requested,
                                                int64_t step) {
  StepAgreement agreed;
  if (impl_->device.is_cuda()) {
    // [targets, stop requests] summed over the ranks in one all-reduce; any request stops.
    std::vector<torch::Tensor> votes = {
        torch::tensor(std::vector<int64_t>{targets, stop_requested ? 1 : 0}, torch::kLong)
            .to(impl_->device)};
    impl_->backend->allreduce(votes)->wait();
    const torch::Tensor sums = votes[0].cpu();
    agreed.step_targets = sums[0].item<int64_t>();
    agreed.stop = sums[1].item<int64_t>() > 0;
    return agreed;
  }
  const auto all = all_gather_doubles(
      {static_cast<double>(targets), stop_requested ? 1.0 : 0.0}, "step " + std::to_string(step));
  for (const auto& v : all) {
    agreed.step_targets += static_cast<int64_t>(v[0]);
    agreed.stop = agreed.stop || v[1] != 0;
  }
  return agreed;
}

void DistributedContext::announce_failure(const std::string& what) noexcept {
  impl_->announce(what);
}

void DistributedContext::finish() {
  Impl& s = *impl_;
  all_gather("", "the end of the run");
  s.stop_watchdog();
  {
    const std::lock_guard<std::mutex> lock(s.backend_mutex);
    try {
      s.backend->shutdown();
    } catch (const std::exception& e) {
      log::warn("distributed backend shutdown: " + first_line(e.what()));
    }
    s.backend.reset();
  }
  s.leave(s.timeout);
  s.finished = true;
}

}  // namespace comba::train
