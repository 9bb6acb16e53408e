#include "coordinator/space/product_state.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kPlanTag = 0x70706c616eULL;     // "pplan"
constexpr uint64_t kExtendTag = 0x657874656eULL;   // "exten"
constexpr uint64_t kLevelTag = 0x6c6576656cULL;    // "level"
constexpr uint64_t kOrderTag = 0x6f72646572ULL;    // "order"
constexpr uint64_t kBalanceTag = 0x62616c616eULL;  // "balan"
// Random tie choices tried before the systematic search in BalancedPoint, and the points that
// search visits at most.
constexpr int kRandomTries = 8;
constexpr uint64_t kSystematicBudget = uint64_t{1} << 16;
// RelaxedPoint: spaces up to kRelaxedScanLimit points are scanned whole; on larger ones it
// compares every level tuple (up to kRelaxedLevelScan) of kRelaxedFamilyTries balance-preserving
// family choices and kRelaxedProbes random undrawn points.
constexpr uint64_t kRelaxedScanLimit = uint64_t{1} << 16;
constexpr uint64_t kRelaxedLevelScan = 4096;
constexpr int kRelaxedFamilyTries = 8;
constexpr int kRelaxedProbes = 256;
constexpr int kGreedyAttempts = 16;
// Level moves the plan's local search evaluates at most.
constexpr int64_t kLevelSearchMoves = int64_t{1} << 18;

inline uint64_t TieHash(uint64_t key, uint64_t value) { return Mix64(key ^ (value * kGolden)); }

// Sorted combination of the forced families and `picks`.
void ComposeFamilies(const BalancedChoices& choices, const int* picks, int k, int* out) {
  for (int i = 0; i < choices.num_forced; ++i) out[i] = choices.forced[i];
  for (int i = 0; i < choices.need; ++i) out[choices.num_forced + i] = picks[i];
  std::sort(out, out + k);
}

int64_t Deviation(const std::vector<int64_t>& counts, size_t begin, size_t end,
                  const std::vector<char>& plus_one) {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (size_t i = begin; i < end; ++i) {
    const int64_t c = counts[i] + (plus_one.empty() ? 0 : plus_one[i]);
    lo = std::min(lo, c);
    hi = std::max(hi, c);
  }
  return end > begin ? hi - lo : 0;
}

}  // namespace

ProductState::ProductState(const ProductSpace& space)
    : space_(&space),
      free_(space.has_families()
                ? space.families().n() - static_cast<int>(space.families().required().size())
                : 0,
            space.has_families()
                ? space.families().k() - static_cast<int>(space.families().required().size())
                : 0),
      drawn_(space.size()) {
  const int m = free_.m(), k = free_.k();
  for (int a = 0; a < space.num_axes(); ++a) {
    offset_.push_back(total_levels_);
    total_levels_ += space.levels(a);
  }
  family_counts_.assign(m, 0);
  pair_counts_.assign(free_.num_pairs(), 0);
  level_counts_.assign(total_levels_, 0);
  cell_counts_.assign(static_cast<size_t>(m) * total_levels_, 0);
  uncovered_cells_of_.assign(m, total_levels_);
  uncovered_pairs_ = k >= 2 ? free_.num_pairs() : 0;
  uncovered_cells_ = k >= 1 ? int64_t{m} * total_levels_ : 0;
  if (space.num_axes() >= 2 && int64_t{total_levels_} * total_levels_ <= kMaxTrackedLevelPairs) {
    level_pair_counts_.assign(static_cast<size_t>(total_levels_) * total_levels_, 0);
    for (int a = 0; a < space.num_axes(); ++a) {
      for (int b = a + 1; b < space.num_axes(); ++b) {
        uncovered_level_pairs_ += int64_t{space.levels(a)} * space.levels(b);
      }
    }
  }
}

