// The training loop and its setup (see trainer.h).
#include "comba/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
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
#include "comba/nn/model_size.h"
#include "comba/train/checkpoint/checkpoint.h"
#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/train/data/data_source.h"
#include "comba/train/distributed/distributed.h"
#include "comba/core/file_util.h"
#include "comba/train/distributed/grad_reducer.h"
#include "comba/train/evaluate.h"
#include "comba/train/metrics/loss_plot.h"
#include "comba/train/master_weights.h"
#include "comba/train/metrics/memory_stats.h"
#include "comba/train/metrics/metrics_log.h"
#include "comba/train/optimizer.h"
#include "comba/train/precision.h"
#include "comba/train/data/prefetcher.h"
#include "comba/train/metrics/progress.h"
#include "comba/train/checkpoint/run_dir.h"
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

// Refuses, before allocating anything, a run whose model state and batch cannot fit the
// device: the weights, their gradients and AdamW's two moments (all in the weight dtype),
// with master weights the compute copies of the weights and their gradients too, and one
// micro-batch's logits. A lower bound (activations come on top), so a run that would fit
// is never refused.
void check_training_memory(const TrainConfig& config, const Precision& precision, const torch::Device& device) {
  const nn::ParameterCount count = nn::count_parameters(config.model);
  const auto weight = static_cast<int64_t>(c10::elementSize(precision.weight_dtype));
  const auto compute = static_cast<int64_t>(c10::elementSize(precision.compute_dtype));
  const int64_t per_parameter = 4 * weight + (precision.master_weights() ? 2 * compute : 0);
  const int64_t state = nn::checked_mul(count.total(), per_parameter,
                                        "training state bytes (copies x parameters x element size)");
  const auto& b = config.batch;
  const int64_t logits_elements = nn::checked_mul(
      nn::checked_mul(b.micro_batch_size, b.seq_len, "batch.micro_batch_size x batch.seq_len"),
      config.model.vocab_size, "batch.micro_batch_size x batch.seq_len x model.vocab_size");
  const int64_t logit_bytes = compute;
  const int64_t logits = nn::checked_mul(logits_elements, logit_bytes, "the logits' bytes");
  const int64_t total = nn::checked_add(state, logits, "training bytes");
  nn::check_memory_fits(
      total, device, "training (" + config.precision + "): the weights, gradients, AdamW moments and logits",
      "weights, gradients and 2 AdamW moments: 4 x " + std::to_string(count.total()) + " parameters x " +
          std::to_string(weight) + " bytes" +
          (precision.master_weights() ? " + their compute copies and gradients: 2 x " +
                                            std::to_string(count.total()) + " x " + std::to_string(compute) + " bytes"
                                      : std::string()) +
          " = " + std::to_string(state) + " bytes (the largest part is " +
          nn::largest_part(config.model, count) + "); one micro-batch's logits: batch.micro_batch_size x " +
          "batch.seq_len x model.vocab_size = " + std::to_string(b.micro_batch_size) + " x " +
          std::to_string(b.seq_len) + " x " + std::to_string(config.model.vocab_size) + " x " +
          std::to_string(logit_bytes) + " bytes = " + std::to_string(logits) + " bytes");
}

log::Level level_of(const std::string& name) {
  if (name == "debug") return log::Level::debug;
  if (name == "warn") return log::Level::warn;
  if (name == "error") return log::Level::error;
  return log::Level::info;
}

// Sums in rank order (the same additions on every rank).
std::vector<double> sum_over_ranks(const std::vector<std::vector<double>>& all) {
  std::vector<double> total = all.front();
  for (size_t r = 1; r < all.size(); ++r) {
    for (size_t i = 0; i < total.size(); ++i) total[i] += all[r][i];
  }
  return total;
}

// The clocks and counters behind the log lines' speed and ETA and the benchmark's window.
struct RunClock {
  Clock::time_point run_start = Clock::now();
  Clock::time_point log_start = run_start;
  Clock::time_point timed_start = run_start;
  int64_t timed_from = 0;     // the step the timed window starts after
  int64_t tokens_at_log = 0;  // tokens seen at the last log line
};

}  // namespace

