// Pair coverings (covering designs C(m, k, 2)): lists of k-subsets of [0, m), called blocks, such
// that every pair of [0, m) lies in at least one block. Pure functions, no I/O, thread-safe.
//
// Method (general; no algebraic special cases):
//  1. Greedy start: blocks built point by point, each point the one that covers the most
//     uncovered pairs with the points already in the block (ties: most uncovered pairs overall,
//     then random). Always a valid covering.
//  2. Shrinking: repeatedly drop one block and repair the covering with a local search at the
//     fixed, smaller number of blocks; stop at the Schönheim bound (no covering is smaller) or
//     when the move budget is spent, and return the smallest valid covering reached.
//     - Local search (tabu search in the neighbourhood of Nurmela and Östergård, "Upper bounds
//       for covering designs by simulated annealing", 1993): the cost is the number of uncovered
//       pairs; a step takes a random uncovered pair {a, b}, evaluates every move that covers it
//       (in a block that holds a, replace one other point by b; or with a and b swapped) and
//       makes the best one, ties at random, even when it uncovers more than it covers. A point
//       just moved out of a block may not come back for a few steps unless that reaches a new
//       best cost.
//     - Restarts: the search times at one level are heavy-tailed, so each attempt at a level runs
//       under a cap that follows Luby's sequence; a failed attempt restarts from the last valid
//       covering with another (random) block dropped.
//
// Figures (one core, Release build, default budget): (29, 4) reaches 73 blocks = SchonheimBound,
// the optimum, in about 1 ms for every seed tried (greedy alone: 81); (20, 4) 35, (29, 3) 136 and
// (35, 4) 105 (within 0.25 s) also reach the bound. Others stay above it, e.g. (29, 5) 45-46
// against 41, (64, 8) 92 against 72 (the affine plane AG(2, 8)), (28, 4) 65 against 63 (the
// Hermitian unital); no algebraic construction is built in.
#ifndef QUARTET_COORDINATOR_SPACE_COVERING_DESIGN_H_
#define QUARTET_COORDINATOR_SPACE_COVERING_DESIGN_H_

#include <cstdint>
#include <vector>

namespace quartet::coordinator::space {

struct CoveringOptions {
  // The whole result is a function of (m, k, seed, max_moves): the same blocks on every run and
  // every platform (a private SplitMix64 generator, integer arithmetic only).
  uint64_t seed = 0;
  // Budget of the shrinking phase, in moves evaluated (one move: O(k) work on an m x m table of
  // pair counts; each search step also costs one). With the default, every (m <= 64, k <= 8)
  // was measured at under 0.8 s of one core (slowest: k = 7, 8 with m near 20); the greedy start
  // costs O(blocks * k^2 * m) on top (at most about 1 ms). 0: the greedy covering only.
  int64_t max_moves = 32'000'000;
};

// A covering of the pairs of [0, m) by k-subsets: each block sorted, the blocks sorted
// lexicographically. Never larger than the greedy start of the same seed, never smaller than
// SchonheimBound(m, k). Supports 2 <= k <= min(m, 8), m <= 64 (k == m: one block); returns an
// empty list for k < 2 and for arguments outside that range.
std::vector<std::vector<int>> BuildPairCovering(int m, int k, const CoveringOptions& options);

// The Schönheim lower bound L(m, k, 2) = ceil(m / k * ceil((m - 1) / (k - 1))) on the size of any
// such covering; 0 for k < 2 or k > m. O(1).
int64_t SchonheimBound(int m, int k);

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_COVERING_DESIGN_H_