uint64_t ProductState::Point(const int* families, const int* levels) const {
  const uint64_t combination = free_.k() > 0 ? free_.Rank(families) : 0;
  return space_->Rank(combination, levels);
}

void ProductState::Decode(uint64_t point, int* families, int* levels) const {
  uint64_t combination;
  space_->Unrank(point, &combination, levels);
  if (free_.k() > 0) free_.Unrank(combination, families);
}

bool ProductState::Add(uint64_t point) {
  if (!drawn_.Insert(point)) return false;
  int c[kMaxK], l[kMaxAxes];
  Decode(point, c, l);
  const int k = free_.k(), axes = num_axes();
  for (int i = 0; i < k; ++i) {
    ++family_counts_[c[i]];
    for (int j = i + 1; j < k; ++j) {
      if (pair_counts_[free_.Pair(c[i], c[j])]++ == 0) --uncovered_pairs_;
    }
  }
  for (int a = 0; a < axes; ++a) {
    const int id = LevelId(a, l[a]);
    ++level_counts_[id];
    for (int i = 0; i < k; ++i) {
      if (cell_counts_[static_cast<size_t>(c[i]) * total_levels_ + id]++ == 0) {
        --uncovered_cells_;
        --uncovered_cells_of_[c[i]];
      }
    }
    if (!tracks_level_pairs()) continue;
    for (int b = a + 1; b < axes; ++b) {
      const int other = LevelId(b, l[b]);
      ++level_pair_counts_[static_cast<size_t>(other) * total_levels_ + id];
      if (level_pair_counts_[static_cast<size_t>(id) * total_levels_ + other]++ == 0) {
        --uncovered_level_pairs_;
      }
    }
  }
  return true;
}

int ProductState::Gain(const int* c, const int* l) const {
  const int k = free_.k(), axes = num_axes();
  int gain = 0;
  for (int i = 0; i < k; ++i) {
    for (int j = i + 1; j < k; ++j) gain += pair_count(c[i], c[j]) == 0;
  }
  for (int a = 0; a < axes; ++a) {
    for (int i = 0; i < k; ++i) gain += cell_count(c[i], a, l[a]) == 0;
    if (!tracks_level_pairs()) continue;
    for (int b = a + 1; b < axes; ++b) gain += level_pair_count(a, l[a], b, l[b]) == 0;
  }
  return gain;
}

int64_t ProductState::FamilyDeviationWith(const int* families) const {
  if (free_.m() == 0) return 0;
  std::vector<char> plus(free_.m(), 0);
  for (int i = 0; i < free_.k(); ++i) plus[families[i]] = 1;
  return Deviation(family_counts_, 0, family_counts_.size(), plus);
}

int64_t ProductState::LevelDeviationWith(const int* chosen) const {
  std::vector<char> plus(total_levels_, 0);
  for (int a = 0; a < num_axes(); ++a) plus[LevelId(a, chosen[a])] = 1;
  int64_t worst = 0;
  for (int a = 0; a < num_axes(); ++a) {
    worst = std::max(worst, Deviation(level_counts_, offset_[a], offset_[a] + levels(a), plus));
  }
  return worst;
}

// ---- Balanced choice ----------------------------------------------------------------------------

