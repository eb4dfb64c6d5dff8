// Layer workbench: times every piece of one CombaLayer and one CombaBlock at a model shape
// (default: configs/comba-340m.yaml, B8 x T2048), the LM head + cross entropy and one AdamW step over
// the whole model, in each precision mode:
//   bf16           bf16 weights and activations
//   fp32_autocast  fp32 weights, fp32 residual stream, bf16 autocast (the trainer's "bf16")
//   fp32           fp32 everything (opt-in: --modes)
// Pieces with a fused kernel are timed twice: impl "fused" (what the modules run) and
// impl "aten" (the ATen twin). "fwd" is a training forward (grad mode on, graph dropped);
// "fwd+bwd" adds the backward with a fixed random output grad.
//
// One JSON line per case: case, impl, pass, shape, dtype (the mode), device, median_ms,
// min_ms, iters, peak_mib (extra device memory at the peak of one call; null on CPU).
// CUDA times come from CUDA events around each call (after --warmup calls), median over
// --iters calls. `--device cpu --small` runs a tiny shape on the CPU (a smoke test).
//
// --profile CASE runs CASE's fwd+bwd a few times under the Kineto profiler and prints one
// JSON line per kernel name (calls, total and per-call time, share), the heaviest first:
// where a layer's time goes, kernel by kernel. --trace DIR also writes Chrome traces.
//
// The model shape and B x T come from a training config (--config, default
// configs/comba-340m.yaml of the source tree): its model.* keys, batch.micro_batch_size and
// batch.seq_len, so that the bench times what that config trains.
//
// Usage: bench_layer [--device cuda|cpu] [--small] [--config yaml] [--iters N] [--warmup N]
//                    [--filter substring] [--modes bf16,fp32_autocast,fp32] [--model]
//                    [--profile case] [--trace dir] [--debug]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifdef COMBA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime.h>

#include "event_timer.h"
#endif

#include <torch/csrc/autograd/profiler_kineto.h>

#include "comba/core/cli.h"
#include "comba/nn.h"
#include "comba/ops/comba.h"
#include "comba/train/config/config.h"
#include "comba/train/optimizer.h"
#include "comba/train/precision.h"

namespace {

using comba::nn::CombaConfig;
using Tensors = std::vector<torch::Tensor>;

struct Options {
  torch::Device device = torch::kCUDA;
  bool small = false;
  std::string config = COMBA_SOURCE_DIR "/configs/comba-340m.yaml";  // the shape (not with --small)
  int iters = 20;
  int warmup = 3;
  std::string filter;
  std::vector<std::string> modes = {"bf16", "fp32_autocast"};
  bool model = false;  // also time the whole model's forward + backward (slow)
  std::string profile;     // case whose fwd+bwd is profiled kernel by kernel
  std::string trace_dir;   // where Chrome traces of the profiled calls go (empty: none)
};

struct Mode {
  std::string name;
  torch::Dtype weight_dtype;  // parameters
  torch::Dtype act_dtype;     // residual stream / layer input
  bool autocast;
};

Mode mode_named(const std::string& name) {
  if (name == "bf16") return {name, torch::kBFloat16, torch::kBFloat16, false};
  if (name == "fp32_autocast") return {name, torch::kFloat, torch::kFloat, true};
  if (name == "fp32") return {name, torch::kFloat, torch::kFloat, false};
  TORCH_CHECK(false, "bench_layer: unknown mode \"", name, "\" (bf16, fp32_autocast, fp32)");
}

struct Shape {
  int64_t batch, seq_len;
  CombaConfig config;
};

// The model and B x T that a training config describes.
Shape shape_from_config(const std::string& path) {
  const comba::train::TrainConfig config = comba::train::load_config(path);
  return {config.batch.micro_batch_size, config.batch.seq_len, config.model};
}

Shape shape_small() {
  CombaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 64;
  c.num_hidden_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.expand_v = 2.0;
  c.intermediate_size = 128;
  c.tie_word_embeddings = true;
  return {2, 64, c};
}

std::string dims(std::initializer_list<int64_t> d) {
  std::ostringstream out;
  const char* sep = "";
  for (auto v : d) {
    out << sep << v;
    sep = "x";
  }
  return out.str();
}

std::string device_name(const torch::Device& device) {
#ifdef COMBA_WITH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device.index() < 0 ? 0 : device.index()) == cudaSuccess) return prop.name;
  }
#endif
  return device.is_cuda() ? "cuda" : "cpu";
}

