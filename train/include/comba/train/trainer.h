// The training loop. One step reads as: next micro-batches -> forward/backward
// (accumulated) -> clip -> lr -> optimizer step -> log / eval / checkpoint / stop check.
// Each of those is a function of its own component. Host syncs happen only at log, eval
// and checkpoint steps.
//
// Data parallel (distributed.h: launched by torchrun, or with its environment variables):
// each rank reads its share of every step's micro-batches, the gradient all-reduce
// (grad_reducer.h) runs during the last micro-batch's backward and is waited for between
// accumulate_gradients and clip_gradients; ranks agree through the store on each step's
// target count and on stopping, and add up losses and eval sums at log and eval steps.
// The global batch is the config's: batch.grad_accum_steps micro-batches of
// batch.micro_batch_size per step, split evenly over the ranks (grad_accum_steps must be
// a multiple of the world size). Only rank 0 logs and writes files; every rank resumes
// from the checkpoint rank 0 chooses.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "comba/nn/causal_lm.h"
#include "comba/train/config/config.h"
#include "comba/train/train_step.h"

namespace comba::train {

enum class ResumeMode {
  automatic,  // resume when the checkpoint dir has a checkpoint (checkpoint.auto_resume)
  required,   // --resume: fail when there is nothing to resume from
  never,      // start over (existing checkpoints are left alone)
};

// A NaN/Inf loss or gradient norm: the run stops, the last good checkpoint stays.
class NonFiniteError : public std::runtime_error {
 public:
  NonFiniteError(int64_t step, const std::string& message)
      : std::runtime_error(message), step_(step) {}
  int64_t step() const { return step_; }

 private:
  int64_t step_;
};

struct TrainSummary {
  int64_t start_step = 0;  // the step resumed from (0 for a fresh run)
  int64_t final_step = 0;
  bool stopped_early = false;  // signal or train.stop_at_step
  std::string resumed_from;    // checkpoint path, empty for a fresh run
  // Mean training loss per logged step (step, loss), as logged.
  std::vector<std::pair<int64_t, double>> losses;
  std::optional<EvalResult> last_eval;
  int64_t tokens_seen = 0;
  double elapsed_s = 0;
  double tokens_per_s = 0;     // this process's steps (after benchmark_warmup in benchmark mode)
  double step_time_ms = 0;
  double peak_memory_gib = 0;
  int rank = 0;        // this process's rank (0 without a distributed launch)
  int world_size = 1;
};

class Trainer {
 public:
  explicit Trainer(TrainConfig config, ResumeMode resume = ResumeMode::automatic);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainSummary run();

  // Called after every optimizer step (after its log, eval and checkpoint) with the step
  // number; an exception stops the run like any other failure.
  void on_step(std::function<void(int64_t step)> callback);
  // The model being trained (this rank's copy).
  nn::CombaForCausalLM model() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace comba::train