namespace {

// The balance-preserving choices of a product state: families as BalancedChoices, and per axis
// the levels at the smallest count.
struct PointChoices {
  bool families = false;
  BalancedChoices family;
  uint64_t family_total = 1;
  std::vector<std::vector<int>> levels;  // per axis
  uint64_t total = 1;                    // family_total * prod |levels[a]|, saturated
};

PointChoices ComputePointChoices(const ProductState& state) {
  PointChoices out;
  if (state.m() > 0) {
    out.families = true;
    out.family = ComputeBalancedChoices(state.family_counts().data(), state.m(), state.k());
    out.family_total = Binomial(out.family.num_tied, out.family.need);
  }
  out.total = out.family_total;
  out.levels.resize(state.num_axes());
  for (int a = 0; a < state.num_axes(); ++a) {
    int64_t lowest = std::numeric_limits<int64_t>::max();
    for (int l = 0; l < state.levels(a); ++l) lowest = std::min(lowest, state.level_count(a, l));
    for (int l = 0; l < state.levels(a); ++l) {
      if (state.level_count(a, l) == lowest) out.levels[a].push_back(l);
    }
    const uint64_t size = out.levels[a].size();
    out.total = out.total > kMaxSpaceSize / size ? kMaxSpaceSize : out.total * size;
  }
  return out;
}

// The index-th balance-preserving point (family choice most significant).
uint64_t ChoicePoint(const ProductState& state, const PointChoices& choices, uint64_t index) {
  int c[kMaxK], l[kMaxAxes];
  for (int a = state.num_axes() - 1; a >= 0; --a) {
    const uint64_t size = choices.levels[a].size();
    l[a] = choices.levels[a][index % size];
    index /= size;
  }
  if (choices.families) {
    int sub[kMaxK], picks[kMaxK];
    UnrankUnchecked(index % choices.family_total, choices.family.num_tied, choices.family.need,
                    sub);
    for (int j = 0; j < choices.family.need; ++j) picks[j] = choices.family.tied[sub[j]];
    ComposeFamilies(choices.family, picks, state.k(), c);
  }
  return state.Point(c, l);
}

// A random balance-preserving family choice into c (nothing without a family axis).
void RandomFamilies(const ProductState& state, const PointChoices& choices, Rng* rng, int* c) {
  if (!choices.families) return;
  int pool[kMaxN];
  const BalancedChoices& f = choices.family;
  std::copy(f.tied, f.tied + f.num_tied, pool);
  for (int i = 0; i < f.need; ++i) {
    std::swap(pool[i], pool[i + static_cast<int>(rng->Below(f.num_tied - i))]);
  }
  ComposeFamilies(f, pool, state.k(), c);
}

uint64_t RandomChoicePoint(const ProductState& state, const PointChoices& choices, Rng* rng) {
  int c[kMaxK], l[kMaxAxes];
  RandomFamilies(state, choices, rng, c);
  for (int a = 0; a < state.num_axes(); ++a) {
    l[a] = choices.levels[a][rng->Below(choices.levels[a].size())];
  }
  return state.Point(c, l);
}

}  // namespace

bool BalancedPoint(const ProductState& state, uint64_t key, uint64_t* point) {
  const PointChoices choices = ComputePointChoices(state);
  Rng rng(key);
  for (int attempt = 0; attempt < kRandomTries; ++attempt) {
    const uint64_t p = RandomChoicePoint(state, choices, &rng);
    if (!state.Drawn(p)) {
      *point = p;
      return true;
    }
  }
  const uint64_t start = rng.Below(choices.total);
  const uint64_t visits = std::min(choices.total, kSystematicBudget);
  for (uint64_t i = 0; i < visits; ++i) {
    const uint64_t index = start + i < choices.total ? start + i : start + i - choices.total;
    const uint64_t p = ChoicePoint(state, choices, index);
    if (!state.Drawn(p)) {
      *point = p;
      return true;
    }
  }
  return false;
}

