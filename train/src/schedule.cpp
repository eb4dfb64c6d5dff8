// Warm-up + decay schedules (see schedule.h). Kept torch-free: plain arithmetic.
#include "comba/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace comba::train {

double learning_rate_at(const ScheduleOptions& options, int64_t step, int64_t total_steps,
                        double peak_lr) {
  const double min_lr = options.min_lr_ratio * peak_lr;
  if (step < options.warmup_steps) {
    return peak_lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  if (options.kind == "constant") return peak_lr;
  if (options.kind == "wsd") {
    const auto decay_steps = static_cast<int64_t>(
        std::ceil(options.decay_fraction * static_cast<double>(total_steps)));
    const int64_t decay_start = std::max(options.warmup_steps, total_steps - decay_steps);
    if (step < decay_start) return peak_lr;
    const double span = static_cast<double>(std::max<int64_t>(1, total_steps - decay_start));
    const double progress = std::min(1.0, static_cast<double>(step - decay_start + 1) / span);
    return peak_lr + (min_lr - peak_lr) * progress;
  }
  // cosine / linear: progress runs from 0 just after warm-up to 1 at the last step.
  const double span =
      static_cast<double>(std::max<int64_t>(1, total_steps - options.warmup_steps - 1));
  const double progress =
      std::clamp(static_cast<double>(step - options.warmup_steps) / span, 0.0, 1.0);
  if (options.kind == "linear") return peak_lr + (min_lr - peak_lr) * progress;
  if (options.kind == "cosine") {
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
  }
  throw std::invalid_argument("learning_rate_at: unknown schedule kind \"" + options.kind + "\"");
}

}  // namespace comba::train
