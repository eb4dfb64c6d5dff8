// Learning-rate schedules at chosen steps against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "comba/train/schedule.h"

namespace comba::train {
namespace {

ScheduleOptions make(const std::string& kind, int64_t warmup, double min_ratio = 0.1,
                     double decay_fraction = 0.2) {
  ScheduleOptions o;
  o.kind = kind;
  o.warmup_steps = warmup;
  o.min_lr_ratio = min_ratio;
  o.decay_fraction = decay_fraction;
  return o;
}

TEST(Schedule, WarmupIsLinearFromFirstStep) {
  const auto o = make("cosine", 10);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 0, 100, 1.0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 4, 100, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 9, 100, 1.0), 1.0);
}

TEST(Schedule, CosineHitsPeakMidpointAndFloor) {
  // After warm-up (10 steps) the decay spans steps 10..99 (89 intervals).
  const auto o = make("cosine", 10, 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 10, 100, 2.0), 2.0);
  const double t = (54 - 10) / 89.0;  // step 54, near the middle of the decay
  EXPECT_NEAR(learning_rate_at(o, 54, 100, 2.0), 0.2 + 0.5 * 1.8 * (1 + std::cos(M_PI * t)), 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 99, 100, 2.0), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 150, 100, 2.0), 0.2);  // past the end: the floor
}

TEST(Schedule, LinearDecay) {
  const auto o = make("linear", 0, 0.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 0, 11, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 5, 11, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 10, 11, 1.0), 0.0);
}

TEST(Schedule, WarmupStableDecay) {
  // 100 steps, 20% decay: stable through step 79, then linear to the floor at step 99.
  const auto o = make("wsd", 5, 0.0, 0.2);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 2, 100, 1.0), 0.6);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 50, 100, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 79, 100, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 80, 100, 1.0), 1.0 - 1.0 / 20);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 89, 100, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 99, 100, 1.0), 0.0);
}

TEST(Schedule, ConstantAfterWarmup) {
  const auto o = make("constant", 4);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 1, 50, 3.0), 1.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 30, 50, 3.0), 3.0);
}

}  // namespace
}  // namespace comba::train
