// The loss curve as a standalone SVG picture (no plotting library): train loss, eval
// loss and, when the task has one, eval accuracy on a second axis. Rewritten atomically
// at every evaluation so that a browser refresh always shows a whole picture.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace comba::train {

struct CurvePoint {
  int64_t step;
  double value;
};

struct LossCurves {
  std::vector<CurvePoint> train_loss;
  std::vector<CurvePoint> eval_loss;
  std::vector<CurvePoint> eval_accuracy;  // in [0, 1]; empty when not reported
  std::string title;
};

std::string render_loss_svg(const LossCurves& curves);
void write_loss_svg(const std::string& path, const LossCurves& curves);

}  // namespace comba::train
