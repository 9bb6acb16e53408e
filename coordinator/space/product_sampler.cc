// Samplers on product spaces (family axis x parameter axes). A product space without parameter
// axes is served by the family-space samplers (sampler.cc), so its draws are exactly today's.
//
// - LEXICOGRAPHIC, UNIFORM: the rank order and the Feistel bijection over the whole product.
// - STRATIFIED: BalancedPoint every draw: family counts and every axis's level counts within 1 of
//   each other at every prefix; relaxed (counted) when no balance-preserving point is left.
// - PAIR_COVERING: a covering plan (BuildProductCoveringPlan) for family pairs, (family, level)
//   cells and (level, level) pairs, greedy cover choices after it while anything is unseen, then
//   balanced draws.
// - ADAPTIVE: PAIR_COVERING's coverage phase, then stratified exploration draws (a share) and
//   Thompson draws on the family + pair model (adaptive_model.h) extended with level effects and
//   family x level interactions (LevelModel below).
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/status_macros.h"
#include "coordinator/space/adaptive_model.h"
#include "coordinator/space/product_state.h"
#include "coordinator/space/sampler.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kStratifiedTag = 0x7073747261ULL;  // "pstra"
constexpr uint64_t kCoverTag = 0x70636f76ULL;         // "pcov"
constexpr uint64_t kExploreTag = 0x7065787064ULL;     // "pexpl"
constexpr uint64_t kThompsonTag = 0x7074686fULL;      // "ptho"
constexpr double kLevelRidge = 3.0;  // prior weight of a level effect = 0, in observations
constexpr double kCellRidge = 5.0;   // prior weight of a family x level interaction = 0
// Family x family x level co-occurrence counts are kept up to this many entries; above, the
// interaction fit ignores the other families' effects (documented approximation).
constexpr int64_t kMaxCoOccurrence = int64_t{1} << 22;
// Level tuples of one combination searched exhaustively for the best undrawn one.
constexpr uint64_t kMaxLevelScan = 4096;

// Base of the product samplers that keep a ProductState: recording, MarkDrawn's checks and the
// counters.
class ProductSampler : public Sampler {
 public:
  absl::Status MarkDrawn(uint64_t rank) override {
    if (rank >= space_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", rank, " is outside the space [0, ", space_.size(), ")"));
    }
    if (!state_.Add(rank)) {
      return absl::AlreadyExistsError(absl::StrCat("rank ", rank, " is already drawn"));
    }
    return absl::OkStatus();
  }
  void Observe(uint64_t /*rank*/, double /*accuracy*/) override {}
  uint64_t draws() const override { return state_.draws(); }
  uint64_t relaxed_draws() const override { return relaxed_; }

 protected:
  ProductSampler(const ProductSpace& space, uint64_t seed)
      : space_(space), state_(space_), seed_(seed) {}

  absl::Status CheckNotExhausted() const {
    if (state_.exhausted()) return absl::OutOfRangeError("every point of the space is drawn");
    return absl::OkStatus();
  }
  uint64_t BalancedOrRelaxed(uint64_t key) {
    uint64_t point;
    if (BalancedPoint(state_, key, &point)) return point;
    ++relaxed_;
    return RelaxedPoint(state_, key);
  }

  const ProductSpace space_;  // a copy: the state points to it
  ProductState state_;
  const uint64_t seed_;
  uint64_t relaxed_ = 0;
};

class ProductStratifiedSampler : public ProductSampler {
 public:
  ProductStratifiedSampler(const ProductSpace& space, uint64_t seed)
      : ProductSampler(space, seed) {}
  SamplerKind kind() const override { return SamplerKind::kStratified; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t point = BalancedOrRelaxed(DrawKey(seed_, state_.draws(), kStratifiedTag));
    state_.Add(point);
    return point;
  }
};

class ProductPairCoveringSampler : public ProductSampler {
 public:
  ProductPairCoveringSampler(const ProductSpace& space, uint64_t seed)
      : ProductSampler(space, seed), plan_(BuildProductCoveringPlan(space_, seed)) {}
  SamplerKind kind() const override { return SamplerKind::kPairCovering; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t point = PlannedCoverPoint(state_, plan_, &plan_pos_,
                                             DrawKey(seed_, state_.draws(), kCoverTag), &relaxed_);
    state_.Add(point);
    return point;
  }

