// Learning-rate schedule and mixup sampling. Pure functions, no LibTorch.
#ifndef QUARTET_WORKER_TRAIN_SCHEDULE_H_
#define QUARTET_WORKER_TRAIN_SCHEDULE_H_

#include <cstdint>
#include <random>

namespace quartet::worker::train {

// Multiplier of a parameter group's base learning rate at optimiser step `step` (0-based) of
// `total_steps`: linear warm-up from `start_factor` (step 0) to 1 (step `warmup_steps`), then
// cosine annealing per step from 1 down to `floor_factor` at the last step:
//   step < W:  start + (1 - start) * step / W
//   else:      floor + (1 - floor) * (1 + cos(pi * (step - W) / max(1, T - 1 - W))) / 2
// where floor_factor = eta_min / base_lr. Steps past the end stay at floor_factor.
double LearningRateFactor(int64_t step, int64_t total_steps, int64_t warmup_steps,
                          double start_factor, double floor_factor);

// Mixup's lambda ~ Beta(alpha, alpha), drawn as G1 / (G1 + G2) with G ~ Gamma(alpha, 1).
// alpha <= 0 gives 1 (mixup off).
double SampleMixupLambda(double alpha, std::mt19937_64& rng);

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_SCHEDULE_H_
