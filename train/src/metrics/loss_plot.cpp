// SVG rendering of the loss curves (see loss_plot.h).
#include "comba/train/metrics/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "comba/train/checkpoint/checkpoint_file.h"

namespace comba::train {
namespace {

constexpr double kWidth = 860, kHeight = 480;
constexpr double kLeft = 70, kRight = 70, kTop = 40, kBottom = 50;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

struct Axis {
  double lo, hi;
  double map(double v, double pixel_lo, double pixel_hi) const {
    const double t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return pixel_lo + t * (pixel_hi - pixel_lo);
  }
};

std::string polyline(const std::vector<CurvePoint>& points, const Axis& x, const Axis& y,
                     const char* color, double width) {
  if (points.empty()) return "";
  std::ostringstream out;
  out << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << width
      << "\" points=\"";
  for (const auto& p : points) {
    if (!std::isfinite(p.value)) continue;
    out << num(x.map(static_cast<double>(p.step), kLeft, kWidth - kRight)) << ','
        << num(y.map(p.value, kHeight - kBottom, kTop)) << ' ';
  }
  out << "\"/>\n";
  if (points.size() == 1) {  // a single point draws no line: mark it
    out << "<circle r=\"3\" fill=\"" << color << "\" cx=\""
        << num(x.map(static_cast<double>(points[0].step), kLeft, kWidth - kRight)) << "\" cy=\""
        << num(y.map(points[0].value, kHeight - kBottom, kTop)) << "\"/>\n";
  }
  return out.str();
}

}  // namespace

std::string render_loss_svg(const LossCurves& c) {
  double step_max = 1, loss_lo = INFINITY, loss_hi = -INFINITY;
  for (const auto* series : {&c.train_loss, &c.eval_loss, &c.eval_accuracy}) {
    for (const auto& p : *series) step_max = std::max(step_max, static_cast<double>(p.step));
  }
  for (const auto* series : {&c.train_loss, &c.eval_loss}) {
    for (const auto& p : *series) {
      if (!std::isfinite(p.value)) continue;
      loss_lo = std::min(loss_lo, p.value);
      loss_hi = std::max(loss_hi, p.value);
    }
  }
  if (!std::isfinite(loss_lo)) loss_lo = 0, loss_hi = 1;
  if (loss_hi - loss_lo < 1e-9) loss_hi = loss_lo + 1;
  loss_lo = std::max(0.0, loss_lo - 0.05 * (loss_hi - loss_lo));
  const Axis x{0, step_max};
  const Axis y{loss_lo, loss_hi};
  const Axis acc{0, 1};

  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\""
      << kHeight << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kWidth / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
      << c.title << "</text>\n";
  const double bottom = kHeight - kBottom, right = kWidth - kRight;
  for (int i = 0; i <= 5; ++i) {
    const double t = i / 5.0;
    const double px = kLeft + t * (right - kLeft);
    const double py = bottom - t * (bottom - kTop);
    out << "<line x1=\"" << px << "\" y1=\"" << kTop << "\" x2=\"" << px << "\" y2=\"" << bottom
        << "\" stroke=\"#eee\"/>\n"
        << "<line x1=\"" << kLeft << "\" y1=\"" << py << "\" x2=\"" << right << "\" y2=\"" << py
        << "\" stroke=\"#eee\"/>\n"
        << "<text x=\"" << px << "\" y=\"" << bottom + 18 << "\" text-anchor=\"middle\">"
        << num(t * step_max) << "</text>\n"
        << "<text x=\"" << kLeft - 6 << "\" y=\"" << py + 4 << "\" text-anchor=\"end\">"
        << num(loss_lo + t * (loss_hi - loss_lo)) << "</text>\n";
    if (!c.eval_accuracy.empty()) {
      out << "<text x=\"" << right + 6 << "\" y=\"" << py + 4 << "\" fill=\"#2a7\">" << num(t)
          << "</text>\n";
    }
  }
  out << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << right - kLeft
      << "\" height=\"" << bottom - kTop << "\" fill=\"none\" stroke=\"#444\"/>\n"
      << "<text x=\"" << (kLeft + right) / 2 << "\" y=\"" << kHeight - 12
      << "\" text-anchor=\"middle\">step</text>\n"
      << "<text x=\"16\" y=\"" << (kTop + bottom) / 2 << "\" transform=\"rotate(-90 16 "
      << (kTop + bottom) / 2 << ")\" text-anchor=\"middle\">loss</text>\n";
  out << polyline(c.train_loss, x, y, "#36c", 1.5) << polyline(c.eval_loss, x, y, "#d33", 2.0)
      << polyline(c.eval_accuracy, x, acc, "#2a7", 2.0);
  // Legend.
  double ly = kTop + 14;
  const auto legend = [&](const char* color, const char* label) {
    out << "<line x1=\"" << right - 150 << "\" y1=\"" << ly - 4 << "\" x2=\"" << right - 130
        << "\" y2=\"" << ly - 4 << "\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n"
        << "<text x=\"" << right - 124 << "\" y=\"" << ly << "\">" << label << "</text>\n";
    ly += 16;
  };
  legend("#36c", "train loss");
  if (!c.eval_loss.empty()) legend("#d33", "eval loss");
  if (!c.eval_accuracy.empty()) legend("#2a7", "eval accuracy (right axis)");
  out << "</svg>\n";
  return out.str();
}

void write_loss_svg(const std::string& path, const LossCurves& curves) {
  write_file_atomic(path, render_loss_svg(curves));
}

}  // namespace comba::train
