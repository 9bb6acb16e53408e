#include "worker/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace quartet::worker::train {

double LearningRateFactor(int64_t step, int64_t total_steps, int64_t warmup_steps,
                          double start_factor, double floor_factor) {
  if (warmup_steps > 0 && step < warmup_steps) {
    return start_factor + (1.0 - start_factor) * static_cast<double>(step) / warmup_steps;
  }
  const int64_t span = std::max<int64_t>(1, total_steps - 1 - warmup_steps);
  const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  return floor_factor + (1.0 - floor_factor) * (1.0 + std::cos(M_PI * t)) / 2.0;
}

double SampleMixupLambda(double alpha, std::mt19937_64& rng) {
  if (!(alpha > 0)) return 1.0;
  std::gamma_distribution<double> gamma(alpha, 1.0);
  const double g1 = gamma(rng), g2 = gamma(rng);
  if (g1 + g2 <= 0) return 1.0;  // both underflowed (tiny alpha): no mixing
  return g1 / (g1 + g2);
}

}  // namespace quartet::worker::train
