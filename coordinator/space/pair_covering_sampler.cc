// PAIR_COVERING: while some pair of free families has never been drawn together, each draw covers
// as many unseen pairs as possible (ties: smallest sum of family counts, then random); then as many
// unseen triples as possible; then family balance, then pair balance.
//
// On exhaustive spaces the pair phase follows a covering plan fixed by the seed at construction:
// the shortest of several randomized greedy runs (BuildPairCoveringPlan). Next() issues the first
// plan entry that is undrawn and still covers an unseen pair; both conditions only ever turn false
// as draws accumulate, so the choice depends on the drawn set alone and a rebuilt sampler resumes
// exactly. Draws marked from outside the plan are accounted for (entries they make useless are
// skipped); if the plan runs out with pairs unseen, plain greedy choices take over.
#include "common/status_macros.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kPairCoveringTag = 0x7061697273ULL;  // "pairs"

class PairCoveringSampler : public CoverageSampler {
 public:
  PairCoveringSampler(const Space& space, uint64_t seed)
      : CoverageSampler(space, seed, Tracking()), plan_(BuildPairCoveringPlan(free_, seed)) {}

  SamplerKind kind() const override { return SamplerKind::kPairCovering; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t rank = PlannedCoverChoice(state_, plan_, &plan_pos_,
                                             DrawKey(seed_, state_.draws(), kPairCoveringTag));
    Record(rank);
    return rank;
  }

 private:
  static CoverageState::Tracking Tracking() {
    CoverageState::Tracking tracking;
    tracking.pairs = true;
    tracking.triples = true;
    tracking.gains = true;
    return tracking;
  }

  std::vector<uint64_t> plan_;
  size_t plan_pos_ = 0;  // entries before it are drawn or cover no unseen pair
};

}  // namespace

std::unique_ptr<Sampler> NewPairCoveringSampler(const Space& space, uint64_t seed) {
  return std::make_unique<PairCoveringSampler>(space, seed);
}

}  // namespace quartet::coordinator::space::internal
