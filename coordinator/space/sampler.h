// Samplers choose which combinations of a campaign's space to train, one draw at a time.
//
// Contract shared by every sampler:
// - Deterministic: the same space, seed, options and sequence of calls give the same draws. Each
//   draw's randomness is derived from (seed, number of draws so far), never from a global RNG.
// - Resumable from stored state alone: a sampler rebuilt after a restart with MarkDrawn() for every
//   combination already drawn (in any order) and Observe() for every result continues exactly as
//   the original would have.
// - Never re-issues a combination: Next() returns ranks not drawn before, and OUT_OF_RANGE once
//   the space is exhausted. (Repeats of a combination are the caller's business.)
// - A sampler sees coverage state (counts, the set of drawn combinations, results), never the
//   whole ordered history.
// Not thread-safe: the caller serialises calls per campaign.
#ifndef QUARTET_COORDINATOR_SPACE_SAMPLER_H_
#define QUARTET_COORDINATOR_SPACE_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/space/product_space.h"
#include "coordinator/space/space.h"

namespace quartet::coordinator::space {

enum class SamplerKind {
  kLexicographic,  // rank order: the published alphabetical enumeration
  kUniform,        // uniform without replacement, O(1) memory per draw (seeded bijection)
  kStratified,     // family counts within 1 of each other at every prefix
  kPairCovering,   // greedy: most unseen pairs per draw, then triples; ties by family balance
  kAdaptive,       // pair covering, then Thompson sampling on an additive family + pair model
};

// "LEXICOGRAPHIC", "UNIFORM", ... and back (case-insensitive; INVALID_ARGUMENT otherwise).
const char* SamplerKindName(SamplerKind kind);
absl::StatusOr<SamplerKind> ParseSamplerKind(absl::string_view name);

struct SamplerOptions {
  // ADAPTIVE: share of post-coverage draws that are stratified exploration draws, in [0, 1].
  double exploration_share = 0.2;
};

class Sampler {
 public:
  virtual ~Sampler() = default;

  virtual SamplerKind kind() const = 0;

  // Draws the next combination and records it as drawn. Returns its rank in the space.
  // OUT_OF_RANGE when every combination has been drawn.
  virtual absl::StatusOr<uint64_t> Next() = 0;

  // Records a combination drawn earlier (rebuilding after a restart). INVALID_ARGUMENT for a rank
  // outside the space; ALREADY_EXISTS when it is already recorded.
  virtual absl::Status MarkDrawn(uint64_t rank) = 0;

  // Feeds a measured accuracy of a drawn combination (ADAPTIVE learns from it; the others ignore
  // it). Several observations of one combination (repeats) are all used.
  virtual void Observe(uint64_t rank, double accuracy) = 0;

  // Combinations drawn so far (by Next or MarkDrawn).
  virtual uint64_t draws() const = 0;

  // Draws returned by Next() on this instance that had to give up the sampler's balance guarantee
  // because every balance-preserving combination was already drawn (STRATIFIED, and ADAPTIVE's
  // stratified exploration draws); such a draw keeps the family counts as even as the undrawn
  // combinations allow. 0 for the other samplers. Not restored by MarkDrawn().
  virtual uint64_t relaxed_draws() const { return 0; }
};

// Builds a sampler over `space`. INVALID_ARGUMENT for bad options (naming the field).
absl::StatusOr<std::unique_ptr<Sampler>> CreateSampler(SamplerKind kind, const Space& space,
                                                       uint64_t seed,
                                                       const SamplerOptions& options = {});

// A uniform value in [0, 1), a pure function of its arguments (the samplers' SplitMix64 mixer); for
// seeded draws that must be the same on every platform and after every restart.
double SeededUnit(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

// Builds a sampler over a product space (family axis x parameter axes); ranks are the product
// space's point ranks. Without parameter axes this is CreateSampler(kind, space.families(), ...):
// the same draws, rank for rank. With axes, STRATIFIED also keeps every axis's level counts within
// 1, PAIR_COVERING also covers (family, level) cells and (level, level) pairs, and ADAPTIVE's model
// also has level effects and family x level interactions (product_sampler.cc).
absl::StatusOr<std::unique_ptr<Sampler>> CreateSampler(SamplerKind kind, const ProductSpace& space,
                                                       uint64_t seed,
                                                       const SamplerOptions& options = {});

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_SAMPLER_H_
