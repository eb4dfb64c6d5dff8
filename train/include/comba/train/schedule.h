// Learning-rate schedules: a pure function of the step, so that a resumed run needs only
// the step to continue the curve (nothing schedule-specific goes into checkpoints).
#pragma once
#include <cstdint>
#include <string>

namespace comba::train {

struct ScheduleOptions {
  // "cosine" | "linear" (warm-up, then decay to min_lr_ratio * lr by total_steps),
  // "wsd" (warm-up, stable at lr, linear decay over the last decay_fraction of the run),
  // "constant" (warm-up, then lr).
  std::string kind = "cosine";
  int64_t warmup_steps = 100;
  double min_lr_ratio = 0.1;   // floor as a fraction of the peak lr
  double decay_fraction = 0.2; // wsd only: share of total_steps spent decaying
};

// Learning rate for optimizer step `step` (0-based) of a run of `total_steps` steps
// peaking at `peak_lr`. Warm-up is linear from peak_lr / warmup_steps at step 0 to
// peak_lr at step warmup_steps - 1.
double learning_rate_at(const ScheduleOptions& options, int64_t step, int64_t total_steps,
                        double peak_lr);

}  // namespace comba::train
