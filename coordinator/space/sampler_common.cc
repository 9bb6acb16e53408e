// Shared sampler building blocks: randomness, the free space, the drawn set, coverage state and the
// balanced and greedy-coverage choices (declared in sampler_internal.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "coordinator/space/covering_design.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kPlanTag = 0x706c616e;  // "plan"
// Random tie choices tried before the systematic search in BalancedChoice.
constexpr int kBalancedRandomTries = 8;
// Random undrawn combinations compared by RelaxedBalancedChoice on large spaces.
constexpr int kRelaxedProbes = 256;
// Constructive choices tried before falling back to a random undrawn combination.
constexpr int kConstructiveAttempts = 16;

// Tie-break value of a rank under a choice key: larger wins.
inline uint64_t TieHash(uint64_t key, uint64_t rank) { return Mix64(key ^ (rank * kGolden)); }

int Phase(const CoverageState& state) {
  if (state.uncovered_pairs() > 0) return 0;
  if (state.has_triples() && state.uncovered_triples() > 0) return 1;
  return 2;
}

uint64_t ConstructiveCoverChoice(const CoverageState& state, uint64_t key) {
  const FreeSpace& space = state.space();
  const int m = space.m(), k = space.k();
  const std::vector<int64_t>& counts = state.family_counts();
  const std::vector<int>& udeg = state.uncovered_degree();
  const int phase = Phase(state);
  Rng rng(key);
  for (int attempt = 0; attempt < kConstructiveAttempts; ++attempt) {
    int chosen[kMaxK];
    int num_chosen = 0;
    bool in[kMaxN] = {};
    for (int slot = 0; slot < k; ++slot) {
      int best = -1;
      // Lexicographic score (s0, s1, s2, tie): larger is better.
      int64_t b0 = 0, b1 = 0, b2 = 0;
      uint64_t bt = 0;
      const bool random_first = attempt > 0 && slot == 0;
      for (int f = 0; f < m; ++f) {
        if (in[f]) continue;
        int64_t s0 = 0, s1 = 0, s2 = 0;
        const uint64_t tie = rng.Next();
        if (random_first) {
          // Diversify later attempts: a random first family.
        } else if (phase == 0) {
          for (int i = 0; i < num_chosen; ++i) s0 += state.pair_count(f, chosen[i]) == 0;
          s1 = udeg[f];
          s2 = -counts[f];
        } else if (phase == 1) {
          for (int i = 0; i < num_chosen; ++i) {
            for (int j = i + 1; j < num_chosen; ++j) {
              int t[3] = {f, chosen[i], chosen[j]};
              std::sort(t, t + 3);
              s0 += state.triple_count(t[0], t[1], t[2]) == 0;
            }
          }
          s1 = -counts[f];
        } else {
          s0 = -counts[f];
          for (int i = 0; i < num_chosen; ++i) s1 -= state.pair_count(f, chosen[i]);
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
      chosen[num_chosen++] = best;
    }
    std::sort(chosen, chosen + k);
    const uint64_t rank = space.Rank(chosen);
    if (!state.Drawn(rank)) return rank;
  }
  for (int probe = 0; probe < 64; ++probe) {
    const uint64_t rank = rng.Below(space.size());
    if (!state.Drawn(rank)) return rank;
  }
  return state.drawn().FirstFreeFrom(rng.Below(space.size()));
}

// The balance phase of GreedyCoverChoice on exhaustive spaces: the undrawn combination with the
// smallest (sum of family counts, sum of pair counts), ties at random. Enumerates combinations in
// rank order with partial sums (one addition per combination): key = family sum * 2^32 + pair sum
// (pair sums stay below 2^32 on exhaustive spaces).
class BalanceScan {
 public:
  BalanceScan(const CoverageState& state, uint64_t key) : state_(state), key_(key) {
    const FreeSpace& space = state.space();
    m_ = space.m();
    k_ = space.k();
    pair_matrix_.assign(m_ * m_, 0);
    for (int a = 0; a < m_; ++a) {
      for (int b = a + 1; b < m_; ++b) {
        pair_matrix_[a * m_ + b] = pair_matrix_[b * m_ + a] = state.pair_count(a, b);
      }
    }
    gain_.resize(k_ * m_);
    for (int f = 0; f < m_; ++f) gain_[f] = state.family_counts()[f] << 32;
    best_ = space.size();
  }

  uint64_t Run() {
    Level(0, 0, 0);
    return best_;
  }

 private:
  void Level(int level, int start, int64_t partial) {
    const int64_t* gain = &gain_[level * m_];
    if (level == k_ - 1) {
      for (int x = start; x < m_; ++x, ++rank_) {
        const int64_t value = partial + gain[x];
        if (value > best_value_ || state_.Drawn(rank_)) continue;
        const uint64_t tie = TieHash(key_, rank_);
        if (value < best_value_ || tie > best_tie_) {
          best_ = rank_;
          best_value_ = value;
          best_tie_ = tie;
        }
      }
      return;
    }
    int64_t* next = &gain_[(level + 1) * m_];
    for (int x = start; x <= m_ - (k_ - level); ++x) {
      const int64_t* row = &pair_matrix_[x * m_];
      for (int y = x + 1; y < m_; ++y) next[y] = gain[y] + row[y];
      Level(level + 1, x + 1, partial + gain[x]);
    }
  }

  const CoverageState& state_;
  const uint64_t key_;
  int m_ = 0, k_ = 0;
  std::vector<int64_t> pair_matrix_, gain_;
  uint64_t rank_ = 0, best_ = 0, best_tie_ = 0;
  int64_t best_value_ = std::numeric_limits<int64_t>::max();
};

}  // namespace

uint64_t Mix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t DrawKey(uint64_t seed, uint64_t draws, uint64_t tag) {
  return Mix64(Mix64(seed ^ Mix64(tag)) ^ (draws * 0xD1B54A32D192ED03ULL));
}

uint64_t Rng::Next() {
  state_ += kGolden;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

uint64_t Rng::Below(uint64_t bound) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * bound) >> 64);
}

