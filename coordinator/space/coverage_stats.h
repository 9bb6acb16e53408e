// Coverage figures of a set of drawn combinations, from per-family and per-pair counts. Pure
// functions; the coordinator's reports and bench/sampler_coverage both use them.
#ifndef QUARTET_COORDINATOR_SPACE_COVERAGE_STATS_H_
#define QUARTET_COORDINATOR_SPACE_COVERAGE_STATS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace quartet::coordinator::space {

struct CoverageFigures {
  // Largest family count over the uniform expectation draws * k / n (1 = perfectly even; the
  // published campaign's AirNet had 29 / 4 = 7.25).
  double anchoring_index = 0;
  // Share of draws containing the most frequent family.
  double max_family_share = 0;
  // Entropy of the family-count distribution divided by log(n), in [0, 1].
  double family_entropy = 0;
  // Largest minus smallest family count.
  int64_t max_family_deviation = 0;
  // Families with a non-zero count.
  int families_seen = 0;
  // Pairs with a non-zero count, and that over C(n, 2).
  int64_t pairs_seen = 0;
  double pair_coverage = 0;
  int64_t min_pair_count = 0;
  int64_t max_pair_count = 0;
};

// `family_counts` has n entries; `pair_counts` has C(n, 2) entries in PairIndex order; `draws` is
// the number of combinations the counts come from, `k` their size.
CoverageFigures ComputeCoverage(absl::Span<const int64_t> family_counts,
                                absl::Span<const int64_t> pair_counts, int64_t draws, int k);

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_COVERAGE_STATS_H_