uint64_t RelaxedPoint(const ProductState& state, uint64_t key) {
  const uint64_t size = state.space().size();
  uint64_t best = size, best_tie = 0;
  int64_t best_deviation = std::numeric_limits<int64_t>::max(), best_sum = 0;
  int c[kMaxK], l[kMaxAxes];
  auto consider = [&](uint64_t p) {
    state.Decode(p, c, l);
    const int64_t deviation = state.FamilyDeviationWith(c) + state.LevelDeviationWith(l);
    int64_t sum = 0;
    for (int i = 0; i < state.k(); ++i) sum += state.family_count(c[i]);
    for (int a = 0; a < state.num_axes(); ++a) sum += state.level_count(a, l[a]);
    const uint64_t tie = TieHash(key, p);
    if (std::tie(deviation, sum) < std::tie(best_deviation, best_sum) ||
        (deviation == best_deviation && sum == best_sum && tie > best_tie)) {
      best = p;
      best_deviation = deviation;
      best_sum = sum;
      best_tie = tie;
    }
  };
  if (size <= kRelaxedScanLimit) {
    for (uint64_t p = 0; p < size; ++p) {
      if (!state.Drawn(p)) consider(p);
    }
    return best;
  }
  // Large spaces: every level tuple of a few balance-preserving family choices, and random
  // undrawn points.
  Rng rng(key);
  const PointChoices choices = ComputePointChoices(state);
  const ProductSpace& space = state.space();
  if (space.level_points() <= kRelaxedLevelScan) {
    for (int t = 0; t < kRelaxedFamilyTries; ++t) {
      RandomFamilies(state, choices, &rng, c);
      const uint64_t combination = state.k() > 0 ? state.free().Rank(c) : 0;
      for (uint64_t index = 0; index < space.level_points(); ++index) {
        const uint64_t p = combination * space.level_points() + index;
        if (!state.Drawn(p)) consider(p);
      }
    }
  }
  for (int probe = 0; probe < kRelaxedProbes; ++probe) {
    consider(state.drawn().FirstFreeFrom(rng.Below(size)));
  }
  return best;
}

// ---- Greedy coverage ----------------------------------------------------------------------------

namespace {

// Families one by one: most unseen pairs with those chosen, then most unseen cells, then lowest
// count, then random (`random_first`: the first family at random).
void GreedyFamilies(const ProductState& state, bool random_first, Rng* rng, int* c) {
  const int m = state.m(), k = state.k();
  bool in[kMaxN] = {};
  for (int slot = 0; slot < k; ++slot) {
    int best = -1;
    int64_t b0 = 0, b1 = 0, b2 = 0;
    uint64_t bt = 0;
    for (int f = 0; f < m; ++f) {
      if (in[f]) continue;
      int64_t s0 = 0;
      for (int i = 0; i < slot; ++i) s0 += state.pair_count(f, c[i]) == 0;
      const int64_t s1 = state.uncovered_cells_of(f), s2 = -state.family_count(f);
      const uint64_t tie = rng->Next();
      if (random_first && slot == 0) {
        if (best < 0 || tie > bt) {
          best = f;
          bt = tie;
        }
        continue;
      }
      if (best < 0 || std::tie(s0, s1, s2, tie) > std::tie(b0, b1, b2, bt)) {
        best = f;
        b0 = s0;
        b1 = s1;
        b2 = s2;
        bt = tie;
      }
    }
    in[best] = true;
    c[slot] = best;
  }
  std::sort(c, c + k);
}

// On axis `a`: the level with the most unseen cells (with families c) and unseen level pairs
// (with the other axes' levels in l; only axes < a on the first pass), then lowest count, then
// random.
int GreedyLevel(const ProductState& state, const int* c, const int* l, int a, bool all_axes,
                Rng* rng) {
  int best = 0;
  int64_t b0 = -1, b1 = 0;
  uint64_t bt = 0;
  for (int level = 0; level < state.levels(a); ++level) {
    int64_t s0 = 0;
    for (int i = 0; i < state.k(); ++i) s0 += state.cell_count(c[i], a, level) == 0;
    if (state.tracks_level_pairs()) {
      for (int b = 0; b < state.num_axes(); ++b) {
        if (b == a || (!all_axes && b > a)) continue;
        s0 += (a < b ? state.level_pair_count(a, level, b, l[b])
                     : state.level_pair_count(b, l[b], a, level)) == 0;
      }
    }
    const int64_t s1 = -state.level_count(a, level);
    const uint64_t tie = rng->Next();
    if (std::tie(s0, s1, tie) > std::tie(b0, b1, bt)) {
      best = level;
      b0 = s0;
      b1 = s1;
      bt = tie;
    }
  }
  return best;
}

}  // namespace

