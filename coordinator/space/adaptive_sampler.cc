// ADAPTIVE: PAIR_COVERING's pair phase until every pair of free families has been drawn, then, per
// draw, a stratified exploration draw with probability SamplerOptions::exploration_share (or when
// nothing has been observed yet), otherwise a Thompson-sampling draw: sample an additive model
//   accuracy ~ b + sum_f theta_f + sum_{p<q} phi_pq
// from an approximate posterior and take the best undrawn combination under the sample.
//
// The model (honest description of the approximation):
// - Sufficient statistics are exact integers (counts and fixed-point sums of accuracies, 2^-32
//   resolution), so they do not depend on the order of Observe() calls, and the fit below is a pure
//   function of them: a rebuilt sampler draws exactly what the original would have.
// - Posterior mean: block backfitting from phi = 0 for a fixed number of rounds. The family block
//   (b, theta) is the exact ridge solution given phi (a (m+1)-dimensional Cholesky solve over
//   family co-occurrence counts; ridge kFamilyRidge on theta, none on b). The pair block is a
//   mean-field update: each phi_pq is the ridge-shrunk (kPairRidge) mean residual of the
//   observations containing p and q given (b, theta), ignoring the coupling between pairs. This is
//   not the joint ridge solution, only a cheap approximation of it (O(m * C(m, 2)) per round); its
//   worth is measured end to end by bench/adaptive_search.
// - Posterior spread: diagonal (mean-field): sd(theta_f) = sigma / sqrt(n_f + kFamilyRidge),
//   sd(phi_pq) = sigma / sqrt(n_pq + kPairRidge); sigma^2 is the residual variance of the
//   family-only ridge fit (it includes unexplained pair effects, so it errs towards exploring).
// - Observations of combinations never drawn are used like any other; combinations drawn but never
//   observed do not inform the model.
// The best undrawn combination under a sample is found exactly on exhaustive spaces (a scan with
// partial sums) and by greedy construction plus single-swap hill climbing on larger ones.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/space/adaptive_model.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kCoverTag = 0x636f766572ULL;    // "cover"
constexpr uint64_t kExploreTag = 0x6578706c6fULL;  // "explo"
constexpr uint64_t kThompsonTag = 0x74686f6dULL;   // "thom"
// Exploration draws start from uneven counts (exploitation concentrates on good families), where a
// deep balance lookahead buys little: keep it short so that these draws stay cheap.
constexpr int64_t kExplorationLookahead = 1024;

class AdaptiveSampler : public CoverageSampler {
 public:
  AdaptiveSampler(const Space& space, uint64_t seed, const SamplerOptions& options)
      : CoverageSampler(space, seed, Tracking()),
        options_(options),
        plan_(BuildPairCoveringPlan(free_, seed)),
        model_(&free_) {}

  SamplerKind kind() const override { return SamplerKind::kAdaptive; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t draws = state_.draws();
    uint64_t rank;
    if (state_.uncovered_pairs() > 0) {
      rank = PlannedCoverChoice(state_, plan_, &plan_pos_, DrawKey(seed_, draws, kCoverTag));
    } else {
      Rng coin(DrawKey(seed_, draws, kExploreTag));
      const bool explore =
          model_.observations() == 0 || coin.Uniform() < options_.exploration_share;
      if (explore) {
        const uint64_t key = DrawKey(seed_, draws, kExploreTag + 1);
        if (!BalancedChoice(state_, key, &rank, kExplorationLookahead)) {
          rank = RelaxedBalancedChoice(state_, key);
          ++relaxed_;
        }
      } else {
        rank = ThompsonChoice(DrawKey(seed_, draws, kThompsonTag));
      }
    }
    Record(rank);
    return rank;
  }

  void Observe(uint64_t rank, double accuracy) override {
    if (rank >= free_.size()) return;
    int c[kMaxK];
    free_.Unrank(rank, c);
    model_.Add(c, accuracy);
  }

 private:
  static CoverageState::Tracking Tracking() {
    CoverageState::Tracking tracking;
    tracking.pairs = true;
    tracking.gains = true;
    return tracking;
  }

  // The best undrawn combination under one posterior sample.
  uint64_t ThompsonChoice(uint64_t key) {
    const AdditiveModel::Fit& fit = model_.Estimate();
    const int m = free_.m(), num_pairs = free_.num_pairs();
    Rng rng(key);
    theta_.resize(m);
    phi_.resize(num_pairs);
    for (int f = 0; f < m; ++f) theta_[f] = fit.theta[f] + fit.theta_sd[f] * rng.Normal();
    for (int p = 0; p < num_pairs; ++p) phi_[p] = fit.phi[p] + fit.phi_sd[p] * rng.Normal();
    const uint64_t best =
        search_.Best(theta_, phi_, &rng, [this](uint64_t r) { return !state_.Drawn(r); });
    if (best < free_.size()) return best;
    uint64_t rank;
    if (!BalancedChoice(state_, key, &rank)) rank = RelaxedBalancedChoice(state_, key);
    return rank;
  }

  SamplerOptions options_;
  std::vector<uint64_t> plan_;
  size_t plan_pos_ = 0;
  AdditiveModel model_;
  std::vector<double> theta_, phi_;  // scratch: the current posterior sample
  CombinationSearch search_{&free_};
};

}  // namespace

std::unique_ptr<Sampler> NewAdaptiveSampler(const Space& space, uint64_t seed,
                                            const SamplerOptions& options) {
  return std::make_unique<AdaptiveSampler>(space, seed, options);
}

}  // namespace quartet::coordinator::space::internal