double Rng::Normal() {
  const double u1 = 1.0 - Uniform();  // (0, 1]
  const double u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// ---------------------------------------------------------------------------------------------

FreeSpace::FreeSpace(int m, int k)
    : m_(m),
      k_(k),
      size_(Binomial(m, k)),
      num_pairs_(static_cast<int>(Binomial(m, 2))),
      num_triples_(static_cast<int>(Binomial(m, 3))),
      pair_index_(m * m, -1) {
  for (int a = 0; a < m; ++a) {
    for (int b = 0; b < m; ++b) {
      if (a != b) pair_index_[a * m + b] = PairIndex(a, b, m);
    }
  }
}

int FreeSpace::Triple(int a, int b, int c) const {
  const int t[3] = {a, b, c};
  return static_cast<int>(RankUnchecked(t, 3, m_));
}

const uint8_t* FreeSpace::Table() const {
  if (table_.empty() && exhaustive()) {
    table_.resize(size_ * k_);
    int combination[kMaxK];
    for (int i = 0; i < k_; ++i) combination[i] = i;
    for (uint64_t r = 0; r < size_; ++r) {
      for (int i = 0; i < k_; ++i) table_[r * k_ + i] = static_cast<uint8_t>(combination[i]);
      int i = k_ - 1;
      while (i >= 0 && combination[i] == m_ - k_ + i) --i;
      if (i < 0) break;
      ++combination[i];
      for (int j = i + 1; j < k_; ++j) combination[j] = combination[j - 1] + 1;
    }
  }
  return table_.data();
}

// ---------------------------------------------------------------------------------------------

DrawnSet::DrawnSet(uint64_t size) : size_(size), use_bitmap_(size <= (uint64_t{1} << 26)) {
  if (use_bitmap_) bits_.assign((size + 63) / 64, 0);
}

bool DrawnSet::Contains(uint64_t rank) const {
  if (use_bitmap_) return (bits_[rank >> 6] >> (rank & 63)) & 1;
  return set_.contains(rank);
}

bool DrawnSet::Insert(uint64_t rank) {
  if (use_bitmap_) {
    uint64_t& word = bits_[rank >> 6];
    const uint64_t bit = uint64_t{1} << (rank & 63);
    if (word & bit) return false;
    word |= bit;
  } else if (!set_.insert(rank).second) {
    return false;
  }
  ++count_;
  return true;
}

uint64_t DrawnSet::FirstFreeFrom(uint64_t start) const {
  if (count_ >= size_) return size_;
  if (start >= size_) start = 0;
  if (use_bitmap_) {
    for (uint64_t visited = 0, r = start; visited <= size_;) {
      const uint64_t word = ~bits_[r >> 6] >> (r & 63);
      if (word != 0) {
        const uint64_t candidate = r + __builtin_ctzll(word);
        if (candidate < size_) return candidate;
      }
      const uint64_t next = ((r >> 6) + 1) << 6;
      visited += next - r;
      r = next >= size_ ? 0 : next;
    }
    return size_;
  }
  for (uint64_t r = start;; r = (r + 1 == size_) ? 0 : r + 1) {
    if (!set_.contains(r)) return r;
  }
}

// ---------------------------------------------------------------------------------------------

CoverageState::CoverageState(const FreeSpace* space, Tracking tracking)
    : space_(space), tracking_(tracking), drawn_(space->size()) {
  if (tracking_.triples) tracking_.pairs = true;
  if (!space_->exhaustive()) tracking_.gains = false;
  const int m = space_->m(), k = space_->k();
  family_counts_.assign(m, 0);
  if (tracking_.pairs) {
    pair_counts_.assign(space_->num_pairs(), 0);
    uncovered_degree_.assign(m, k >= 2 ? m - 1 : 0);
    uncovered_pairs_ = k >= 2 ? space_->num_pairs() : 0;
  }
  if (tracking_.triples) {
    triple_counts_.assign(space_->num_triples(), 0);
    uncovered_triples_ = k >= 3 ? space_->num_triples() : 0;
  }
  if (tracking_.gains) {
    pair_gain_.assign(space_->size(), static_cast<uint8_t>(Binomial(k, 2)));
    if (tracking_.triples)
      triple_gain_.assign(space_->size(), static_cast<uint8_t>(Binomial(k, 3)));
  }
}

bool CoverageState::Add(uint64_t rank, const int* c) {
  if (!drawn_.Insert(rank)) return false;
  const int k = space_->k();
  for (int i = 0; i < k; ++i) ++family_counts_[c[i]];
  if (!tracking_.pairs) return true;
  for (int i = 0; i < k; ++i) {
    for (int j = i + 1; j < k; ++j) {
      if (pair_counts_[space_->Pair(c[i], c[j])]++ > 0) continue;
      --uncovered_pairs_;
      --uncovered_degree_[c[i]];
      --uncovered_degree_[c[j]];
      if (tracking_.gains) {
        const int fixed[2] = {c[i], c[j]};
        space_->ForEachContaining(fixed, 2, [this](uint64_t r) { --pair_gain_[r]; });
      }
    }
  }
  if (!tracking_.triples) return true;
  for (int i = 0; i < k; ++i) {
    for (int j = i + 1; j < k; ++j) {
      for (int l = j + 1; l < k; ++l) {
        if (triple_counts_[space_->Triple(c[i], c[j], c[l])]++ > 0) continue;
        --uncovered_triples_;
        if (tracking_.gains) {
          const int fixed[3] = {c[i], c[j], c[l]};
          space_->ForEachContaining(fixed, 3, [this](uint64_t r) { --triple_gain_[r]; });
        }
      }
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

BalancedChoices ComputeBalancedChoices(const int64_t* counts, int m, int k) {
  int order[kMaxN];
  for (int f = 0; f < m; ++f) order[f] = f;
  std::nth_element(order, order + k - 1, order + m,
                   [&](int a, int b) { return counts[a] < counts[b]; });
  const int64_t boundary = counts[order[k - 1]];
  BalancedChoices out;
  for (int f = 0; f < m; ++f) {
    if (counts[f] < boundary) out.forced[out.num_forced++] = f;
    if (counts[f] == boundary) out.tied[out.num_tied++] = f;
  }
  out.need = k - out.num_forced;
  return out;
}

namespace {

// The combination made of the forced families and tied[sub[0..need)], sorted, and its rank.
uint64_t ComposeChoice(const FreeSpace& space, const BalancedChoices& choices, const int* picks,
                       int* combination) {
  for (int i = 0; i < choices.num_forced; ++i) combination[i] = choices.forced[i];
  for (int i = 0; i < choices.need; ++i) combination[choices.num_forced + i] = picks[i];
  std::sort(combination, combination + space.k());
  return space.Rank(combination);
}

// Lookahead of BalancedChoice: whether the draws after `combination` (rank `rank`) can go on with
// undrawn balance-preserving choices until every family now at the lowest count has moved up, and
// one draw beyond (depth-first search). The search visits at most kLookaheadPerCheck candidate
// combinations and draws on *budget (shared by one BalancedChoice call); when either runs out the
// answer is yes, so the cost of a draw stays bounded.
constexpr int64_t kLookaheadPerCheck = 4096;
constexpr int kMaxLookaheadDepth = 12;

bool ExtendBalanced(const CoverageState& state, int64_t* counts, std::vector<uint64_t>* stack,
                    int depth, int64_t* budget) {
  if (depth == 0) return true;
  const FreeSpace& space = state.space();
  const BalancedChoices choices = ComputeBalancedChoices(counts, space.m(), space.k());
  const uint64_t total = Binomial(choices.num_tied, choices.need);
  int sub[kMaxK], picks[kMaxK], c[kMaxK];
  for (uint64_t i = 0; i < total; ++i) {
    if (--*budget < 0) return true;
    UnrankUnchecked(i, choices.num_tied, choices.need, sub);
    for (int j = 0; j < choices.need; ++j) picks[j] = choices.tied[sub[j]];
    const uint64_t r = ComposeChoice(space, choices, picks, c);
    if (state.Drawn(r) || std::find(stack->begin(), stack->end(), r) != stack->end()) continue;
    for (int j = 0; j < space.k(); ++j) ++counts[c[j]];
    stack->push_back(r);
    const bool ok = ExtendBalanced(state, counts, stack, depth - 1, budget);
    stack->pop_back();
    for (int j = 0; j < space.k(); ++j) --counts[c[j]];
    if (ok) return true;
  }
  return false;
}

bool LookaheadOpen(const CoverageState& state, const int* combination, uint64_t rank,
                   int64_t* budget) {
  if (*budget <= 0) return true;
  const FreeSpace& space = state.space();
  const int m = space.m(), k = space.k();
  int64_t counts[kMaxN];
  std::copy(state.family_counts().begin(), state.family_counts().end(), counts);
  for (int i = 0; i < k; ++i) ++counts[combination[i]];
  const int64_t lowest = *std::min_element(counts, counts + m);
  const int at_lowest = static_cast<int>(std::count(counts, counts + m, lowest));
  const int depth = std::min(kMaxLookaheadDepth, (at_lowest + k - 1) / k + 1);
  std::vector<uint64_t> stack = {rank};
  int64_t local = std::min(*budget, kLookaheadPerCheck);
  const int64_t before = local;
  const bool open = ExtendBalanced(state, counts, &stack, depth, &local);
  *budget -= before - std::max<int64_t>(local, 0);
  return open;
}

}  // namespace

bool BalancedChoice(const CoverageState& state, uint64_t key, uint64_t* rank,
                    int64_t lookahead_budget) {
  const FreeSpace& space = state.space();
  const int m = space.m(), k = space.k();
  const BalancedChoices choices = ComputeBalancedChoices(state.family_counts().data(), m, k);
  Rng rng(key);
  int64_t budget = lookahead_budget;
  int combination[kMaxK], pool[kMaxN];
  // Random tie choices, then every choice from a random starting point; a choice must be undrawn
  // and pass the lookahead (LookaheadOpen). Failing that, the first undrawn choice seen.
  for (int attempt = 0; attempt < kBalancedRandomTries; ++attempt) {
    std::copy(choices.tied, choices.tied + choices.num_tied, pool);
    for (int i = 0; i < choices.need; ++i) {
      const int j = i + static_cast<int>(rng.Below(choices.num_tied - i));
      std::swap(pool[i], pool[j]);
    }
    const uint64_t r = ComposeChoice(space, choices, pool, combination);
    if (!state.Drawn(r) && LookaheadOpen(state, combination, r, &budget)) {
      *rank = r;
      return true;
    }
  }
  const uint64_t total = Binomial(choices.num_tied, choices.need);
  const uint64_t start = rng.Below(total);
  uint64_t fallback = space.size();
  int sub[kMaxK], picks[kMaxK];
  for (uint64_t i = 0; i < total; ++i) {
    const uint64_t index = start + i < total ? start + i : start + i - total;
    UnrankUnchecked(index, choices.num_tied, choices.need, sub);
    for (int j = 0; j < choices.need; ++j) picks[j] = choices.tied[sub[j]];
    const uint64_t r = ComposeChoice(space, choices, picks, combination);
    if (state.Drawn(r)) continue;
    if (LookaheadOpen(state, combination, r, &budget)) {
      *rank = r;
      return true;
    }
    if (fallback == space.size()) fallback = r;
  }
  if (fallback == space.size()) return false;
  *rank = fallback;
  return true;
}

uint64_t RelaxedBalancedChoice(const CoverageState& state, uint64_t key) {
  const FreeSpace& space = state.space();
  const int m = space.m(), k = space.k();
  const std::vector<int64_t>& counts = state.family_counts();
  int order[kMaxN];
  for (int f = 0; f < m; ++f) order[f] = f;
  std::sort(order, order + m, [&](int a, int b) { return counts[a] < counts[b]; });
  const int64_t current_max = counts[order[m - 1]];
  // (deviation after adding c) * 2^40 + (sum of c's counts); smaller is better.
  auto evaluate = [&](const int* c) {
    int64_t new_max = current_max, new_min = std::numeric_limits<int64_t>::max(), sum = 0;
    uint64_t members = 0;
    for (int i = 0; i < k; ++i) {
      const int64_t count = counts[c[i]];
      new_max = std::max(new_max, count + 1);
      new_min = std::min(new_min, count + 1);
      sum += count;
      members |= uint64_t{1} << c[i];
    }
    for (int i = 0; i < m; ++i) {
      if (!(members >> order[i] & 1)) {
        new_min = std::min(new_min, counts[order[i]]);
        break;
      }
    }
    return ((new_max - new_min) << 40) + sum;
  };
  uint64_t best = space.size(), best_tie = 0;
  int64_t best_value = std::numeric_limits<int64_t>::max();
  auto consider = [&](uint64_t r, const int* c) {
    const int64_t value = evaluate(c);
    if (value > best_value) return;
    const uint64_t tie = TieHash(key, r);
    if (value < best_value || tie > best_tie) {
      best = r;
      best_value = value;
      best_tie = tie;
    }
  };
  int c[kMaxK];
  if (space.exhaustive()) {
    const uint8_t* table = space.Table();
    for (uint64_t r = 0; r < space.size(); ++r) {
      if (state.Drawn(r)) continue;
      for (int i = 0; i < k; ++i) c[i] = table[r * k + i];
      consider(r, c);
    }
    return best;
  }
  Rng rng(key);
  for (int probe = 0; probe < kRelaxedProbes; ++probe) {
    const uint64_t r = state.drawn().FirstFreeFrom(rng.Below(space.size()));
    space.Unrank(r, c);
    consider(r, c);
  }
  return best;
}

uint64_t GreedyCoverChoice(const CoverageState& state, uint64_t key) {
  const FreeSpace& space = state.space();
  if (!state.has_gains()) return ConstructiveCoverChoice(state, key);
  const int k = space.k();
  const uint64_t size = space.size();
  const uint8_t* table = space.Table();
  const std::vector<int64_t>& counts = state.family_counts();
  const int phase = Phase(state);
  uint64_t best = size;
  if (phase < 2) {
    auto gain = [&](uint64_t r) { return phase == 0 ? state.pair_gain(r) : state.triple_gain(r); };
    int max_gain = -1;
    for (uint64_t r = 0; r < size; ++r) {
      const int g = gain(r);
      if (g > max_gain && !state.Drawn(r)) max_gain = g;
    }
    int64_t best_balance = std::numeric_limits<int64_t>::max();
    uint64_t best_tie = 0;
    for (uint64_t r = 0; r < size; ++r) {
      if (gain(r) != max_gain) continue;
      int64_t balance = 0;
      for (int i = 0; i < k; ++i) balance += counts[table[r * k + i]];
      if (balance > best_balance || state.Drawn(r)) continue;
      const uint64_t tie = TieHash(key, r);
      if (balance < best_balance || tie > best_tie) {
        best = r;
        best_balance = balance;
        best_tie = tie;
      }
    }
    return best;
  }
  return BalanceScan(state, key).Run();
}

namespace {

// Depth-first search for `want` pairwise disjoint blocks (indices ascending), within
// kDisjointSearchBudget nodes; the largest set found.
constexpr int64_t kDisjointSearchBudget = 200000;

void SearchDisjoint(const std::vector<uint64_t>& masks, size_t start, uint64_t used,
                    std::vector<size_t>* current, std::vector<size_t>* best, size_t want,
                    int64_t* budget) {
  if (current->size() > best->size()) *best = *current;
  if (best->size() >= want || --*budget < 0) return;
  for (size_t i = start; i < masks.size() && best->size() < want && *budget >= 0; ++i) {
    if (masks[i] & used) continue;
    current->push_back(i);
    SearchDisjoint(masks, i + 1, used | masks[i], current, best, want, budget);
    current->pop_back();
  }
}

std::vector<size_t> DisjointBlocks(const std::vector<std::vector<int>>& blocks, int want) {
  std::vector<uint64_t> masks;
  for (const auto& b : blocks) {
    uint64_t mask = 0;
    for (int f : b) mask |= uint64_t{1} << f;
    masks.push_back(mask);
  }
  std::vector<size_t> current, best;
  int64_t budget = kDisjointSearchBudget;
  SearchDisjoint(masks, 0, 0, &current, &best, static_cast<size_t>(want), &budget);
  return best;
}

}  // namespace

std::vector<uint64_t> BuildPairCoveringPlan(const FreeSpace& space, uint64_t seed) {
  const int m = space.m(), k = space.k();
  if (k < 2 || !space.exhaustive()) return {};
  CoveringOptions options;
  options.seed = seed ^ kPlanTag;
  std::vector<std::vector<int>> blocks = BuildPairCovering(m, k, options);
  std::vector<uint64_t> plan;
  std::vector<int64_t> counts(m, 0);
  // Lead with pairwise disjoint blocks, so that every family is drawn as early as possible.
  std::vector<size_t> lead = DisjointBlocks(blocks, m / k);
  std::sort(lead.rbegin(), lead.rend());
  for (size_t i : lead) {
    for (int f : blocks[i]) ++counts[f];
    plan.push_back(space.Rank(blocks[i].data()));
    blocks[i] = std::move(blocks.back());
    blocks.pop_back();
  }
  // Family-balanced order: each next block has the smallest sum of family counts so far (ties by
  // a seeded hash), so that every prefix of the plan spreads the families evenly.
  const uint64_t key = DrawKey(seed, 0, kPlanTag);
  while (!blocks.empty()) {
    size_t best = 0;
    int64_t best_sum = std::numeric_limits<int64_t>::max();
    uint64_t best_tie = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      int64_t sum = 0;
      for (int f : blocks[i]) sum += counts[f];
      const uint64_t tie = TieHash(key, space.Rank(blocks[i].data()));
      if (sum < best_sum || (sum == best_sum && tie > best_tie)) {
        best = i;
        best_sum = sum;
        best_tie = tie;
      }
    }
    for (int f : blocks[best]) ++counts[f];
    plan.push_back(space.Rank(blocks[best].data()));
    blocks[best] = std::move(blocks.back());
    blocks.pop_back();
  }
  return plan;
}

uint64_t PlannedCoverChoice(const CoverageState& state, const std::vector<uint64_t>& plan,
                            size_t* plan_pos, uint64_t key) {
  if (state.uncovered_pairs() > 0 && state.has_gains()) {
    while (*plan_pos < plan.size()) {
      const uint64_t candidate = plan[(*plan_pos)++];
      if (!state.Drawn(candidate) && state.pair_gain(candidate) > 0) return candidate;
    }
  }
  return GreedyCoverChoice(state, key);
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<uint64_t> PermutationSampler::Next() {
  if (cursor_ >= size_) return absl::OutOfRangeError("every combination of the space is drawn");
  const uint64_t rank = Forward(cursor_++);
  while (!ahead_.empty() && ahead_.erase(cursor_) > 0) ++cursor_;
  return rank;
}

absl::Status PermutationSampler::MarkDrawn(uint64_t rank) {
  if (rank >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the space [0, ", size_, ")"));
  }
  const uint64_t index = Inverse(rank);
  if (index < cursor_ || ahead_.contains(index)) {
    return absl::AlreadyExistsError(absl::StrCat("rank ", rank, " is already drawn"));
  }
  if (index == cursor_) {
    ++cursor_;
    while (!ahead_.empty() && ahead_.erase(cursor_) > 0) ++cursor_;
  } else {
    ahead_.insert(index);
  }
  return absl::OkStatus();
}

// ---- CoverageSampler ----------------------------------------------------------------------------

CoverageSampler::CoverageSampler(const Space& space, uint64_t seed,
                                 const CoverageState::Tracking& tracking)
    : free_(space.n() - static_cast<int>(space.required().size()),
            space.k() - static_cast<int>(space.required().size())),
      state_(&free_, tracking),
      seed_(seed) {}

absl::Status CoverageSampler::CheckNotExhausted() const {
  if (state_.exhausted()) {
    return absl::OutOfRangeError("every combination of the space is drawn");
  }
  return absl::OkStatus();
}

absl::Status CoverageSampler::MarkDrawn(uint64_t rank) {
  if (rank >= free_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the space [0, ", free_.size(), ")"));
  }
  if (state_.Drawn(rank)) {
    return absl::AlreadyExistsError(absl::StrCat("rank ", rank, " is already drawn"));
  }
  Record(rank);
  return absl::OkStatus();
}

void CoverageSampler::Record(uint64_t rank) {
  int c[kMaxK];
  free_.Unrank(rank, c);
  state_.Add(rank, c);
}

}  // namespace quartet::coordinator::space::internal
