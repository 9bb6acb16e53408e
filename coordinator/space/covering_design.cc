#include "coordinator/space/covering_design.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace quartet::coordinator::space {
namespace {

constexpr int kMinK = 2;
constexpr int kMaxBlockSize = 8;
constexpr int kMaxPoints = 64;

// Tabu tenure: a point moved out of a block may not come back into it for
// kTabuTenure + [0, kTabuTenureSpread] steps (unless that reaches a new best cost).
constexpr int kTabuTenure = 2;
constexpr int kTabuTenureSpread = 2;

// Restarts (see Shrink): the unit of Luby's sequence, in moves per pair of points.
constexpr int64_t kRestartUnitPerPair = 100;

// SplitMix64 (Steele, Lea, Flood 2014): the same sequence on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound), bound > 0 (multiply-shift on the high 32 bits; bound < 2^32).
  uint32_t Below(uint32_t bound) {
    return static_cast<uint32_t>(((Next() >> 32) * static_cast<uint64_t>(bound)) >> 32);
  }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------------
// Greedy start: blocks built point by point, each point the one that covers the most uncovered
// pairs with the points already chosen (ties: most uncovered pairs overall, then random).
// ---------------------------------------------------------------------------------------------

std::vector<int> GreedyBlocks(int m, int k, SplitMix64& rng) {
  std::vector<uint8_t> covered(m * m, 0);
  std::vector<int> degree(m, m - 1);  // uncovered pairs per point
  int64_t uncovered = int64_t{m} * (m - 1) / 2;
  std::vector<int> blocks;
  while (uncovered > 0) {
    int block[kMaxBlockSize];
    bool in[kMaxPoints] = {};
    for (int slot = 0; slot < k; ++slot) {
      int best = -1;
      int64_t best_key = -1;
      for (int p = 0; p < m; ++p) {
        if (in[p]) continue;
        int gain = 0;
        for (int i = 0; i < slot; ++i) gain += !covered[p * m + block[i]];
        // Key: (gain, degree, random): gain < 8 and degree < 64 fit their 16-bit fields.
        const int64_t key = (int64_t{gain} << 48) | (int64_t{degree[p]} << 32) | (rng.Next() >> 32);
        if (key > best_key) {
          best_key = key;
          best = p;
        }
      }
      in[best] = true;
      block[slot] = best;
    }
    for (int i = 0; i < k; ++i) {
      for (int j = i + 1; j < k; ++j) {
        const int a = block[i], b = block[j];
        if (covered[a * m + b]) continue;
        covered[a * m + b] = covered[b * m + a] = 1;
        --degree[a];
        --degree[b];
        --uncovered;
      }
    }
    std::sort(block, block + k);
    blocks.insert(blocks.end(), block, block + k);
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// A fixed number of blocks with their pair counts, the set of uncovered pairs (O(1) sample,
// insert, erase) and, per point, the cells (block * k + slot) where it occurs.
// ---------------------------------------------------------------------------------------------

class CoverState {
 public:
  CoverState(int m, int k, std::vector<int> blocks)
      : m_(m),
        k_(k),
        blocks_(std::move(blocks)),
        count_(m * m, 0),
        uncovered_pos_(m * m, -1),
        incidence_(m),
        incidence_pos_(blocks_.size(), -1) {
    for (int a = 0; a < m; ++a) {
      for (int b = a + 1; b < m; ++b) AddUncovered(a, b);
    }
    for (int cell = 0; cell < static_cast<int>(blocks_.size()); ++cell) AddIncidence(cell);
    for (int block = 0; block < num_blocks(); ++block) {
      const int* points = &blocks_[block * k_];
      for (int i = 0; i < k_; ++i) {
        for (int j = i + 1; j < k_; ++j) Increment(points[i], points[j]);
      }
    }
  }

  int num_blocks() const { return static_cast<int>(blocks_.size()) / k_; }
  int num_uncovered() const { return static_cast<int>(uncovered_.size()); }
  const std::vector<int>& blocks() const { return blocks_; }

  // Pairs that only `block` covers: what dropping it would uncover.
  int UniquePairs(int block) const {
    const int* points = &blocks_[block * k_];
    int unique = 0;
    for (int i = 0; i < k_; ++i) {
      for (int j = i + 1; j < k_; ++j) unique += count_[points[i] * m_ + points[j]] == 1;
    }
    return unique;
  }

  // Drops `block`; the last block takes its index.
  void RemoveBlock(int block) {
    const int last = num_blocks() - 1;
    for (int slot = 0; slot < k_; ++slot) RemoveIncidence(block * k_ + slot);
    const int* points = &blocks_[block * k_];
    for (int i = 0; i < k_; ++i) {
      for (int j = i + 1; j < k_; ++j) Decrement(points[i], points[j]);
    }
    if (block != last) {
      for (int slot = 0; slot < k_; ++slot) RemoveIncidence(last * k_ + slot);
      std::copy_n(&blocks_[last * k_], k_, &blocks_[block * k_]);
      for (int slot = 0; slot < k_; ++slot) AddIncidence(block * k_ + slot);
    }
    blocks_.resize(last * k_);
    incidence_pos_.resize(last * k_);
  }

  // A uniformly random uncovered pair (a, b); num_uncovered() > 0.
  std::pair<int, int> RandomUncovered(SplitMix64& rng) const {
    const int pair = uncovered_[rng.Below(uncovered_.size())];
    return {pair / m_, pair % m_};
  }

  const std::vector<int>& Incidence(int point) const { return incidence_[point]; }

  // Change of the number of uncovered pairs if the point in `cell` is replaced by `z` (not in the
  // cell's block). O(k).
  int Delta(int cell, int z) const {
    const int block = cell / k_;
    const int x = blocks_[cell];
    const int* points = &blocks_[block * k_];
    int delta = 0;
    for (int i = 0; i < k_; ++i) {
      const int y = points[i];
      if (y == x) continue;
      delta += (count_[x * m_ + y] == 1) - (count_[z * m_ + y] == 0);
    }
    return delta;
  }

  // Replaces the point in `cell` by `z` (not in the cell's block). O(k).
  void Replace(int cell, int z) {
    const int block = cell / k_;
    const int x = blocks_[cell];
    const int* points = &blocks_[block * k_];
    for (int i = 0; i < k_; ++i) {
      const int y = points[i];
      if (y == x) continue;
      Decrement(x, y);
      Increment(z, y);
    }
    RemoveIncidence(cell);
    blocks_[cell] = z;
    AddIncidence(cell);
  }

 private:
  void Increment(int a, int b) {
    if (count_[a * m_ + b]++ == 0) RemoveUncovered(std::min(a, b), std::max(a, b));
    ++count_[b * m_ + a];
  }
  void Decrement(int a, int b) {
    --count_[b * m_ + a];
    if (--count_[a * m_ + b] == 0) AddUncovered(std::min(a, b), std::max(a, b));
  }
  void AddUncovered(int a, int b) {
    const int pair = a * m_ + b;
    uncovered_pos_[pair] = static_cast<int>(uncovered_.size());
    uncovered_.push_back(pair);
  }
  void RemoveUncovered(int a, int b) {
    const int pair = a * m_ + b;
    const int pos = uncovered_pos_[pair];
    uncovered_[pos] = uncovered_.back();
    uncovered_pos_[uncovered_[pos]] = pos;
    uncovered_.pop_back();
    uncovered_pos_[pair] = -1;
  }
  void AddIncidence(int cell) {
    std::vector<int>& list = incidence_[blocks_[cell]];
    incidence_pos_[cell] = static_cast<int>(list.size());
    list.push_back(cell);
  }
  void RemoveIncidence(int cell) {
    std::vector<int>& list = incidence_[blocks_[cell]];
    const int pos = incidence_pos_[cell];
    list[pos] = list.back();
    incidence_pos_[list[pos]] = pos;
    list.pop_back();
    incidence_pos_[cell] = -1;
  }

  int m_, k_;
  std::vector<int> blocks_;                  // num_blocks * k points
  std::vector<int> count_;                   // m * m: blocks that cover each pair (symmetric)
  std::vector<int> uncovered_;               // pairs a * m + b, a < b, with count 0
  std::vector<int> uncovered_pos_;           // m * m: position in uncovered_, or -1
  std::vector<std::vector<int>> incidence_;  // point -> cells holding it
  std::vector<int> incidence_pos_;           // cell -> position in incidence_[its point]
};

// ---------------------------------------------------------------------------------------------
// Local search at a fixed number of blocks; see the header. One step: a random uncovered pair
// {a, b}; every move that covers it (in a block holding a, replace another point by b, or the
// same with a and b swapped; Nurmela and Östergård's neighbourhood) is evaluated, and the best
// one that is not tabu is made, even when it uncovers more pairs than it covers.
// ---------------------------------------------------------------------------------------------

struct Move {
  int cell = -1;
  int point = -1;
  int delta = 0;
  uint64_t tie = 0;
};

// The best move covering {a, b}, or cell -1 when there is none. Charges one unit of *moves_left
// per move evaluated.
Move BestMove(const CoverState& state, int m, int k, int a, int b, const std::vector<int64_t>& tabu,
              int64_t step, int best_cost, int64_t* moves_left, SplitMix64& rng) {
  Move best;
  for (int side = 0; side < 2; ++side) {
    const int anchor_point = side == 0 ? a : b;
    const int z = side == 0 ? b : a;
    for (int anchor : state.Incidence(anchor_point)) {
      const int block = anchor / k;
      const bool is_tabu = tabu[static_cast<size_t>(block) * m + z] > step;
      for (int cell = block * k; cell < (block + 1) * k; ++cell) {
        if (cell == anchor) continue;
        --*moves_left;
        const int delta = state.Delta(cell, z);
        // Aspiration: a tabu move is allowed when it reaches a new best cost.
        if (is_tabu && state.num_uncovered() + delta >= best_cost) continue;
        const uint64_t tie = rng.Next();
        if (best.cell < 0 || delta < best.delta || (delta == best.delta && tie > best.tie)) {
          best = {cell, z, delta, tie};
        }
      }
    }
  }
  return best;
}

// Searches until every pair is covered (true) or *moves_left runs out (false).
bool LocalSearch(CoverState& state, int m, int k, int64_t* moves_left, SplitMix64& rng) {
  // tabu[block * m + point]: the step until which point may not enter block.
  std::vector<int64_t> tabu(static_cast<size_t>(state.num_blocks()) * m, -1);
  int best_cost = state.num_uncovered();
  for (int64_t step = 1; state.num_uncovered() > 0; ++step) {
    if (*moves_left <= 0) return false;
    --*moves_left;  // a step with no candidate still costs one
    const auto [a, b] = state.RandomUncovered(rng);
    const Move move = BestMove(state, m, k, a, b, tabu, step, best_cost, moves_left, rng);
    if (move.cell < 0) continue;
    const int removed = state.blocks()[move.cell];
    state.Replace(move.cell, move.point);
    tabu[static_cast<size_t>(move.cell / k) * m + removed] =
        step + kTabuTenure + rng.Below(kTabuTenureSpread + 1);
    best_cost = std::min(best_cost, state.num_uncovered());
  }
  return true;
}

// Luby's restart sequence 1 1 2 1 1 2 4 1 1 2 1 1 2 4 8 ... (term i >= 1).
int64_t Luby(int64_t i) {
  for (;;) {
    int64_t power = 1;
    while (power * 2 - 1 < i) power *= 2;
    if (power * 2 - 1 == i) return power;
    i -= power - 1;
  }
}

// The block the first attempt at a level drops: the one whose removal uncovers the fewest pairs
// (lowest index on ties).
int CheapestBlock(const CoverState& state) {
  int drop = 0, drop_cost = -1;
  for (int block = 0; block < state.num_blocks(); ++block) {
    const int cost = state.UniquePairs(block);
    if (drop_cost < 0 || cost < drop_cost) {
      drop = block;
      drop_cost = cost;
    }
  }
  return drop;
}

// Shrinks a valid covering one block at a time towards `target` blocks. Each attempt at a level
// copies the last valid covering, drops one block (the cheapest first, then random ones) and
// repairs with LocalSearch under a cap of kRestartUnitPerPair * C(m, 2) * Luby(attempt) moves.
// Returns the smallest valid covering reached when the budget runs out or `target` is reached.
std::vector<int> Shrink(int m, int k, std::vector<int> blocks, int64_t target, int64_t budget,
                        SplitMix64& rng) {
  const int64_t unit = kRestartUnitPerPair * (int64_t{m} * (m - 1) / 2);
  CoverState valid(m, k, std::move(blocks));
  int64_t moves_left = budget;
  int64_t attempt = 0;
  while (valid.num_blocks() > target && moves_left > 0) {
    CoverState state = valid;
    ++attempt;
    state.RemoveBlock(attempt == 1 ? CheapestBlock(state) : rng.Below(state.num_blocks()));
    const int64_t cap = std::min(moves_left, unit * Luby(attempt));
    int64_t cap_left = cap;
    const bool covered = LocalSearch(state, m, k, &cap_left, rng);
    moves_left -= cap - cap_left;
    if (covered) {
      valid = std::move(state);
      attempt = 0;
    }
  }
  return valid.blocks();
}

}  // namespace

int64_t SchonheimBound(int m, int k) {
  if (k < kMinK || k > m) return 0;
  const int64_t inner = (m - 1 + k - 2) / (k - 1);  // ceil((m - 1) / (k - 1))
  return (int64_t{m} * inner + k - 1) / k;
}

std::vector<std::vector<int>> BuildPairCovering(int m, int k, const CoveringOptions& options) {
  std::vector<std::vector<int>> result;
  if (k < kMinK || k > m || k > kMaxBlockSize || m > kMaxPoints) return result;
  SplitMix64 rng(options.seed);
  std::vector<int> flat = GreedyBlocks(m, k, rng);
  const int64_t bound = SchonheimBound(m, k);
  if (static_cast<int64_t>(flat.size()) / k > bound && options.max_moves > 0) {
    flat = Shrink(m, k, std::move(flat), bound, options.max_moves, rng);
  }
  for (size_t start = 0; start < flat.size(); start += k) {
    std::vector<int> block(flat.begin() + start, flat.begin() + start + k);
    std::sort(block.begin(), block.end());
    result.push_back(std::move(block));
  }
  std::sort(result.begin(), result.end());
  return result;
}

}  // namespace quartet::coordinator::space