// Times calls of fn (setup runs before each call, untimed) and prints one JSON line.
class Bench {
 public:
  explicit Bench(const Options& options) : options_(options), device_name_(device_name(options.device)) {}

  bool wanted(const std::string& name) const {
    return options_.filter.empty() || name.find(options_.filter) != std::string::npos;
  }

  void run(const std::string& name, const std::string& impl, const std::string& pass, const std::string& shape,
           const Mode& mode, const std::function<void()>& fn, const std::function<void()>& setup = {}) {
    if (!wanted(name)) return;
    const auto call = [&] {
      if (setup) setup();
      fn();
    };
    for (int i = 0; i < options_.warmup; ++i) call();
    sync();
    const double peak = peak_mib(call);
    std::vector<double> times;
    for (int i = 0; i < options_.iters; ++i) {
      if (setup) setup();
      times.push_back(time_ms(fn));
    }
    std::sort(times.begin(), times.end());
    std::printf(
        "{\"case\": \"%s\", \"impl\": \"%s\", \"pass\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", "
        "\"device\": \"%s\", \"median_ms\": %.4f, \"min_ms\": %.4f, \"iters\": %d, \"peak_mib\": %s}\n",
        name.c_str(), impl.c_str(), pass.c_str(), shape.c_str(), mode.name.c_str(), device_name_.c_str(),
        times[times.size() / 2], times.front(), options_.iters,
        peak < 0 ? "null" : std::to_string(peak).c_str());
    std::fflush(stdout);
  }

  bool profiling(const std::string& name) const { return options_.profile == name; }