struct Trainer::State {
  TrainConfig config;
  ResumeMode resume;
  RunDirLock lock;  // rank 0: this process is the run directory's only writer
  DistributedEnv env;
  std::unique_ptr<DistributedContext> dist;  // null: one plain process
  torch::Device device{torch::kCPU};
  Precision precision;
  nn::CombaForCausalLM model{nullptr};
  Architecture architecture;  // recorded in every checkpoint, compared on resume
  std::vector<torch::Tensor> parameters;
  // bf16: the fp32 masters of the bf16 parameters (null otherwise); the optimizer, the
  // clipping and the reducer's sums work on `optimized`: the masters, or the parameters.
  std::unique_ptr<MasterWeights> masters;
  std::vector<torch::Tensor> optimized;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<GradientReducer> reducer;  // with dist; destroyed before it
  int64_t local_accum = 1;                   // this rank's micro-batches per step
  std::unique_ptr<DataSource> data;
  std::unique_ptr<Prefetcher> prefetcher;
  std::vector<Batch> eval_batches;  // host copies, the same every evaluation (this rank's share)
  ValidationSet val_set;            // eval.full_pass: every validation token
  bool evaluates = false;
  MetricsLog metrics;
  LossCurves curves;
  TrainState train_state;
  TrainSummary summary;
  // Device-side record of the first non-finite step: [step, loss, grad norm], step -1 if none.
  torch::Tensor first_bad;
  torch::Tensor loss_since_log;  // device sum of step losses since the last log line
  int64_t steps_since_log = 0;
  std::function<void(int64_t)> on_step;

  std::string run_dir() const { return config.logging.run_dir; }
  bool is_main() const { return !dist || dist->is_main(); }

  void setup();
  void join_group();
  TrainSummary run();
  void announce(const std::exception& e);
  void resume_or_start();
  void choose_and_restore(const std::string& dir, bool has_any, bool want);
  std::vector<Batch> next_micro_batches();
  StepAgreement agree_on_step(const std::vector<Batch>& micro, const StopSignal& stop);
  torch::Tensor accumulate(const std::vector<Batch>& micro, const StepAgreement& agreed);
  torch::Tensor reduce_clip_and_step(const torch::Tensor& loss, double lr);
  int64_t count_step(const torch::Tensor& loss);
  void log_and_evaluate(RunClock& clock, double lr, const torch::Tensor& grad_norm);
  std::string stop_reason(const StepAgreement& agreed, const StopSignal& stop) const;
  void checkpoint_if_due(bool stopping);
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
  try {
    s_->setup();
  } catch (const std::exception& e) {
    s_->announce(e);
    throw;
  }
}

Trainer::~Trainer() = default;

void Trainer::on_step(std::function<void(int64_t step)> callback) { s_->on_step = std::move(callback); }

nn::CombaForCausalLM Trainer::model() const { return s_->model; }

void Trainer::State::announce(const std::exception& e) {
  // Collective outcomes (a non-finite step) and failures learnt from another rank are
  // known everywhere already.
  if (!dist || dynamic_cast<const PeerFailureError*>(&e) ||
      dynamic_cast<const NonFiniteError*>(&e)) {
    return;
  }
  dist->announce_failure(e.what());
}

void Trainer::State::join_group() {
  const int world = env.world_size;
  if (config.batch.grad_accum_steps % world != 0) {
    throw std::invalid_argument(
        "batch.grad_accum_steps: expected a multiple of the world size " + std::to_string(world) +
        ", got " + std::to_string(config.batch.grad_accum_steps) +
        " (a step's grad_accum_steps micro-batches of micro_batch_size are split evenly over "
        "the ranks; set grad_accum_steps to a multiple of " + std::to_string(world) +
        " and micro_batch_size to the per-rank size)");
  }
  local_accum = config.batch.grad_accum_steps / world;
  dist = std::make_unique<DistributedContext>(env, device, config.distributed);
  log::info("data parallel: " + dist->describe() + "; " + std::to_string(local_accum) +
            " micro-batch(es) of " + std::to_string(config.batch.micro_batch_size) +
            " per rank and step");
  const auto configs = dist->all_gather(to_yaml(config), "the config check");
  for (int r = 1; r < world; ++r) {
    if (configs[r] == configs[0]) continue;
    std::istringstream a(configs[0]);
    std::istringstream b(configs[r]);
    std::string la;
    std::string lb;
    while (std::getline(a, la) && std::getline(b, lb) && la == lb) {
    }
    throw std::runtime_error("rank " + std::to_string(r) +
                             " runs another config than rank 0 (every rank must run the same); "
                             "rank 0 has \"" + la + "\", rank " + std::to_string(r) + " has \"" +
                             lb + "\"");
  }
}