uint64_t GreedyCoverPoint(const ProductState& state, uint64_t key) {
  Rng rng(key);
  int c[kMaxK], l[kMaxAxes] = {};
  for (int attempt = 0; attempt < kGreedyAttempts; ++attempt) {
    GreedyFamilies(state, attempt > 0, &rng, c);
    for (int pass = 0; pass < 2; ++pass) {
      for (int a = 0; a < state.num_axes(); ++a) {
        l[a] = GreedyLevel(state, c, l, a, pass > 0, &rng);
      }
    }
    const uint64_t p = state.Point(c, l);
    if (!state.Drawn(p)) return p;
  }
  return state.drawn().FirstFreeFrom(rng.Below(state.space().size()));
}

// ---- Covering plan ------------------------------------------------------------------------------

namespace {

// Level assignment of the plan's draws: counts of cells and level pairs over the draws, with the
// number of unseen ones, updated move by move.
class LevelAssignment {
 public:
  LevelAssignment(const ProductState& geometry, const std::vector<std::vector<int>>& blocks)
      : g_(geometry), blocks_(blocks), t_(geometry.total_levels()) {
    const int m = geometry.m();
    levels_.assign(blocks.size(), std::vector<int>(geometry.num_axes(), -1));
    cells_.assign(static_cast<size_t>(std::max(m, 1)) * t_, 0);
    pairs_.assign(static_cast<size_t>(t_) * t_, 0);
    uncovered_ = (geometry.k() >= 1 ? int64_t{m} * t_ : 0);
    for (int a = 0; a < geometry.num_axes(); ++a) {
      for (int b = a + 1; b < geometry.num_axes(); ++b) {
        uncovered_ += int64_t{geometry.levels(a)} * geometry.levels(b);
      }
    }
  }

  int64_t uncovered() const { return uncovered_; }
  const std::vector<std::vector<int>>& levels() const { return levels_; }

  // Change in unseen items if draw d took `level` on axis a (from its current level or none).
  int64_t Delta(size_t d, int a, int level) const {
    const int old = levels_[d][a];
    if (old == level) return 0;
    int64_t delta = 0;
    const int new_id = g_.LevelId(a, level);
    for (int f : blocks_[d]) {
      if (old >= 0 && Cell(f, g_.LevelId(a, old)) == 1) ++delta;
      if (Cell(f, new_id) == 0) --delta;
    }
    for (int b = 0; b < g_.num_axes(); ++b) {
      const int lb = levels_[d][b];
      if (b == a || lb < 0) continue;
      const int other = g_.LevelId(b, lb);
      if (old >= 0 && pairs_[Pair(g_.LevelId(a, old), other)] == 1) ++delta;
      if (pairs_[Pair(new_id, other)] == 0) --delta;
    }
    return delta;
  }

  void Set(size_t d, int a, int level) {
    uncovered_ += Delta(d, a, level);
    const int old = levels_[d][a];
    for (int b = 0; b < g_.num_axes(); ++b) {
      const int lb = levels_[d][b];
      if (b == a || lb < 0) continue;
      const int other = g_.LevelId(b, lb);
      if (old >= 0) --pairs_[Pair(g_.LevelId(a, old), other)];
      ++pairs_[Pair(g_.LevelId(a, level), other)];
    }
    for (int f : blocks_[d]) {
      if (old >= 0) --cells_[static_cast<size_t>(f) * t_ + g_.LevelId(a, old)];
      ++cells_[static_cast<size_t>(f) * t_ + g_.LevelId(a, level)];
    }
    levels_[d][a] = level;
  }

