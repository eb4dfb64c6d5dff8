// The training loop and its setup (see trainer.h).
#include "comba/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>

#include "comba/core/log.h"
#include "comba/io/pretrained.h"
#include "comba/nn/causal_lm.h"
#include "comba/train/checkpoint.h"
#include "comba/train/checkpoint_file.h"
#include "comba/train/data_source.h"
#include "comba/train/file_util.h"
#include "comba/train/loss_plot.h"
#include "comba/train/memory_stats.h"
#include "comba/train/metrics_log.h"
#include "comba/train/optimizer.h"
#include "comba/train/precision.h"
#include "comba/train/prefetcher.h"
#include "comba/train/progress.h"
#include "comba/train/schedule.h"
#include "comba/train/stop_signal.h"

namespace comba::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << v;
  return out.str();
}

// One file sink per log path per process (tests build several trainers).
void add_log_file_once(const std::string& path) {
  static std::mutex mutex;
  static std::set<std::string> added;
  const std::lock_guard<std::mutex> lock(mutex);
  if (added.insert(path).second) log::add_file_sink(path);
}

log::Level level_of(const std::string& name) {
  if (name == "debug") return log::Level::debug;
  if (name == "warn") return log::Level::warn;
  if (name == "error") return log::Level::error;
  return log::Level::info;
}

}  // namespace

struct Trainer::State {
  TrainConfig config;
  ResumeMode resume;
  torch::Device device{torch::kCPU};
  Precision precision;
  nn::CombaForCausalLM model{nullptr};
  std::vector<torch::Tensor> parameters;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<DataSource> data;
  std::unique_ptr<Prefetcher> prefetcher;
  std::vector<Batch> eval_batches;  // host copies, the same every evaluation
  MetricsLog metrics;
  LossCurves curves;
  TrainState train_state;
  TrainSummary summary;
  // Device-side record of the first non-finite step: [step, loss, grad norm], step -1 if none.
  torch::Tensor first_bad;
  torch::Tensor loss_since_log;  // device sum of step losses since the last log line
  int64_t steps_since_log = 0;

  std::string run_dir() const { return config.logging.run_dir; }

  void setup();
  void resume_or_start();
  std::vector<Batch> next_micro_batches();
  void track_finite(const torch::Tensor& loss, const torch::Tensor& grad_norm);
  void check_finite();
  void log_step(double lr, const torch::Tensor& grad_norm, double interval_s,
                int64_t interval_tokens, double eta_s);
  void run_eval();
  void write_checkpoint();
};

Trainer::Trainer(TrainConfig config, ResumeMode resume) : s_(std::make_unique<State>()) {
  s_->config = std::move(config);
  s_->resume = resume;
  s_->setup();
}

Trainer::~Trainer() = default;

void Trainer::State::setup() {
  log::set_level(level_of(config.logging.level));
  make_directories(run_dir());
  add_log_file_once(run_dir() + "/train.log");
  write_file_atomic(run_dir() + "/config.yaml", to_yaml(config));
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));

  device = resolve_device(config.device);
  precision = Precision::from_name(config.precision);
  torch::manual_seed(static_cast<uint64_t>(config.seed));
  if (!config.model_init_from.empty()) {
    config.model = io::read_pretrained_config(config.model_init_from).model;
    write_file_atomic(run_dir() + "/config.yaml", to_yaml(config));
  }
  model = nn::CombaForCausalLM(config.model);
  model->to(device, precision.weight_dtype);
  model->train();
  parameters = model->parameters();
  optimizer = make_optimizer(*model, config.optimizer);
  data = make_data_source(config.data, config.batch, static_cast<uint64_t>(config.seed),
                          config.model.vocab_size, config.model.eos_token_id);
  int64_t n_params = 0;
  for (const auto& p : parameters) n_params += p.numel();
  log::info("run dir " + run_dir() + " | device " + device.str() + " | precision " +
            config.precision + " | " + std::to_string(n_params) + " parameters | " +
            std::to_string(config.batch.tokens_per_step()) + " tokens per step");
  log::info("data: " + data->describe());

  if (!config.train.benchmark) {
    for (int64_t i = 0; i < config.eval.batches; ++i) eval_batches.push_back(data->eval_batch(i));
  }
  const auto dtype = torch::TensorOptions().dtype(torch::kDouble).device(device);
  first_bad = torch::tensor({-1.0, 0.0, 0.0}, dtype);
  loss_since_log = torch::zeros({}, dtype);
  resume_or_start();
  prefetcher = std::make_unique<Prefetcher>(*data, train_state.data_position, config.data.prefetch,
                                            /*pin_memory=*/device.is_cuda());
}