void Trainer::State::setup() {
  env = DistributedEnv::from_env();
  log::Level level = level_of(config.logging.level);
  // Only rank 0 logs; the others still report warnings and errors.
  if (env.rank != 0 && level < log::Level::warn) level = log::Level::warn;
  log::set_level(level);
  if (env.rank == 0) {
    // Every folder the run will write is tried now, not at the first checkpoint (when the
    // work done so far would be lost); then the run directory is locked for this process.
    check_writable_dir("logging.run_dir", run_dir());
    lock = RunDirLock("logging.run_dir", run_dir());
    add_log_file_once(run_dir() + "/train.log");
    if (!config.train.benchmark) {
      check_writable_dir("checkpoint.dir", config.checkpoint_dir());
      if (!config.checkpoint.export_dir.empty()) {
        check_writable_dir("checkpoint.export_dir", config.checkpoint.export_dir);
      }
    }
  }
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));

  device = device_for_rank(config.device, env);
  precision = Precision::from_name(config.precision);
  local_accum = config.batch.grad_accum_steps;
  if (env.launched) join_group();
  torch::manual_seed(static_cast<uint64_t>(config.seed));
  if (!config.model_init_from.empty()) {
    config.model = io::read_pretrained_config(config.model_init_from).model;
  }
  architecture = model_architecture(config);
  check_training_memory(config, precision, device);
  model = nn::CombaForCausalLM(config.model);
  model->to(device, precision.weight_dtype);
  model->train();
  model->model->set_recompute(nn::parse_recompute(config.train.recompute, "train.recompute"));
  if (config.train.split_length > 0) model->model->set_split_length(config.train.split_length);
  parameters = model->parameters();
  if (precision.master_weights()) {
    masters = std::make_unique<MasterWeights>(model->named_parameters(), precision.compute_dtype);
    optimized = masters->masters();
    optimizer = make_optimizer(masters->named_masters(), config.optimizer);
  } else {
    optimized = parameters;
    optimizer = make_optimizer(*model, config.optimizer);
  }
  data = make_data_source(config.data, config.batch, static_cast<uint64_t>(config.seed),
                          config.model.vocab_size, config.model.eos_token_id);
  int64_t n_params = 0;
  for (const auto& p : parameters) n_params += p.numel();
  log::info("run dir " + run_dir() + " | device " + device.str() + " | precision " +
            config.precision + " | " + std::to_string(n_params) + " parameters | " +
            std::to_string(config.batch.tokens_per_step()) + " tokens per step");
  log::info("data: " + data->describe());

  evaluates = !config.train.benchmark && (config.eval.batches > 0 || config.eval.full_pass);
  if (evaluates && config.eval.full_pass) {
    val_set = data->validation_set();
    if (val_set.spans.empty()) {
      throw std::invalid_argument("eval.full_pass: data.kind \"" + config.data.kind +
                                  "\" has no validation files (expected shards or bytes)");
    }
  } else if (evaluates) {
    // Each rank evaluates every world_size-th batch; the sums are added at eval time.
    const int world = dist ? dist->world_size() : 1;
    const int rank = dist ? dist->rank() : 0;
    for (int64_t i = rank; i < config.eval.batches; i += world) eval_batches.push_back(data->eval_batch(i));
  }
  const auto dtype = torch::TensorOptions().dtype(torch::kDouble).device(device);
  first_bad = torch::tensor({-1.0, 0.0, 0.0}, dtype);
  loss_since_log = torch::zeros({}, dtype);
  {
    // Checkpoints and model.init_from hold fp32 weights: with masters they are read into
    // the masters (the bf16 parameters follow when the scope ends).
    std::optional<MasterWeights::Exposed> exposed;
    if (masters) exposed.emplace(*masters);
    resume_or_start();
  }
  DataShard shard;
  if (dist) {
    // Identical weights everywhere from the first step on (rank 0's), then the hooks.
    std::vector<torch::Tensor> state = optimized;
    for (const auto& b : model->buffers()) state.push_back(b);
    dist->broadcast_tensors(state);
    if (masters) masters->copy_to_model();
    const auto bucket_bytes = static_cast<int64_t>(config.distributed.bucket_mb * 1024 * 1024);
    reducer = masters ? std::make_unique<GradientReducer>(masters->parameters(), dist->backend(), bucket_bytes,
                                                          masters->masters())
                      : std::make_unique<GradientReducer>(parameters, dist->backend(), bucket_bytes);
    shard.offset = dist->rank() * local_accum;
    shard.block = local_accum;
    shard.stride = config.batch.grad_accum_steps;
  }
  prefetcher = std::make_unique<Prefetcher>(*data, train_state.data_position, config.data.prefetch,
                                            /*pin_memory=*/device.is_cuda(), shard);
}