  // Runs fn kProfiledCalls times under the Kineto profiler; prints per-kernel totals (CUDA)
  // or per-op totals (CPU: nested ops overlap, so shares add up past 1), the heaviest first.
  void profile(const std::string& name, const std::string& impl, const Mode& mode, const std::function<void()>& fn,
               const std::function<void()>& setup) {
    namespace prof = torch::autograd::profiler;
    using torch::profiler::impl::ActivityType;
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    constexpr int kProfiledCalls = 3;
    const bool cuda = options_.device.is_cuda();
    const ProfilerConfig config(ProfilerState::KINETO);
    std::set<ActivityType> activities = {ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    prof::prepareProfiler(config, activities);
    prof::enableProfiler(config, activities);
    for (int i = 0; i < kProfiledCalls; ++i) {
      if (setup) setup();
      fn();
    }
    sync();
    const auto result = prof::disableProfiler();
    if (!options_.trace_dir.empty()) result->save(options_.trace_dir + "/" + name + "_" + mode.name + ".json");
    struct Total {
      int64_t calls = 0;
      double ns = 0;
    };
    std::map<std::string, Total> totals;
    double all_ns = 0;
    const auto wanted_device = cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
    for (const auto& e : result->events()) {
      if (e.deviceType() != wanted_device) continue;
      auto& t = totals[e.name().substr(0, 160)];
      t.calls += 1;
      t.ns += static_cast<double>(e.durationNs());
      all_ns += static_cast<double>(e.durationNs());
    }
    std::vector<std::pair<std::string, Total>> sorted(totals.begin(), totals.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    const size_t shown = std::min<size_t>(sorted.size(), 40);
    for (size_t i = 0; i < shown; ++i) {
      const auto& [kernel, t] = sorted[i];
      std::string escaped;
      for (char ch : kernel) {
        if (ch == '"' || ch == '\\') escaped += '\\';
        escaped += ch;
      }
      std::printf(
          "{\"profile\": \"%s\", \"impl\": \"%s\", \"dtype\": \"%s\", \"rank\": %zu, \"kernel\": \"%s\", "
          "\"calls_per_step\": %.1f, \"ms_per_step\": %.4f, \"share\": %.4f}\n",
          name.c_str(), impl.c_str(), mode.name.c_str(), i + 1, escaped.c_str(),
          static_cast<double>(t.calls) / kProfiledCalls, t.ns / 1e6 / kProfiledCalls, all_ns > 0 ? t.ns / all_ns : 0.0);
    }
    std::printf("{\"profile\": \"%s\", \"impl\": \"%s\", \"dtype\": \"%s\", \"kernels\": %zu, "
                "\"device_ms_per_step\": %.4f}\n",
                name.c_str(), impl.c_str(), mode.name.c_str(), totals.size(), all_ns / 1e6 / kProfiledCalls);
    std::fflush(stdout);
  }

 private:
  void sync() const {
#ifdef COMBA_WITH_CUDA
    if (options_.device.is_cuda()) cudaDeviceSynchronize();
#endif
  }

  double time_ms(const std::function<void()>& fn) const {
#ifdef COMBA_WITH_CUDA
    if (options_.device.is_cuda()) {
      sync();
      return comba::bench::EventTimer().time_ms(fn);
    }
#endif
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

  // Extra device memory allocated at the peak of one call, in MiB (-1: not measured).
  double peak_mib(const std::function<void()>& call) const {
#ifdef COMBA_WITH_CUDA
    if (options_.device.is_cuda()) {
      namespace alloc = c10::cuda::CUDACachingAllocator;
      const int dev = options_.device.index() < 0 ? 0 : options_.device.index();
      sync();
      const auto before = alloc::getDeviceStats(dev).allocated_bytes[0].current;
      alloc::resetPeakStats(dev);
      call();
      sync();
      const auto peak = alloc::getDeviceStats(dev).allocated_bytes[0].peak;
      return static_cast<double>(peak - before) / (1 << 20);
    }
#endif
    call();
    return -1.0;
  }

  Options options_;
  std::string device_name_;
};

// Leaf copy of t that requires grad (the input of a timed piece).
torch::Tensor leaf(const torch::Tensor& t) { return t.detach().clone().requires_grad_(true); }

// Times forward_fn alone ("fwd") and with a backward from fixed random output grads
// ("fwd+bwd"). Before each call the grads of `clear` (parameters and input leaves) are
// dropped, as the trainer's zero_grad does.
void fwd_and_bwd(Bench& bench, const std::string& name, const std::string& impl, const std::string& shape,
                 const Mode& mode, const std::function<Tensors()>& forward_fn, const Tensors& clear) {
  if (!bench.wanted(name)) return;
  bench.run(name, impl, "fwd", shape, mode, [&] { forward_fn(); });
  Tensors grads;
  {
    for (const auto& out : forward_fn()) grads.push_back(torch::randn_like(out));
  }
  const auto drop_grads = [&] {
    for (auto t : clear) {
      if (t.defined() && t.grad().defined()) t.mutable_grad() = torch::Tensor();
    }
  };
  const auto step = [&] { torch::autograd::backward(forward_fn(), grads); };
  bench.run(name, impl, "fwd+bwd", shape, mode, step, drop_grads);
  if (bench.profiling(name)) bench.profile(name, impl, mode, step, drop_grads);
}

Tensors parameters_and(const torch::nn::Module& module, Tensors extra) {
  auto params = module.parameters();
  extra.insert(extra.end(), params.begin(), params.end());
  return extra;
}

void bench_layer_pieces(Bench& bench, const Options& options, const Shape& shape, const Mode& mode) {
  using namespace comba::nn;
  using comba::train::AutocastScope;
  const auto& cfg = shape.config;
  const auto device = options.device;
  const int64_t B = shape.batch, T = shape.seq_len, hidden = cfg.hidden_size;
  const int64_t H = cfg.num_heads, K = cfg.head_dim, HV = cfg.value_heads(), V = cfg.head_v_dim();
  const bool ac = mode.autocast;

  torch::manual_seed(0);
  CombaBlock block(cfg, 0);
  init_comba_weights(*block, cfg.initializer_range);
  block->to(device, mode.weight_dtype);
  block->train();
  CombaLayerImpl& L = *block->attn;
  const auto act = torch::TensorOptions().device(device).dtype(mode.act_dtype);
  const auto x = torch::randn({B, T, hidden}, act);

  // The pieces' inputs, produced once by the layer's own modules (so that under autocast
  // each piece sees the dtypes it sees inside the layer).
  torch::Tensor normed, q_lin, k_lin, v_lin, a_lin, b_lin, g_lin, q_conv, k_conv, v_conv;
  {
    torch::NoGradGuard no_grad;
    const AutocastScope autocast(device, ac);
    normed = block->attn_norm(x);
    q_lin = L.q_proj(normed), k_lin = L.k_proj(normed), v_lin = L.v_proj(normed);
    a_lin = L.a_proj(normed), b_lin = L.b_proj(normed), g_lin = L.g_proj(normed);
    q_conv = L.q_conv1d(q_lin).output, k_conv = L.k_conv1d(k_lin).output, v_conv = L.v_conv1d(v_lin).output;
  }
  const auto bt = [&](int64_t c) { return dims({B, T, c}); };

  // RMSNorm over the residual stream (attn_norm / mlp_norm / the model's final norm).
  {
    const auto xin = leaf(x);
    const auto w = block->attn_norm->weight;
    const double eps = block->attn_norm->options.eps();
    fwd_and_bwd(bench, "rms_norm_hidden", "fused", bt(hidden), mode,
                [&] { return Tensors{rms_norm(xin, w, eps)}; }, {xin, w});
    fwd_and_bwd(bench, "rms_norm_hidden", "aten", bt(hidden), mode,
                [&] { return Tensors{rms_norm_aten(xin, w, eps)}; }, {xin, w});
  }

  // Projections (under autocast as in the layer).
  {
    const auto xin = leaf(normed);
    const std::vector<std::pair<const char*, torch::nn::Linear*>> projections = {
        {"q_proj", &L.q_proj}, {"k_proj", &L.k_proj}, {"v_proj", &L.v_proj},
        {"a_proj", &L.a_proj}, {"b_proj", &L.b_proj}, {"g_proj", &L.g_proj}};
    for (const auto& [name, proj] : projections) {
      auto& linear = *proj;
      fwd_and_bwd(bench, name, "", bt(linear->options.out_features()), mode,
                  [&] {
                    const AutocastScope autocast(device, ac);
                    return Tensors{linear(xin)};
                  },
                  {xin, linear->weight});
    }
  }

  // Short convolutions (+ SiLU), fused and ATen.
  {
    const std::vector<std::tuple<const char*, ShortConvolution*, torch::Tensor>> convs = {
        {"q_conv", &L.q_conv1d, q_lin}, {"k_conv", &L.k_conv1d, k_lin}, {"v_conv", &L.v_conv1d, v_lin}};
    for (const auto& [name, conv_ptr, input] : convs) {
      auto& conv = *conv_ptr;
      const auto xin = leaf(input);
      for (const bool fused : {true, false}) {
        fwd_and_bwd(bench, name, fused ? "fused" : "aten", bt(input.size(2)), mode,
                    [&] {
                      const AutocastScope autocast(device, ac);
                      return Tensors{fused ? short_convolution(xin, conv->weight, conv->bias)
                                                 .output
                                           : short_convolution_aten(xin, conv->weight, conv->bias).output};
                    },
                    {xin, conv->weight});
      }
    }
  }

  // p = k sigmoid(decay), q = q - D p, with the layer's casts (mirrors CombaLayerImpl::mix).
  const auto dtype = q_conv.scalar_type();
  torch::Tensor q_op, k_op, v_op, p_op, g_op, beta_op;
  {
    const auto qin = leaf(q_conv), kin = leaf(k_conv);
    const auto correct = [&] {
      const AutocastScope autocast(device, ac);
      const auto q = qin.view({B, T, H, K});
      const auto k = kin.to(dtype).view({B, T, H, K});
      const auto p = (k * torch::sigmoid(L.decay).view({1, 1, H, 1})).to(dtype);
      return Tensors{(q - L.D.view({1, 1, H, 1}) * p).to(dtype), p};
    };
    fwd_and_bwd(bench, "qp_correction", "", dims({B, T, H, K}), mode, correct, {qin, kin, L.decay, L.D});
    torch::NoGradGuard no_grad;
    const auto qp = correct();
    q_op = qp[0], p_op = qp[1], k_op = k_conv.view({B, T, H, K}), v_op = v_conv.to(dtype).view({B, T, HV, V});
  }

  // beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias), in fp32.
  {
    const auto ain = leaf(a_lin), bin = leaf(b_lin);
    const auto gates = [&] {
      const AutocastScope autocast(device, ac);
      const auto f32 = torch::promote_types(mode.act_dtype, torch::kFloat);
      const auto beta = torch::sigmoid(bin.to(f32));
      const auto g = -torch::exp(L.A_log.to(f32)) * torch::softplus(ain.to(f32) + L.dt_bias.to(f32));
      return Tensors{g, beta};
    };
    fwd_and_bwd(bench, "gates", "", dims({B, T, HV}), mode, gates, {ain, bin, L.A_log, L.dt_bias});
    torch::NoGradGuard no_grad;
    const auto gb = gates();
    g_op = gb[0], beta_op = gb[1];
  }

  // The operator (the lead replaces its kernels; timed here for the layer's share).
  torch::Tensor o_op;
  {
    const auto q = leaf(q_op), k = leaf(k_op), v = leaf(v_op), p = leaf(p_op), g = leaf(g_op),
               beta = leaf(beta_op);
    const auto op = [&] {
      return Tensors{std::get<0>(comba::chunk_comba(q, k, v, p, g, beta,
                                                    comba::CombaOptions().use_qk_l2norm_in_kernel(true)))};
    };
    fwd_and_bwd(bench, "chunk_comba", "", dims({B, T, H, K, V}), mode, op, {q, k, v, p, g, beta});
    torch::NoGradGuard no_grad;
    o_op = op()[0];
  }

  // Gated output norm over head_v_dim, fused and ATen.
  torch::Tensor o_normed;
  {
    const auto oin = leaf(o_op), gin = leaf(g_lin.view({B, T, HV, V}));
    const auto w = L.o_norm->weight;
    const double eps = L.o_norm->options.eps();
    for (const bool fused : {true, false}) {
      fwd_and_bwd(bench, "o_norm_gated", fused ? "fused" : "aten", dims({B, T, HV, V}), mode,
                  [&] { return Tensors{fused ? rms_norm(oin, w, eps, gin) : rms_norm_aten(oin, w, eps, gin)}; },
                  {oin, gin, w});
    }
    torch::NoGradGuard no_grad;
    o_normed = rms_norm(o_op, w, eps, g_lin.view({B, T, HV, V})).reshape({B, T, HV * V});
  }

  {
    const auto oin = leaf(o_normed);
    fwd_and_bwd(bench, "o_proj", "", bt(hidden), mode,
                [&] {
                  const AutocastScope autocast(device, ac);
                  return Tensors{L.o_proj(oin)};
                },
                {oin, L.o_proj->weight});
  }

  {
    const auto hin = leaf(normed);
    fwd_and_bwd(bench, "mlp", "", dims({B, T, hidden, cfg.mlp_intermediate_size()}), mode,
                [&] {
                  const AutocastScope autocast(device, ac);
                  return Tensors{block->mlp(hin)};
                },
                parameters_and(*block->mlp, {hin}));
  }

  {
    const auto nin = leaf(normed);
    fwd_and_bwd(bench, "layer", "", bt(hidden), mode,
                [&] {
                  const AutocastScope autocast(device, ac);
                  return Tensors{L.forward(nin)};
                },
                parameters_and(L, {nin}));
    const auto xin = leaf(x);
    fwd_and_bwd(bench, "block", "", bt(hidden), mode,
                [&] {
                  const AutocastScope autocast(device, ac);
                  return Tensors{block->forward(xin)};
                },
                parameters_and(*block, {xin}));
  }
}

void bench_head_and_optimizer(Bench& bench, const Options& options, const Shape& shape, const Mode& mode) {
  using namespace comba::nn;
  using comba::train::AutocastScope;
  const auto& cfg = shape.config;
  const auto device = options.device;
  const int64_t B = shape.batch, T = shape.seq_len;
  if (!bench.wanted("lm_head_ce") && !bench.wanted("adamw") && !(options.model && bench.wanted("model"))) return;

  torch::manual_seed(1);
  CombaForCausalLM lm(cfg);
  lm->to(device, mode.weight_dtype);
  lm->train();
  const auto labels = torch::randint(0, cfg.vocab_size, {B, T}, torch::TensorOptions().device(device).dtype(torch::kLong));

  // LM head (tied: the embedding weight) and the next-token cross entropy: "sliced" is
  // what training runs (linear_cross_entropy), "logits" the logits then the loss.
  {
    const auto h = leaf(torch::randn({B, T, cfg.hidden_size}, torch::TensorOptions().device(device).dtype(mode.act_dtype)));
    const auto w = lm->output_weight();
    const auto targets = labels.slice(1, 1).reshape({-1});
    fwd_and_bwd(bench, "lm_head_ce", "sliced", dims({B, T, cfg.hidden_size, cfg.vocab_size}), mode,
                [&] {
                  const AutocastScope autocast(device, mode.autocast);
                  const auto predicting = h.slice(1, 0, T - 1).reshape({-1, cfg.hidden_size});
                  return Tensors{linear_cross_entropy(predicting, w, targets) / static_cast<double>(targets.numel())};
                },
                {h, w});
    fwd_and_bwd(bench, "lm_head_ce", "logits", dims({B, T, cfg.hidden_size, cfg.vocab_size}), mode,
                [&] {
                  const AutocastScope autocast(device, mode.autocast);
                  return Tensors{causal_lm_loss(torch::nn::functional::linear(h, w), labels)};
                },
                {h, w});
  }

  // The whole model with the loss training uses (summed_next_token_loss: the sliced head).
  if (options.model && bench.wanted("model")) {
    const double targets = static_cast<double>(B * (T - 1));
    fwd_and_bwd(bench, "model", "", dims({B, T, cfg.num_hidden_layers}), mode,
                [&] {
                  const AutocastScope autocast(device, mode.autocast);
                  return Tensors{lm->summed_next_token_loss(labels, LMInputs().labels(labels)) / targets};
                },
                lm->parameters());
  }

  if (!bench.wanted("adamw")) return;
  const auto params = lm->parameters();
  int64_t count = 0;
  for (auto p : params) {
    count += p.numel();
    p.mutable_grad() = 1e-3 * torch::randn_like(p);
  }
  const std::string what = std::to_string(params.size()) + "_tensors_" + std::to_string(count) + "_params";
  // The trainer's optimizer (torch::optim::AdamW, two parameter groups).
  {
    auto optimizer = comba::train::make_optimizer(*lm, comba::train::OptimizerOptions());
    bench.run("adamw_step", "torch_optim", "step", what, mode, [&] { optimizer->step(); });
  }
#ifdef COMBA_WITH_CUDA
  // For comparison: ATen's fused multi-tensor AdamW over the same tensors (CUDA only).
  if (device.is_cuda()) {
    const auto split = comba::train::split_parameters(*lm, /*decay_embeddings=*/false);
    const auto named = lm->named_parameters();
    struct Group {
      Tensors params, grads, exp_avg, exp_avg_sq, steps;
      double weight_decay;
    };
    std::vector<Group> groups;
    for (const auto& [names, wd] : {std::make_pair(split.decay, 0.1), std::make_pair(split.no_decay, 0.0)}) {
      Group g;
      g.weight_decay = wd;
      for (const auto& n : names) {
        const auto p = named[n];
        g.params.push_back(p.detach());
        g.grads.push_back(p.grad());
        g.exp_avg.push_back(torch::zeros_like(p));
        g.exp_avg_sq.push_back(torch::zeros_like(p));
        g.steps.push_back(torch::zeros({}, p.options().dtype(torch::kFloat)));
      }
      groups.push_back(std::move(g));
    }
    bench.run("adamw_step", "aten_fused", "step", what, mode, [&] {
      for (auto& g : groups) {
        at::_fused_adamw_(g.params, g.grads, g.exp_avg, g.exp_avg_sq, {}, g.steps, 1e-3, 0.9, 0.95, g.weight_decay,
                          1e-8, /*amsgrad=*/false, /*maximize=*/false);
      }
    });
  }
#endif
}

int run(const Options& options) {
  if (options.device.is_cuda() && !torch::cuda::is_available()) {
    std::printf("{\"skipped\": \"no CUDA device (use --device cpu --small)\"}\n");
    return 0;
  }
#ifndef COMBA_WITH_CUDA
  if (options.device.is_cuda()) {
    std::printf("{\"skipped\": \"built without CUDA\"}\n");
    return 0;
  }
#endif
  if (options.device.is_cpu()) torch::set_num_threads(std::min(2, torch::get_num_threads()));
  const Shape shape = options.small ? shape_small() : shape_from_config(options.config);
  Bench bench(options);
  for (const auto& name : options.modes) {
    const Mode mode = mode_named(name);
    bench_layer_pieces(bench, options, shape, mode);
    bench_head_and_optimizer(bench, options, shape, mode);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  namespace cli = comba::cli;
  Options options;
  std::string device = "cuda";
  bool debug = false;
  CLI::App app{"Times every piece of a CombaLayer and a CombaBlock, the LM head + loss and the optimizer step.",
               "bench_layer"};
  cli::configure(app);
  app.add_option("--device", device, "cuda, or cpu (with --small: a smoke test)")->check(cli::device_name());
  auto* small = app.add_flag("--small", options.small, "a tiny shape instead of the --config one");
  app.add_option("--config", options.config, "training config whose model.* and batch sizes set the shape")
      ->excludes(small);
  app.add_option("--iters", options.iters, "timed calls per case (median)")
      ->check(cli::integer_at_least(1, std::numeric_limits<int>::max()));
  app.add_option("--warmup", options.warmup, "untimed calls first")
      ->check(cli::integer_at_least(0, std::numeric_limits<int>::max()));
  app.add_option("--filter", options.filter, "only cases whose name contains this");
  app.add_option("--modes", options.modes, "precision modes, comma separated")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(cli::one_of({"bf16", "fp32_autocast", "fp32"}));
  app.add_flag("--model", options.model, "also the whole model's forward + backward (slow)");
  auto* profile = app.add_option("--profile", options.profile, "profile this case's fwd+bwd kernel by kernel");
  app.add_option("--trace", options.trace_dir, "also write Chrome traces of the profiled calls here")->needs(profile);
  cli::add_debug_flag(app, debug);
  if (const auto status = cli::parse(app, argc, argv)) return *status;
  options.device = torch::Device(device);
  try {
    return run(options);
  } catch (const std::exception& e) {
    return cli::report_error("bench_layer", e, debug);
  }
}
