// k-subsets of [0, n) and their ranks. Pure functions, no I/O, thread-safe.
//
// Ranks are lexicographic (the order of Python's itertools.combinations over sorted names),
// computed with the combinatorial number system: for a sorted combination
// c_0 < ... < c_{k-1} of [0, n),
//   rank(c) = C(n, k) - 1 - sum_i C(n - 1 - c_i, k - i).
// Supports n <= 64 and k <= 8 (C(64, 8) = 4,426,165,368); all arithmetic is checked.
#ifndef QUARTET_COORDINATOR_SPACE_COMBINATORICS_H_
#define QUARTET_COORDINATOR_SPACE_COMBINATORICS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace quartet::coordinator::space {

inline constexpr int kMaxN = 64;
inline constexpr int kMaxK = 8;

// C(n, k) for 0 <= n <= kMaxN, 0 <= k <= kMaxK (0 when k > n). Table lookup.
uint64_t Binomial(int n, int k);

// C(n, k) with range and overflow checks: INVALID_ARGUMENT outside 0 <= k, 0 <= n <= kMaxN,
// k <= kMaxK.
absl::StatusOr<uint64_t> CheckedBinomial(int n, int k);

// Lexicographic rank of a sorted combination of distinct values in [0, n). INVALID_ARGUMENT when
// the combination is unsorted, has duplicates or values outside [0, n), or k/n are out of range.
absl::StatusOr<uint64_t> Rank(absl::Span<const int> combination, int n);

// The combination of lexicographic rank `rank` among the k-subsets of [0, n), sorted.
// OUT_OF_RANGE when rank >= C(n, k); INVALID_ARGUMENT for n or k out of range.
absl::StatusOr<std::vector<int>> Unrank(uint64_t rank, int n, int k);

// Unchecked versions for hot loops; preconditions as above. `out` receives k sorted values.
uint64_t RankUnchecked(const int* combination, int k, int n);
void UnrankUnchecked(uint64_t rank, int n, int k, int* out);

// Index of the unordered pair {a, b}, a != b, in [0, C(n, 2)): pairs in lexicographic order.
int PairIndex(int a, int b, int n);
// Index of the triple {a, b, c} (distinct) in [0, C(n, 3)), lexicographic.
int TripleIndex(int a, int b, int c, int n);

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_COMBINATORICS_H_