void Trainer::State::resume_or_start() {
  const std::string dir = config.checkpoint_dir();
  // Rank 0 chooses (and may move damaged files aside); the others restore the same file.
  bool want = false;
  if (is_main()) {
    const bool has_any = !list_checkpoints(dir).empty();
    want = resume == ResumeMode::required ||
           (resume == ResumeMode::automatic && config.checkpoint.auto_resume && has_any);
    choose_and_restore(dir, has_any, want);
  }
  if (dist) {
    const std::string chosen = dist->broadcast_string(summary.resumed_from, "the choice of checkpoint");
    want = !chosen.empty();
    if (!is_main() && want) {
      try {
        train_state = load_checkpoint(chosen, *model, *optimizer, architecture).state;
      } catch (const std::exception& e) {
        throw std::runtime_error("rank " + std::to_string(dist->rank()) +
                                 " cannot restore the checkpoint rank 0 resumes from: " +
                                 e.what() + " (every rank must see checkpoint.dir)");
      }
      summary.resumed_from = chosen;
    }
  }
  if (!want && !config.model_init_from.empty()) {
    io::load_weights(model, config.model_init_from);
    log::info("initialised from " + config.model_init_from);
  }
  summary.start_step = train_state.step;
  curves.title = "Comba " + std::to_string(config.model.num_hidden_layers) + "x" +
                 std::to_string(config.model.hidden_size) + " on " + config.data.kind;
  if (!is_main()) return;
  // Written only now: a resume refused above leaves the saved run's config in place.
  write_file_atomic(run_dir() + "/config.yaml", to_yaml(config));
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
}

void Trainer::State::choose_and_restore(const std::string& dir, bool has_any, bool want) {
  if (want) {
    std::vector<std::string> skipped;
    std::optional<LoadedCheckpoint> loaded;
    try {
      loaded = load_latest_checkpoint(dir, *model, *optimizer, &skipped, architecture);
    } catch (const CheckpointMismatch& e) {
      throw CheckpointMismatch(
          std::string("cannot resume: ") + e.what() +
          ". Resume with the run's model settings (its config.yaml), or start a new run with "
          "--no-resume (the old run is then moved into a previous-<N> folder of " + run_dir() +
          ")");
    }
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
  } else {
    // A fresh start: an earlier run left here would outlive it (its higher step numbers
    // win the next resume and make keep_last delete the new checkpoints) and share its
    // metrics. It is moved aside whole, not deleted.
    const std::string moved = move_previous_run_aside(run_dir(), dir);
    if (!moved.empty()) log::warn(moved);
  }
}

std::vector<Batch> Trainer::State::next_micro_batches() {
  std::vector<Batch> micro;
  for (int64_t i = 0; i < local_accum; ++i) {
    micro.push_back(prefetcher->next().to(device));
  }
  return micro;
}

