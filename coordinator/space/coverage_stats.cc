#include "coordinator/space/coverage_stats.h"

#include <algorithm>
#include <cmath>

namespace quartet::coordinator::space {

CoverageFigures ComputeCoverage(absl::Span<const int64_t> family_counts,
                                absl::Span<const int64_t> pair_counts, int64_t draws, int k) {
  CoverageFigures out;
  const int n = static_cast<int>(family_counts.size());
  if (n == 0) return out;
  int64_t max_count = family_counts[0], min_count = family_counts[0], total = 0;
  for (int64_t c : family_counts) {
    max_count = std::max(max_count, c);
    min_count = std::min(min_count, c);
    total += c;
    if (c > 0) ++out.families_seen;
  }
  out.max_family_deviation = max_count - min_count;
  if (draws > 0) {
    out.anchoring_index = static_cast<double>(max_count) * n / (static_cast<double>(draws) * k);
    out.max_family_share = static_cast<double>(max_count) / static_cast<double>(draws);
  }
  if (total > 0 && n > 1) {
    double h = 0;
    for (int64_t c : family_counts) {
      if (c == 0) continue;
      const double p = static_cast<double>(c) / static_cast<double>(total);
      h -= p * std::log(p);
    }
    out.family_entropy = h / std::log(static_cast<double>(n));
  }
  if (!pair_counts.empty()) {
    out.min_pair_count = pair_counts[0];
    out.max_pair_count = pair_counts[0];
    for (int64_t c : pair_counts) {
      out.min_pair_count = std::min(out.min_pair_count, c);
      out.max_pair_count = std::max(out.max_pair_count, c);
      if (c > 0) ++out.pairs_seen;
    }
    out.pair_coverage =
        static_cast<double>(out.pairs_seen) / static_cast<double>(pair_counts.size());
  }
  return out;
}

}  // namespace quartet::coordinator::space
