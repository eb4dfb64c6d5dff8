// The trainer's own knobs: run length, clipping, evaluation and logging cadence.
#pragma once
#include <cstdint>
#include <string>

namespace comba::train {

struct RunOptions {
  int64_t max_steps = 1000;   // optimizer steps of the whole run (the schedule spans them)
  double grad_clip = 1.0;     // max global gradient norm; 0 disables clipping
  // Stop after this step as if interrupted (checkpoint, clean exit); 0 never. For tests
  // and for splitting a run across time-limited jobs.
  int64_t stop_at_step = 0;
  // Benchmark mode: no eval, no checkpoints; a JSON summary (tokens/s, step time, peak
  // memory) after the last step, timed from step benchmark_warmup on.
  bool benchmark = false;
  int64_t benchmark_warmup = 3;
  int64_t threads = 0;        // CPU intra-op threads; 0 keeps LibTorch's choice
  // Memory policy: "none" keeps every activation for backward; "chunk_states" keeps them
  // and, of the operator's chunk workspace, only its per-chunk states (the backward redoes
  // the parallel preparation, not the serial scan); "chunk_workspace" keeps them but the
  // operator's chunk workspace (its backward recomputes it); "mixer" runs
  // each block's mixer branch again in backward; "block" keeps only each block's input
  // and runs the whole block again (activation checkpointing).
  std::string recompute = "none";
  // chunk_comba's sequence split (CombaOptions::split_length): sequences longer than this
  // many tokens (a multiple of 64) run as segments side by side; 0 leaves the choice to
  // the operator. The same loss curve either way.
  int64_t split_length = 0;
};

struct EvalOptions {
  int64_t interval = 100;  // steps between evaluations; 0 only at the end
  int64_t batches = 8;     // micro-batches per evaluation (the same ones every time)
  // Every validation token once, in consecutive seq_len windows (evaluate.h), instead of
  // `batches` random windows; also reports perplexity (and bits per byte for bytes).
  bool full_pass = false;
};

struct LoggingOptions {
  std::string run_dir = "runs/default";  // logs, metrics, plot, resolved config, checkpoints
  int64_t interval = 10;                 // steps between log lines (the only host syncs)
  bool progress_bar = true;
  std::string level = "info";            // debug | info | warn | error
};

}  // namespace comba::train
