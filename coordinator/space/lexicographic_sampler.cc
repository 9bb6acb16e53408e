// LEXICOGRAPHIC: ranks in increasing order, i.e. the alphabetical enumeration of the published
// campaign, with its bias (the first family is in the first C(m - 1, k' - 1) draws).
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

class LexicographicSampler : public PermutationSampler {
 public:
  explicit LexicographicSampler(uint64_t size) : PermutationSampler(size) {}
  SamplerKind kind() const override { return SamplerKind::kLexicographic; }

 protected:
  uint64_t Forward(uint64_t index) const override { return index; }
  uint64_t Inverse(uint64_t rank) const override { return rank; }
};

}  // namespace

std::unique_ptr<Sampler> NewLexicographicSampler(uint64_t size) {
  return std::make_unique<LexicographicSampler>(size);
}

}  // namespace quartet::coordinator::space::internal