void Trainer::State::track_finite(const torch::Tensor& loss, const torch::Tensor& grad_norm) {
  const auto l = loss.to(torch::kDouble);
  const auto g = grad_norm.to(torch::kDouble);
  const auto bad = (l.isfinite() & g.isfinite()).logical_not() & first_bad[0].lt(0);
  // Called before the step counter moves on: the step being taken is train_state.step + 1
  // (steps count from 1, as in the logs and checkpoint names).
  const auto record = torch::stack({torch::full({}, static_cast<double>(train_state.step + 1),
                                                l.options()),
                                    l, g});
  first_bad = torch::where(bad, record, first_bad);
}

void Trainer::State::check_finite() {
  const auto record = first_bad.cpu();
  std::vector<double> r(record.data_ptr<double>(), record.data_ptr<double>() + 3);
  std::string where;
  if (dist) {
    // Every rank takes the same decision: the earliest bad step of any rank, named after
    // a rank whose own loss went bad if there is one (the all-reduce spreads a NaN
    // gradient to every rank in the same step).
    const auto all = dist->all_gather_doubles(r, "the finiteness check after step " +
                                                     std::to_string(train_state.step));
    int bad = -1;
    for (int k = 0; k < static_cast<int>(all.size()); ++k) {
      if (all[k][0] < 0) continue;
      const bool earlier = bad < 0 || all[k][0] < all[bad][0];
      const bool origin = bad >= 0 && all[k][0] == all[bad][0] && std::isfinite(all[bad][1]) &&
                          !std::isfinite(all[k][1]);
      if (earlier || origin) bad = k;
    }
    if (bad < 0) return;
    r = all[bad];
    where = " on rank " + std::to_string(bad);
  }
  if (r[0] < 0) return;
  const auto step = static_cast<int64_t>(r[0]);
  std::ostringstream text;
  text << "non-finite " << (std::isfinite(r[1]) ? "gradient" : "loss") << " at step " << step
       << where << " (loss " << r[1] << ", gradient norm " << r[2] << "); stopping. ";
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
  double loss_sum = loss_since_log.item<double>();
  if (dist) {
    // Each rank's loss is its part of the step's mean: the parts add up.
    loss_sum = sum_over_ranks(dist->all_gather_doubles(
        {loss_sum}, "the log of step " + std::to_string(train_state.step)))[0];
  }
  const double loss = loss_sum / static_cast<double>(steps_since_log);
  const double gnorm = grad_norm.item<double>();
  loss_since_log.zero_();
  steps_since_log = 0;
  const double tps = interval_s > 0 ? static_cast<double>(interval_tokens) / interval_s : 0;
  const int64_t step = train_state.step;
  summary.losses.emplace_back(step, loss);
  if (!is_main()) return;
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
  if (!evaluates) return;
  check_finite();
  const bool full = config.eval.full_pass;
  const bool accuracy = !full && data->reports_accuracy();
  EvalSums sums;
  if (full) {
    FullPassOptions o;
    o.seq_len = config.batch.seq_len;
    o.rows = config.batch.micro_batch_size;
    o.packed = config.data.pack_documents;
    o.eos_id = config.data.eos_id.value_or(config.model.eos_token_id);
    o.vocab_size = config.model.vocab_size;
    o.rank = dist ? dist->rank() : 0;
    o.world = dist ? dist->world_size() : 1;
    o.key = "data.val_files";
    sums = full_pass_sums(model, val_set, o, device);
  } else {
    sums = evaluate_sums(model, eval_batches, device, precision, accuracy);
  }
  if (dist) {
    const auto all = dist->all_gather_doubles(
        {sums.loss_sum, static_cast<double>(sums.correct), static_cast<double>(sums.targets), sums.text_bytes},
        "the evaluation at step " + std::to_string(train_state.step));
    const auto total = sum_over_ranks(all);
    sums.loss_sum = total[0];
    sums.correct = static_cast<int64_t>(total[1]);
    sums.targets = static_cast<int64_t>(total[2]);
    // Unknown on one rank (a span without a byte count): unknown for the whole pass.
    const bool known = std::all_of(all.begin(), all.end(), [](const std::vector<double>& r) { return r[3] >= 0; });
    sums.text_bytes = known ? total[3] : -1;
  }
  const EvalResult r = eval_result(sums, accuracy);
  summary.last_eval = r;
  if (!is_main()) return;
  const int64_t step = train_state.step;
  JsonLine line = JsonLine().add("type", "eval").add("step", step).add("loss", r.loss);
  std::string text = "eval step " + std::to_string(step) + ": loss " + fixed(r.loss, 4);
  if (full) {
    const FullPassResult f = full_pass_result(sums, val_set.bytes);
    line.add("perplexity", f.perplexity).add("tokens", f.tokens);
    text += ", perplexity " + fixed(f.perplexity, 3);
    if (f.bits_per_byte >= 0) {
      line.add("bits_per_byte", f.bits_per_byte);
      text += ", " + fixed(f.bits_per_byte, 4) + " bits per byte";
    }
    text += " over all " + std::to_string(f.tokens) + " validation targets";
  }
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
  if (!is_main()) return;
  std::optional<MasterWeights::Exposed> exposed;  // the fp32 masters are what is saved
  if (masters) exposed.emplace(*masters);
  save_checkpoint(config.checkpoint_dir(), train_state, *model, *optimizer,
                  config.checkpoint.keep_last, architecture);
  log::info("checkpoint " + checkpoint_path(config.checkpoint_dir(), train_state.step));
}