void Trainer::State::resume_or_start() {
  const std::string dir = config.checkpoint_dir();
  const bool has_any = !list_checkpoints(dir).empty();
  const bool want = resume == ResumeMode::required ||
                    (resume == ResumeMode::automatic && config.checkpoint.auto_resume && has_any);
  if (want) {
    std::vector<std::string> skipped;
    const auto loaded = load_latest_checkpoint(dir, *model, *optimizer, &skipped);
    for (const auto& why : skipped) log::warn("skipping checkpoint " + why);
    if (!loaded) {
      std::string text = "cannot resume: no readable checkpoint in " + dir;
      for (const auto& why : skipped) text += "\n  " + why;
      if (!has_any) text += " (the directory has none; start without --resume)";
      else text += "\n(set checkpoint.auto_resume=false or move the directory to start over)";
      throw std::runtime_error(text);
    }
    train_state = loaded->state;
    summary.resumed_from = loaded->path;
    log::info("resumed from " + loaded->path + " at step " + std::to_string(train_state.step));
  } else if (has_any) {
    log::warn("starting over although " + dir + " holds checkpoints");
  }
  if (!want && !config.model_init_from.empty()) {
    io::load_weights(model, config.model_init_from);
    log::info("initialised from " + config.model_init_from);
  }
  summary.start_step = train_state.step;
  // Rewind the metrics to the checkpoint so that the file tells one continuous story.
  metrics = MetricsLog(run_dir() + "/metrics.jsonl", train_state.step);
  std::ifstream previous(run_dir() + "/metrics.jsonl");
  for (std::string line; std::getline(previous, line);) {
    const int64_t step = step_of_json_line(line);
    const std::string type = string_of_json_line(line, "type");
    if (type == "train") curves.train_loss.push_back({step, number_of_json_line(line, "loss")});
    if (type == "eval") {
      curves.eval_loss.push_back({step, number_of_json_line(line, "loss")});
      const double acc = number_of_json_line(line, "accuracy");
      if (std::isfinite(acc)) curves.eval_accuracy.push_back({step, acc});
    }
  }
  curves.title = "Comba " + std::to_string(config.model.num_hidden_layers) + "x" +
                 std::to_string(config.model.hidden_size) + " on " + config.data.kind;
}

std::vector<Batch> Trainer::State::next_micro_batches() {
  std::vector<Batch> micro;
  for (int64_t i = 0; i < config.batch.grad_accum_steps; ++i) {
    micro.push_back(prefetcher->next().to(device));
  }
  return micro;
}

void Trainer::State::track_finite(const torch::Tensor& loss, const torch::Tensor& grad_norm) {
  const auto l = loss.to(torch::kDouble);
  const auto g = grad_norm.to(torch::kDouble);
  const auto bad = (l.isfinite() & g.isfinite()).logical_not() & first_bad[0].lt(0);
  const auto record = torch::stack({torch::full({}, static_cast<double>(train_state.step),
                                                l.options()),
                                    l, g});
  first_bad = torch::where(bad, record, first_bad);
}

void Trainer::State::check_finite() {
  const auto record = first_bad.cpu();
  const auto* r = record.data_ptr<double>();
  if (r[0] < 0) return;
  const auto step = static_cast<int64_t>(r[0]);
  std::ostringstream text;
  text << "non-finite " << (std::isfinite(r[1]) ? "gradient" : "loss") << " at step " << step
       << " (loss " << r[1] << ", gradient norm " << r[2] << "); stopping. ";
  const auto kept = list_checkpoints(config.checkpoint_dir());
  if (kept.empty()) {
    text << "No checkpoint was written before it.";
  } else {
    text << "The last good checkpoint is " << kept.back().second << " (step " << kept.back().first
         << "); lower optimizer.lr or raise train.grad_clip and resume from it.";
  }
  throw NonFiniteError(step, text.str());
}

void Trainer::State::log_step(double lr, const torch::Tensor& grad_norm, double interval_s,
                              int64_t interval_tokens, double eta_s) {
  check_finite();
  const double loss = loss_since_log.item<double>() / static_cast<double>(steps_since_log);
  const double gnorm = grad_norm.item<double>();
  loss_since_log.zero_();
  steps_since_log = 0;
  const double tps = interval_s > 0 ? static_cast<double>(interval_tokens) / interval_s : 0;
  const int64_t step = train_state.step;
  summary.losses.emplace_back(step, loss);
  curves.train_loss.push_back({step, loss});
  ProgressInfo info{step, config.train.max_steps, loss, lr, gnorm, tps, eta_s};
  log::info(format_progress(info, config.logging.progress_bar));
  const JsonLine line = JsonLine()
                            .add("type", "train")
                            .add("step", step)
                            .add("loss", loss)
                            .add("lr", lr)
                            .add("grad_norm", gnorm)
                            .add("tokens", train_state.tokens_seen)
                            .add("tokens_per_s", tps);
  metrics.write(line);
  if (config.train.benchmark) std::cout << line.str() << std::endl;
}