 private:
  std::vector<uint64_t> plan_;
  size_t plan_pos_ = 0;
};

// Level effects and family x level interactions, fitted on the residuals of the family model
// (mean-field, like the pair effects of AdditiveModel):
//   lambda_al = sum over observations at level l of axis a of (y - yhat_family), / (n_al + ridge)
//   psi_fal   = same over observations containing f at (a, l), of (y - yhat_family - lambda_al)
// where yhat_family = b + sum theta_f + sum phi_pq, summed through integer co-occurrence counts so
// the fit is a pure function of order-independent statistics. Approximations: axes are fitted
// independently of each other; psi ignores pair effects and, above kMaxCoOccurrence entries, the
// other families' effects.
class LevelModel {
 public:
  explicit LevelModel(const ProductState* g) : g_(g), t_(g->total_levels()), m_(g->m()) {
    n_.assign(t_, 0);
    sum_.assign(t_, 0);
    family_.assign(static_cast<size_t>(m_) * t_, 0);
    family_sum_.assign(static_cast<size_t>(m_) * t_, 0);
    pair_.assign(static_cast<size_t>(g->free().num_pairs()) * t_, 0);
    if (int64_t{m_} * m_ * t_ <= kMaxCoOccurrence) {
      co_.assign(static_cast<size_t>(m_) * m_ * t_, 0);
    }
  }

  void Add(const int* c, const int* l, double accuracy) {
    if (!std::isfinite(accuracy)) return;
    const __int128 q = FixedPoint(accuracy);
    ++total_n_;
    total_sum_ += q;
    total_sq_ += q * q;
    const int k = g_->k();
    for (int a = 0; a < g_->num_axes(); ++a) {
      const int id = g_->LevelId(a, l[a]);
      ++n_[id];
      sum_[id] += q;
      for (int i = 0; i < k; ++i) {
        ++family_[Cell(c[i], id)];
        family_sum_[Cell(c[i], id)] += q;
        for (int j = 0; j < k; ++j) {
          if (j != i && !co_.empty()) ++co_[(static_cast<size_t>(c[i]) * m_ + c[j]) * t_ + id];
        }
        for (int j = i + 1; j < k; ++j) ++pair_[Pair(g_->free().Pair(c[i], c[j]), id)];
      }
    }
    ++version_;
  }

  int64_t observations() const { return total_n_; }

  struct Fit {
    std::vector<double> lambda, lambda_sd;  // per level id
    std::vector<double> psi, psi_sd;        // per (family, level id)
  };

  // `family`: the family model's fit (nullptr without families); `bias`: its intercept.
  const Fit& Estimate(const AdditiveModel::Fit* family, double bias) {
    if (fitted_ == version_) return fit_;
    fitted_ = version_;
    const double sigma = family != nullptr ? family->sigma : OverallSigma();
    fit_.lambda.assign(t_, 0.0);
    fit_.lambda_sd.assign(t_, 0.0);
    fit_.psi.assign(static_cast<size_t>(m_) * t_, 0.0);
    fit_.psi_sd.assign(static_cast<size_t>(m_) * t_, 0.0);
    for (int id = 0; id < t_; ++id) {
      double predicted = n_[id] * bias;
      for (int f = 0; f < m_ && family != nullptr; ++f) {
        predicted += family_[Cell(f, id)] * family->theta[f];
      }
      for (int p = 0; p < g_->free().num_pairs() && family != nullptr; ++p) {
        predicted += pair_[Pair(p, id)] * family->phi[p];
      }
      fit_.lambda[id] = (ToDouble(sum_[id]) - predicted) / (n_[id] + kLevelRidge);
      fit_.lambda_sd[id] = sigma / std::sqrt(n_[id] + kLevelRidge);
      for (int f = 0; f < m_; ++f) {
        const size_t cell = Cell(f, id);
        const double n = static_cast<double>(family_[cell]);
        double cell_predicted = n * (bias + fit_.lambda[id]);
        if (family != nullptr) {
          cell_predicted += n * family->theta[f];
          for (int g = 0; g < m_ && !co_.empty(); ++g) {
            if (g != f)
              cell_predicted += co_[(static_cast<size_t>(f) * m_ + g) * t_ + id] * family->theta[g];
          }
        }
        fit_.psi[cell] = (ToDouble(family_sum_[cell]) - cell_predicted) / (n + kCellRidge);
        fit_.psi_sd[cell] = sigma / std::sqrt(n + kCellRidge);
      }
    }
    return fit_;
  }