  // The level of draw d on axis a that lowers the unseen count most (ties at random).
  int BestLevel(size_t d, int a, Rng* rng, int64_t* best_delta) const {
    int best = 0;
    uint64_t best_tie = 0;
    *best_delta = std::numeric_limits<int64_t>::max();
    for (int level = 0; level < g_.levels(a); ++level) {
      const int64_t delta = Delta(d, a, level);
      const uint64_t tie = rng->Next();
      if (delta < *best_delta || (delta == *best_delta && tie > best_tie)) {
        best = level;
        *best_delta = delta;
        best_tie = tie;
      }
    }
    return best;
  }

 private:
  int64_t Cell(int f, int id) const { return cells_[static_cast<size_t>(f) * t_ + id]; }
  size_t Pair(int x, int y) const {
    return static_cast<size_t>(std::min(x, y)) * t_ + std::max(x, y);
  }

  const ProductState& g_;
  const std::vector<std::vector<int>>& blocks_;
  const int t_;
  std::vector<std::vector<int>> levels_;
  std::vector<int64_t> cells_, pairs_;
  int64_t uncovered_ = 0;
};

// The largest per-kind lower bound on draws covering everything: family-pair plan length, ceil(m
// L_a / k') per axis (every family meets every level), L_a L_b per pair of axes, L_a per axis.
uint64_t DrawsNeeded(const ProductState& g, size_t family_blocks) {
  uint64_t need = family_blocks;
  for (int a = 0; a < g.num_axes(); ++a) {
    need = std::max<uint64_t>(need, g.levels(a));
    if (g.k() > 0) {
      need = std::max<uint64_t>(need, (uint64_t{1} * g.m() * g.levels(a) + g.k() - 1) / g.k());
    }
    for (int b = a + 1; b < g.num_axes(); ++b) {
      need = std::max<uint64_t>(need, uint64_t{1} * g.levels(a) * g.levels(b));
    }
  }
  return need;
}

// Family blocks: the family space's pair-covering plan, then family-balanced blocks up to `draws`.
std::vector<std::vector<int>> PlanBlocks(const ProductState& g, const std::vector<uint64_t>& cover,
                                         uint64_t draws, uint64_t seed) {
  std::vector<std::vector<int>> blocks;
  std::vector<int64_t> counts(g.m(), 0);
  for (uint64_t r : cover) {
    std::vector<int> c(g.k());
    g.free().Unrank(r, c.data());
    for (int f : c) ++counts[f];
    blocks.push_back(std::move(c));
  }
  Rng rng(DrawKey(seed, 0, kExtendTag));
  while (blocks.size() < draws) {
    std::vector<int> c(g.k());
    if (g.k() > 0) {
      const BalancedChoices choices = ComputeBalancedChoices(counts.data(), g.m(), g.k());
      int pool[kMaxN];
      std::copy(choices.tied, choices.tied + choices.num_tied, pool);
      for (int i = 0; i < choices.need; ++i) {
        std::swap(pool[i], pool[i + static_cast<int>(rng.Below(choices.num_tied - i))]);
      }
      ComposeFamilies(choices, pool, g.k(), c.data());
      for (int f : c) ++counts[f];
    }
    blocks.push_back(std::move(c));
  }
  return blocks;
}

// Greedy levels draw by draw, then local search: a random (draw, axis) moves to its best level
// while that does not add unseen items (plateau moves allowed), within kLevelSearchMoves.
std::vector<std::vector<int>> AssignLevels(const ProductState& g,
                                           const std::vector<std::vector<int>>& blocks,
                                           uint64_t seed) {
  LevelAssignment assignment(g, blocks);
  Rng rng(DrawKey(seed, 0, kLevelTag));
  int64_t delta;
  for (size_t d = 0; d < blocks.size(); ++d) {
    for (int a = 0; a < g.num_axes(); ++a)
      assignment.Set(d, a, assignment.BestLevel(d, a, &rng, &delta));
  }
  int64_t moves = 0;
  while (assignment.uncovered() > 0 && moves < kLevelSearchMoves) {
    const size_t d = rng.Below(blocks.size());
    const int a = static_cast<int>(rng.Below(g.num_axes()));
    const int level = assignment.BestLevel(d, a, &rng, &delta);
    moves += g.levels(a);
    if (delta <= 0) assignment.Set(d, a, level);
  }
  return assignment.levels();
}

// Issues the plan in a balanced order: each next entry has the smallest sum of family and level
// counts among the remaining ones (ties by a seeded hash).
std::vector<uint64_t> BalancedOrder(const ProductState& g, std::vector<uint64_t> points,
                                    uint64_t seed) {
  std::vector<int64_t> family(g.m(), 0), level(g.total_levels(), 0);
  std::vector<uint64_t> out;
  const uint64_t key = DrawKey(seed, 0, kOrderTag);
  int c[kMaxK], l[kMaxAxes];
  while (!points.empty()) {
    size_t best = 0;
    int64_t best_sum = std::numeric_limits<int64_t>::max();
    uint64_t best_tie = 0;
    for (size_t i = 0; i < points.size(); ++i) {
      g.Decode(points[i], c, l);
      int64_t sum = 0;
      for (int j = 0; j < g.k(); ++j) sum += family[c[j]];
      for (int a = 0; a < g.num_axes(); ++a) sum += level[g.LevelId(a, l[a])];
      const uint64_t tie = TieHash(key, points[i]);
      if (sum < best_sum || (sum == best_sum && tie > best_tie)) {
        best = i;
        best_sum = sum;
        best_tie = tie;
      }
    }
    g.Decode(points[best], c, l);
    for (int j = 0; j < g.k(); ++j) ++family[c[j]];
    for (int a = 0; a < g.num_axes(); ++a) ++level[g.LevelId(a, l[a])];
    out.push_back(points[best]);
    points[best] = points.back();
    points.pop_back();
  }
  return out;
}

}  // namespace

