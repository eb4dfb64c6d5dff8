// The human-facing progress line: a bar with step, loss, lr, tokens/s and ETA.
#pragma once
#include <cstdint>
#include <string>

namespace comba::train {

struct ProgressInfo {
  int64_t step = 0;       // steps done
  int64_t max_steps = 1;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double eta_s = 0;
};

// "[######----] 600/1000 loss 1.2345 lr 8.0e-04 gnorm 0.52 12.3k tok/s ETA 1m05s"
std::string format_progress(const ProgressInfo& info, bool bar);
// "1h02m", "3m05s", "12s"
std::string format_duration(double seconds);

}  // namespace comba::train