  // Mean accuracy (the intercept used when there is no family model).
  double Mean() const {
    return total_n_ > 0 ? ToDouble(total_sum_) / static_cast<double>(total_n_) : 0;
  }

 private:
  static double ToDouble(__int128 v) { return static_cast<double>(v) / kFixedPointScale; }
  double OverallSigma() const {
    const double n = static_cast<double>(total_n_);
    if (n < 2) return 1e-6;
    const double sum = ToDouble(total_sum_);
    const double sq = static_cast<double>(total_sq_) / (kFixedPointScale * kFixedPointScale);
    return std::sqrt(std::max((sq - sum * sum / n) / (n - 1), 1e-12));
  }
  size_t Cell(int f, int id) const { return static_cast<size_t>(f) * t_ + id; }
  size_t Pair(int p, int id) const { return static_cast<size_t>(p) * t_ + id; }

  const ProductState* g_;
  const int t_, m_;
  int64_t total_n_ = 0;
  __int128 total_sum_ = 0, total_sq_ = 0;
  std::vector<int64_t> n_, family_, pair_, co_;
  std::vector<__int128> sum_, family_sum_;
  uint64_t version_ = 0, fitted_ = std::numeric_limits<uint64_t>::max();
  Fit fit_;
};

class ProductAdaptiveSampler : public ProductSampler {
 public:
  ProductAdaptiveSampler(const ProductSpace& space, uint64_t seed, const SamplerOptions& options)
      : ProductSampler(space, seed),
        options_(options),
        plan_(BuildProductCoveringPlan(space_, seed)),
        family_model_(&state_.free()),
        level_model_(&state_),
        search_(&state_.free()) {}

  SamplerKind kind() const override { return SamplerKind::kAdaptive; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t draws = state_.draws();
    uint64_t point;
    if (state_.uncovered() > 0) {
      point =
          PlannedCoverPoint(state_, plan_, &plan_pos_, DrawKey(seed_, draws, kCoverTag), &relaxed_);
    } else {
      Rng coin(DrawKey(seed_, draws, kExploreTag));
      const bool explore =
          level_model_.observations() == 0 || coin.Uniform() < options_.exploration_share;
      point = explore ? BalancedOrRelaxed(DrawKey(seed_, draws, kExploreTag + 1))
                      : ThompsonChoice(DrawKey(seed_, draws, kThompsonTag));
    }
    state_.Add(point);
    return point;
  }

  void Observe(uint64_t rank, double accuracy) override {
    if (rank >= space_.size()) return;
    int c[kMaxK], l[kMaxAxes];
    state_.Decode(rank, c, l);
    if (state_.k() > 0) family_model_.Add(c, accuracy);
    level_model_.Add(c, l, accuracy);
  }

 private:
  // Samples every effect from its approximate posterior into theta_, phi_, lambda_, psi_.
  void SampleEffects(Rng* rng) {
    const AdditiveModel::Fit* family = nullptr;
    double bias = level_model_.Mean();
    if (state_.k() > 0) {
      family = &family_model_.Estimate();
      bias = family->bias;
    }
    const LevelModel::Fit& levels = level_model_.Estimate(family, bias);
    theta_.assign(state_.m(), 0.0);
    phi_.assign(state_.free().num_pairs(), 0.0);
    if (family != nullptr) {
      for (int f = 0; f < state_.m(); ++f) {
        theta_[f] = family->theta[f] + family->theta_sd[f] * rng->Normal();
      }
      for (size_t p = 0; p < phi_.size(); ++p) {
        phi_[p] = family->phi[p] + family->phi_sd[p] * rng->Normal();
      }
    }
    lambda_.resize(levels.lambda.size());
    for (size_t i = 0; i < lambda_.size(); ++i) {
      lambda_[i] = levels.lambda[i] + levels.lambda_sd[i] * rng->Normal();
    }
    psi_.resize(levels.psi.size());
    for (size_t i = 0; i < psi_.size(); ++i) {
      psi_[i] = levels.psi[i] + levels.psi_sd[i] * rng->Normal();
    }
  }

