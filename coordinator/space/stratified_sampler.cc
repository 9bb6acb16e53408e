// STRATIFIED: every draw takes the k' free families with the smallest counts, ties at random, never
// a drawn combination (BalancedChoice), so family counts stay within 1 of each other at every
// prefix. When every balance-preserving combination is drawn (late in small spaces) the draw is
// relaxed to the most even undrawn one and counted in relaxed_draws().
#include "absl/strings/str_cat.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kStratifiedTag = 0x7374726174ULL;  // "strat"

class StratifiedSampler : public Sampler {
 public:
  StratifiedSampler(const Space& space, uint64_t seed)
      : free_(space.n() - static_cast<int>(space.required().size()),
              space.k() - static_cast<int>(space.required().size())),
        state_(&free_, CoverageState::Tracking()),
        seed_(seed) {}

  SamplerKind kind() const override { return SamplerKind::kStratified; }

  absl::StatusOr<uint64_t> Next() override {
    if (state_.exhausted()) {
      return absl::OutOfRangeError("every combination of the space is drawn");
    }
    const uint64_t key = DrawKey(seed_, state_.draws(), kStratifiedTag);
    uint64_t rank;
    if (!BalancedChoice(state_, key, &rank)) {
      rank = RelaxedBalancedChoice(state_, key);
      ++relaxed_;
    }
    Record(rank);
    return rank;
  }

  absl::Status MarkDrawn(uint64_t rank) override {
    if (rank >= free_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", rank, " is outside the space [0, ", free_.size(), ")"));
    }
    if (state_.Drawn(rank)) {
      return absl::AlreadyExistsError(absl::StrCat("rank ", rank, " is already drawn"));
    }
    Record(rank);
    return absl::OkStatus();
  }

  void Observe(uint64_t /*rank*/, double /*accuracy*/) override {}
  uint64_t draws() const override { return state_.draws(); }
  uint64_t relaxed_draws() const override { return relaxed_; }

 private:
  void Record(uint64_t rank) {
    int c[kMaxK];
    free_.Unrank(rank, c);
    state_.Add(rank, c);
  }

  FreeSpace free_;
  CoverageState state_;
  uint64_t seed_;
  uint64_t relaxed_ = 0;
};

}  // namespace

std::unique_ptr<Sampler> NewStratifiedSampler(const Space& space, uint64_t seed) {
  return std::make_unique<StratifiedSampler>(space, seed);
}

}  // namespace quartet::coordinator::space::internal
