// STRATIFIED: every draw takes the k' free families with the smallest counts, ties at random, never
// a drawn combination (BalancedChoice), so family counts stay within 1 of each other at every
// prefix. When every balance-preserving combination is drawn (late in small spaces) the draw is
// relaxed to the most even undrawn one and counted in relaxed_draws().
#include "common/status_macros.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kStratifiedTag = 0x7374726174ULL;  // "strat"

class StratifiedSampler : public CoverageSampler {
 public:
  StratifiedSampler(const Space& space, uint64_t seed)
      : CoverageSampler(space, seed, CoverageState::Tracking()) {}

  SamplerKind kind() const override { return SamplerKind::kStratified; }

  absl::StatusOr<uint64_t> Next() override {
    QUARTET_RETURN_IF_ERROR(CheckNotExhausted());
    const uint64_t key = DrawKey(seed_, state_.draws(), kStratifiedTag);
    uint64_t rank;
    if (!BalancedChoice(state_, key, &rank)) {
      rank = RelaxedBalancedChoice(state_, key);
      ++relaxed_;
    }
    Record(rank);
    return rank;
  }
};

}  // namespace

std::unique_ptr<Sampler> NewStratifiedSampler(const Space& space, uint64_t seed) {
  return std::make_unique<StratifiedSampler>(space, seed);
}

}  // namespace quartet::coordinator::space::internal