std::vector<uint64_t> BuildProductCoveringPlan(const ProductSpace& space, uint64_t seed) {
  const ProductState g(space);
  if (g.m() > 0 && !g.free().exhaustive()) return {};
  const std::vector<uint64_t> cover =
      g.k() >= 2 ? BuildPairCoveringPlan(g.free(), seed ^ kPlanTag) : std::vector<uint64_t>();
  const uint64_t draws = DrawsNeeded(g, cover.size());
  if (draws > static_cast<uint64_t>(kMaxPlanDraws) || space.num_axes() == 0) return {};
  const std::vector<std::vector<int>> blocks = PlanBlocks(g, cover, draws, seed);
  const std::vector<std::vector<int>> levels = AssignLevels(g, blocks, seed);
  std::vector<uint64_t> points;
  DrawnSet seen(space.size());
  for (size_t d = 0; d < blocks.size(); ++d) {
    const uint64_t p = g.Point(blocks[d].data(), levels[d].data());
    if (seen.Insert(p)) points.push_back(p);
  }
  return BalancedOrder(g, std::move(points), seed);
}

uint64_t PlannedCoverPoint(const ProductState& state, const std::vector<uint64_t>& plan,
                           size_t* plan_pos, uint64_t key, uint64_t* relaxed) {
  int c[kMaxK], l[kMaxAxes];
  if (state.uncovered() > 0) {
    while (*plan_pos < plan.size()) {
      const uint64_t p = plan[(*plan_pos)++];
      if (state.Drawn(p)) continue;
      state.Decode(p, c, l);
      if (state.Gain(c, l) > 0) return p;
    }
    return GreedyCoverPoint(state, key);
  }
  uint64_t point;
  if (BalancedPoint(state, key ^ kBalanceTag, &point)) return point;
  ++*relaxed;
  return RelaxedPoint(state, key ^ kBalanceTag);
}

}  // namespace quartet::coordinator::space::internal
