// A hidden accuracy landscape for simulations: accuracy = base + sum of family effects + sum of
// sparse pair synergies (+ Gaussian noise per observation), all drawn from a seed. Used by the
// benchmarks to feed ADAPTIVE; not part of the system.
#ifndef QUARTET_BENCH_SYNTHETIC_ACCURACY_H_
#define QUARTET_BENCH_SYNTHETIC_ACCURACY_H_

#include <cstdint>
#include <random>
#include <vector>

#include "coordinator/space/combinatorics.h"

namespace quartet::bench {

struct SyntheticAccuracyOptions {
  double base = 0.80;
  double family_sd = 0.02;   // sd of each family's effect
  double pair_share = 0.10;  // share of pairs with a synergy
  double pair_sd = 0.02;     // sd of a synergy
  double noise_sd = 0.01;    // sd of the noise of one observation
};

class SyntheticAccuracy {
 public:
  SyntheticAccuracy(int n, uint64_t seed, SyntheticAccuracyOptions options = {})
      : n_(n), options_(options), rng_(seed), family_(n), pair_(n * n, 0.0) {
    std::normal_distribution<double> family(0.0, options.family_sd), pair(0.0, options.pair_sd);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (double& f : family_) f = family(rng_);
    for (int a = 0; a < n; ++a) {
      for (int b = a + 1; b < n; ++b) {
        if (unit(rng_) < options.pair_share) pair_[a * n + b] = pair_[b * n + a] = pair(rng_);
      }
    }
  }

  // Noiseless accuracy of a combination of family indices.
  double Mean(const int* c, int k) const {
    double s = options_.base;
    for (int i = 0; i < k; ++i) {
      s += family_[c[i]];
      for (int j = i + 1; j < k; ++j) s += pair_[c[i] * n_ + c[j]];
    }
    return s;
  }

  // One noisy measurement.
  double Measure(const int* c, int k) {
    std::normal_distribution<double> noise(0.0, options_.noise_sd);
    return Mean(c, k) + noise(rng_);
  }

  // The rank of the best combination of k (no required families).
  uint64_t BestRank(int k) const {
    const uint64_t size = coordinator::space::Binomial(n_, k);
    uint64_t best = 0;
    double best_value = -1e300;
    std::vector<int> c(k);
    for (uint64_t r = 0; r < size; ++r) {
      coordinator::space::UnrankUnchecked(r, n_, k, c.data());
      const double v = Mean(c.data(), k);
      if (v > best_value) {
        best_value = v;
        best = r;
      }
    }
    return best;
  }

 private:
  int n_;
  SyntheticAccuracyOptions options_;
  std::mt19937_64 rng_;
  std::vector<double> family_;
  std::vector<double> pair_;
};

}  // namespace quartet::bench

#endif  // QUARTET_BENCH_SYNTHETIC_ACCURACY_H_
