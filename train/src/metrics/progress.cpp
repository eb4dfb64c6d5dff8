// Progress line formatting (see progress.h).
#include "comba/train/metrics/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace comba::train {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::string format_progress(const ProgressInfo& info, bool bar) {
  std::string out;
  if (bar) {
    constexpr int kWidth = 20;
    const double done = std::clamp(static_cast<double>(info.step) /
                                       static_cast<double>(std::max<int64_t>(1, info.max_steps)),
                                   0.0, 1.0);
    const int filled = static_cast<int>(done * kWidth);
    out = "[" + std::string(filled, '#') + std::string(kWidth - filled, '-') + "] ";
  }
  char buf[256];
  const double tps = info.tokens_per_s;
  char rate[32];
  if (tps >= 1e6) {
    std::snprintf(rate, sizeof(rate), "%.2fM", tps / 1e6);
  } else if (tps >= 1e3) {
    std::snprintf(rate, sizeof(rate), "%.1fk", tps / 1e3);
  } else {
    std::snprintf(rate, sizeof(rate), "%.0f", tps);
  }
  std::snprintf(buf, sizeof(buf), "%lld/%lld loss %.4f lr %.2e gnorm %.3f %s tok/s ETA %s",
                static_cast<long long>(info.step), static_cast<long long>(info.max_steps),
                info.loss, info.lr, info.grad_norm, rate, format_duration(info.eta_s).c_str());
  return out + buf;
}

}  // namespace comba::train