TrainSummary Trainer::run() {
  try {
    return s_->run();
  } catch (const std::exception& e) {
    s_->announce(e);
    throw;
  }
}

StepAgreement Trainer::State::agree_on_step(const std::vector<Batch>& micro,
                                             const StopSignal& stop) {
  // One process needs no agreement: its loss counts its own targets, and it reads its stop
  // signal at the end of the step (stop_reason).
  if (!dist) return {};
  int64_t targets = 0;
  for (const auto& b : micro) targets += b.num_targets;
  return dist->agree_on_step(targets, stop.requested(), train_state.step + 1);
}

torch::Tensor Trainer::State::accumulate(const std::vector<Batch>& micro,
                                         const StepAgreement& agreed) {
  StepSync sync;
  if (dist) {
    sync.step_targets = agreed.step_targets;
    sync.before_last_backward = [this] { reducer->arm(); };
  }
  if (masters) sync.after_backward = [this] { masters->accumulate_gradients(); };
  return accumulate_gradients(model, micro, precision, sync);
}

torch::Tensor Trainer::State::reduce_clip_and_step(const torch::Tensor& loss, double lr) {
  if (reducer) reducer->wait();  // every rank now holds the step's summed gradients
  const torch::Tensor grad_norm = clip_gradients(optimized, config.train.grad_clip);
  track_finite(loss, grad_norm);
  set_learning_rate(*optimizer, lr);
  optimizer->step();
  optimizer->zero_grad(/*set_to_none=*/true);
  if (masters) masters->copy_to_model();  // the step's one bf16 copy of the weights
  return grad_norm;
}

int64_t Trainer::State::count_step(const torch::Tensor& loss) {
  loss_since_log += loss.to(torch::kDouble);
  ++steps_since_log;
  ++train_state.step;
  train_state.tokens_seen += config.batch.tokens_per_step();
  return train_state.step;
}

// Bookkeeping at its own cadences (each a host sync): the benchmark's timed window, the
// log line, the evaluation.
void Trainer::State::log_and_evaluate(RunClock& clock, double lr, const torch::Tensor& grad_norm) {
  const TrainConfig& c = config;
  const int64_t step = train_state.step;
  const bool last = step == c.train.max_steps;
  if (c.train.benchmark && step - summary.start_step == c.train.benchmark_warmup) {
    check_finite();  // a sync: the timed window starts with an idle device
    clock.timed_start = Clock::now();
    clock.timed_from = step;
  }
  if (step % c.logging.interval == 0 || last) {
    const double interval_s = seconds_since(clock.log_start);
    const double per_step = seconds_since(clock.run_start) / static_cast<double>(step - summary.start_step);
    log_step(lr, grad_norm, interval_s, train_state.tokens_seen - clock.tokens_at_log,
             per_step * static_cast<double>(c.train.max_steps - step));
    clock.log_start = Clock::now();
    clock.tokens_at_log = train_state.tokens_seen;
  }
  if (!c.train.benchmark && ((c.eval.interval > 0 && step % c.eval.interval == 0) || last)) run_eval();
}