void Trainer::State::run_eval() {
  if (eval_batches.empty()) return;
  check_finite();
  const EvalResult r = evaluate(model, eval_batches, device, precision, data->reports_accuracy());
  summary.last_eval = r;
  const int64_t step = train_state.step;
  JsonLine line = JsonLine().add("type", "eval").add("step", step).add("loss", r.loss);
  std::string text = "eval step " + std::to_string(step) + ": loss " + fixed(r.loss, 4);
  if (r.accuracy >= 0) {
    line.add("accuracy", r.accuracy);
    text += ", accuracy " + fixed(100 * r.accuracy, 1) + "% over " + std::to_string(r.targets) +
            " answers";
    curves.eval_accuracy.push_back({step, r.accuracy});
  }
  metrics.write(line);
  log::info(text);
  curves.eval_loss.push_back({step, r.loss});
  write_loss_svg(run_dir() + "/loss_curve.svg", curves);
}

void Trainer::State::write_checkpoint() {
  check_finite();
  train_state.data_position = prefetcher->position();
  save_checkpoint(config.checkpoint_dir(), train_state, *model, *optimizer,
                  config.checkpoint.keep_last);
  log::info("checkpoint " + checkpoint_path(config.checkpoint_dir(), train_state.step));
}

TrainSummary Trainer::run() {
  State& s = *s_;
  const TrainConfig& c = s.config;
  const StopSignal stop;
  const int64_t tokens_per_step = c.batch.tokens_per_step();
  const bool benchmark = c.train.benchmark;
  const auto run_start = Clock::now();
  auto log_start = run_start;
  auto timed_start = run_start;
  int64_t timed_from = s.train_state.step;
  int64_t tokens_at_log = s.train_state.tokens_seen;
  torch::Tensor grad_norm = torch::zeros({});
  if (benchmark) reset_peak_memory(s.device);

  while (s.train_state.step < c.train.max_steps) {
    // One optimizer step.
    const std::vector<Batch> micro = s.next_micro_batches();
    const double lr = learning_rate_at(c.schedule, s.train_state.step, c.train.max_steps, c.optimizer.lr);
    const torch::Tensor loss = accumulate_gradients(s.model, micro, s.precision);
    grad_norm = clip_gradients(s.parameters, c.train.grad_clip);
    s.track_finite(loss, grad_norm);
    set_learning_rate(*s.optimizer, lr);
    s.optimizer->step();
    s.optimizer->zero_grad(/*set_to_none=*/true);
    s.loss_since_log += loss.to(torch::kDouble);
    ++s.steps_since_log;
    ++s.train_state.step;
    s.train_state.tokens_seen += tokens_per_step;
    const int64_t step = s.train_state.step;
    const bool last = step == c.train.max_steps;

    // Bookkeeping at its own cadences (the only host syncs).
    if (benchmark && step - s.summary.start_step == c.train.benchmark_warmup) {
      s.check_finite();  // a sync: the timed window starts with an idle device
      timed_start = Clock::now();
      timed_from = step;
    }
    if (step % c.logging.interval == 0 || last) {
      const double interval_s = seconds_since(log_start);
      const double per_step = seconds_since(run_start) / static_cast<double>(step - s.summary.start_step);
      s.log_step(lr, grad_norm, interval_s, s.train_state.tokens_seen - tokens_at_log,
                 per_step * static_cast<double>(c.train.max_steps - step));
      log_start = Clock::now();
      tokens_at_log = s.train_state.tokens_seen;
    }
    if (!benchmark && ((c.eval.interval > 0 && step % c.eval.interval == 0) || last)) s.run_eval();
    const bool stop_now = stop.requested() || step == c.train.stop_at_step;
    if (!benchmark && ((c.checkpoint.interval > 0 && step % c.checkpoint.interval == 0) || last ||
                       stop_now)) {
      s.write_checkpoint();
    }
    if (stop_now) {
      log::info(stop.requested() ? "stopping on signal " + std::to_string(stop.signal_number()) +
                                       " after step " + std::to_string(step)
                                 : "stopping at train.stop_at_step " + std::to_string(step));
      s.summary.stopped_early = true;
      break;
    }
  }
  s.check_finite();
  if (s.device.is_cuda()) torch::cuda::synchronize();
  if (!c.checkpoint.export_dir.empty() && !benchmark) {
    io::save_pretrained(s.model, c.checkpoint.export_dir);
    log::info("exported the model to " + c.checkpoint.export_dir);
  }
  TrainSummary& out = s.summary;
  out.final_step = s.train_state.step;
  out.tokens_seen = s.train_state.tokens_seen;
  out.elapsed_s = seconds_since(run_start);
  const int64_t timed_steps = s.train_state.step - timed_from;
  const double timed_s = seconds_since(timed_start);
  if (timed_steps > 0 && timed_s > 0) {
    out.tokens_per_s = static_cast<double>(timed_steps * tokens_per_step) / timed_s;
    out.step_time_ms = 1000.0 * timed_s / static_cast<double>(timed_steps);
  }
  out.peak_memory_gib = peak_memory_bytes(s.device) / (1024.0 * 1024.0 * 1024.0);
  return out;
}

}  // namespace comba::train