  // Sampled score of level `level` on axis a for the families c.
  double LevelScore(const int* c, int a, int level) const {
    const int id = state_.LevelId(a, level);
    double s = lambda_[id];
    for (int i = 0; i < state_.k(); ++i)
      s += psi_[static_cast<size_t>(c[i]) * state_.total_levels() + id];
    return s;
  }

  void BestLevels(const int* c, int* l) const {
    for (int a = 0; a < state_.num_axes(); ++a) {
      l[a] = 0;
      for (int level = 1; level < state_.levels(a); ++level) {
        if (LevelScore(c, a, level) > LevelScore(c, a, l[a])) l[a] = level;
      }
    }
  }

  // The best undrawn level tuple for the families c (exhaustive up to kMaxLevelScan tuples);
  // false when none was found.
  bool BestUndrawnLevels(const int* c, int* l) const {
    if (space_.level_points() > kMaxLevelScan) return false;
    int trial[kMaxAxes];
    double best = -std::numeric_limits<double>::infinity();
    bool found = false;
    for (uint64_t index = 0; index < space_.level_points(); ++index) {
      space_.UnrankLevels(index, trial);
      if (state_.Drawn(state_.Point(c, trial))) continue;
      double s = 0;
      for (int a = 0; a < state_.num_axes(); ++a) s += LevelScore(c, a, trial[a]);
      if (!found || s > best) {
        std::copy(trial, trial + state_.num_axes(), l);
        best = s;
        found = true;
      }
    }
    return found;
  }

  // Best undrawn point under one posterior sample: levels from the level effects alone, the best
  // combination given them (interactions folded into the family effects), then the best levels
  // given that combination when that point is undrawn.
  uint64_t ThompsonChoice(uint64_t key) {
    Rng rng(key);
    SampleEffects(&rng);
    int c[kMaxK] = {}, l[kMaxAxes], refined[kMaxAxes];
    BestLevels(c, l);
    if (state_.k() > 0) {
      const int m = state_.m();
      std::vector<double> folded(theta_);
      for (int f = 0; f < m; ++f) {
        for (int a = 0; a < state_.num_axes(); ++a) {
          folded[f] +=
              psi_[static_cast<size_t>(f) * state_.total_levels() + state_.LevelId(a, l[a])];
        }
      }
      const uint64_t combination = search_.Best(
          folded, phi_, &rng, [&](uint64_t r) { return !state_.Drawn(space_.Rank(r, l)); });
      if (combination >= state_.free().size()) return BalancedOrRelaxed(key);
      state_.free().Unrank(combination, c);
      BestLevels(c, refined);
      const uint64_t better = state_.Point(c, refined);
      return state_.Drawn(better) ? state_.Point(c, l) : better;
    }
    if (!state_.Drawn(state_.Point(c, l))) return state_.Point(c, l);
    if (BestUndrawnLevels(c, refined)) return state_.Point(c, refined);
    return BalancedOrRelaxed(key);
  }

  SamplerOptions options_;
  std::vector<uint64_t> plan_;
  size_t plan_pos_ = 0;
  AdditiveModel family_model_;
  LevelModel level_model_;
  CombinationSearch search_;
  std::vector<double> theta_, phi_, lambda_, psi_;  // scratch: the current posterior sample
};

}  // namespace

std::unique_ptr<Sampler> NewProductSampler(SamplerKind kind, const ProductSpace& space,
                                           uint64_t seed, const SamplerOptions& options) {
  switch (kind) {
    case SamplerKind::kLexicographic:
      return NewLexicographicSampler(space.size());
    case SamplerKind::kUniform:
      return NewUniformSampler(space.size(), seed);
    case SamplerKind::kStratified:
      return std::make_unique<ProductStratifiedSampler>(space, seed);
    case SamplerKind::kPairCovering:
      return std::make_unique<ProductPairCoveringSampler>(space, seed);
    case SamplerKind::kAdaptive:
      return std::make_unique<ProductAdaptiveSampler>(space, seed, options);
  }
  return nullptr;
}

}  // namespace quartet::coordinator::space::internal