// Why the run stops after this step, or "" to go on. Ranks stop together: on a signal any
// of them saw before this step (agreed); one process on a signal seen by now.
std::string Trainer::State::stop_reason(const StepAgreement& agreed, const StopSignal& stop) const {
  const int64_t step = train_state.step;
  const bool signalled = dist ? agreed.stop : stop.requested();
  if (!signalled) {
    return step == config.train.stop_at_step
               ? "stopping at train.stop_at_step " + std::to_string(step)
               : std::string();
  }
  return stop.requested() ? "stopping on signal " + std::to_string(stop.signal_number()) +
                                " after step " + std::to_string(step)
                          : "stopping after step " + std::to_string(step) +
                                ": another rank received a signal";
}

void Trainer::State::checkpoint_if_due(bool stopping) {
  const TrainConfig& c = config;
  const int64_t step = train_state.step;
  const bool last = step == c.train.max_steps;
  if (!c.train.benchmark && ((c.checkpoint.interval > 0 && step % c.checkpoint.interval == 0) ||
                             last || stopping)) {
    write_checkpoint();
  }
}

TrainSummary Trainer::State::run() {
  State& s = *this;
  const TrainConfig& c = s.config;
  const StopSignal stop;
  const int64_t tokens_per_step = c.batch.tokens_per_step();
  const bool benchmark = c.train.benchmark;
  RunClock clock;
  clock.timed_from = s.train_state.step;
  clock.tokens_at_log = s.train_state.tokens_seen;
  torch::Tensor grad_norm = torch::zeros({});
  if (benchmark) reset_peak_memory(s.device);

  while (s.train_state.step < c.train.max_steps) {
    // One optimizer step.
    const std::vector<Batch> micro = s.next_micro_batches();
    const StepAgreement agreed = s.agree_on_step(micro, stop);
    const double lr = learning_rate_at(c.schedule, s.train_state.step, c.train.max_steps, c.optimizer.lr);
    const torch::Tensor loss = s.accumulate(micro, agreed);
    grad_norm = s.reduce_clip_and_step(loss, lr);
    const int64_t step = s.count_step(loss);
    s.log_and_evaluate(clock, lr, grad_norm);
    const std::string why = s.stop_reason(agreed, stop);
    s.checkpoint_if_due(/*stopping=*/!why.empty());
    if (s.on_step) s.on_step(step);
    if (!why.empty()) {
      log::info(why);
      s.summary.stopped_early = true;
      break;
    }
  }
  s.check_finite();
  if (s.device.is_cuda()) torch::cuda::synchronize();
  if (!c.checkpoint.export_dir.empty() && !benchmark && s.is_main()) {
    std::optional<MasterWeights::Exposed> exposed;  // the fp32 masters are exported
    if (s.masters) exposed.emplace(*s.masters);
    io::save_pretrained(s.model, c.checkpoint.export_dir);
    log::info("exported the model to " + c.checkpoint.export_dir);
  }
  TrainSummary& out = s.summary;
  out.final_step = s.train_state.step;
  out.tokens_seen = s.train_state.tokens_seen;
  out.elapsed_s = seconds_since(clock.run_start);
  const int64_t timed_steps = s.train_state.step - clock.timed_from;
  const double timed_s = seconds_since(clock.timed_start);
  if (timed_steps > 0 && timed_s > 0) {
    out.tokens_per_s = static_cast<double>(timed_steps * tokens_per_step) / timed_s;
    out.step_time_ms = 1000.0 * timed_s / static_cast<double>(timed_steps);
  }
  out.peak_memory_gib = peak_memory_bytes(s.device) / (1024.0 * 1024.0 * 1024.0);
  if (s.dist) {
    out.rank = s.dist->rank();
    out.world_size = s.dist->world_size();
    s.dist->finish();
  }
  return out;
}

}  // namespace comba::train
