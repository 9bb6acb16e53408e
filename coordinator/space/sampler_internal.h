// Building blocks shared by the samplers (sampler.cc and the *_sampler.cc files). Not part of the
// space library's interface: include only from coordinator/space/*.cc and its tests.
//
// Every sampler works on the free part of its Space: the m = n - r free families (indices [0, m) in
// pool order) of which k' = k - r are chosen. A Space rank is the lexicographic rank of the free
// part among C(m, k'), so these helpers use combinatorics.h with (m, k') directly.
#ifndef QUARTET_COORDINATOR_SPACE_SAMPLER_INTERNAL_H_
#define QUARTET_COORDINATOR_SPACE_SAMPLER_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "coordinator/space/combinatorics.h"
#include "coordinator/space/product_space.h"
#include "coordinator/space/sampler.h"
#include "coordinator/space/space.h"

namespace quartet::coordinator::space::internal {

// Spaces up to this many combinations are searched exhaustively (per-combination tables, a scan per
// draw); larger ones use constructive greedy choices. A scan of 2^21 combinations costs a few ms.
inline constexpr uint64_t kExhaustiveLimit = uint64_t{1} << 21;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness. Each draw derives its own stream from (seed, draws so far, purpose).
// ---------------------------------------------------------------------------------------------

// SplitMix64 finaliser: a bijective 64-bit mixer.
uint64_t Mix64(uint64_t x);

// Key of the random stream for one purpose (a small tag) of the draw numbered `draws`.
uint64_t DrawKey(uint64_t seed, uint64_t draws, uint64_t tag);

// Small deterministic generator (SplitMix64). Same sequence on every platform.
class Rng {
 public:
  explicit Rng(uint64_t key) : state_(key) {}
  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform in [0, bound); bound > 0.
  uint64_t Below(uint64_t bound);
  // Standard normal (Box-Muller).
  double Normal();

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------------
// The free space: (m, k') with pair indices and, for small spaces, a table of every combination.
// ---------------------------------------------------------------------------------------------
class FreeSpace {
 public:
  FreeSpace(int m, int k);

  int m() const { return m_; }
  int k() const { return k_; }
  uint64_t size() const { return size_; }
  int num_pairs() const { return num_pairs_; }
  int num_triples() const { return num_triples_; }
  bool exhaustive() const { return size_ <= kExhaustiveLimit; }

  // a != b, any order.
  int Pair(int a, int b) const { return pair_index_[a * m_ + b]; }
  // a < b < c.
  int Triple(int a, int b, int c) const;

  uint64_t Rank(const int* combination) const { return RankUnchecked(combination, k_, m_); }
  void Unrank(uint64_t rank, int* out) const { UnrankUnchecked(rank, m_, k_, out); }

  // The families of every combination, k' bytes per rank, built on first use. Only when
  // exhaustive().
  const uint8_t* Table() const;

  // Calls fn(rank) for every combination that contains the sorted families fixed[0..count).
  template <typename Fn>
  void ForEachContaining(const int* fixed, int count, Fn&& fn) const;

 private:
  int m_, k_;
  uint64_t size_;
  int num_pairs_, num_triples_;
  std::vector<int> pair_index_;
  mutable std::vector<uint8_t> table_;
};

// ---------------------------------------------------------------------------------------------
// The set of drawn ranks: a bitmap for spaces up to 2^26 combinations, a hash set above.
// ---------------------------------------------------------------------------------------------
class DrawnSet {
 public:
  explicit DrawnSet(uint64_t size);
  bool Contains(uint64_t rank) const;
  // False when already present.
  bool Insert(uint64_t rank);
  uint64_t count() const { return count_; }
  // The first rank not drawn at or after `start`, wrapping around; size when the space is full.
  uint64_t FirstFreeFrom(uint64_t start) const;

 private:
  uint64_t size_;
  uint64_t count_ = 0;
  bool use_bitmap_;
  std::vector<uint64_t> bits_;
  absl::flat_hash_set<uint64_t> set_;
};

// ---------------------------------------------------------------------------------------------
// Coverage state of a set of drawn combinations: the drawn set, family counts and, optionally, pair
// and triple counts and per-combination gains (exhaustive spaces). Every field is an integer
// function of the drawn set alone, so the order of Add() calls does not matter.
// ---------------------------------------------------------------------------------------------
class CoverageState {
 public:
  struct Tracking {
    bool pairs = false;    // pair counts and uncovered pair bookkeeping
    bool triples = false;  // triple counts (implies pairs)
    bool gains = false;    // per-combination unseen pair/triple counts (exhaustive spaces only)
  };
  CoverageState(const FreeSpace* space, Tracking tracking);

  const FreeSpace& space() const { return *space_; }
  bool Drawn(uint64_t rank) const { return drawn_.Contains(rank); }
  const DrawnSet& drawn() const { return drawn_; }
  uint64_t draws() const { return drawn_.count(); }
  bool exhausted() const { return drawn_.count() == space_->size(); }

  // Records a combination (its families, sorted). Returns false when already drawn.
  bool Add(uint64_t rank, const int* combination);

  const std::vector<int64_t>& family_counts() const { return family_counts_; }
  const std::vector<int64_t>& pair_counts() const { return pair_counts_; }
  int64_t pair_count(int a, int b) const { return pair_counts_[space_->Pair(a, b)]; }
  int32_t triple_count(int a, int b, int c) const {
    return triple_counts_[space_->Triple(a, b, c)];
  }
  // Pairs (triples) of free families never drawn together, while k' >= 2 (3); 0 otherwise.
  int64_t uncovered_pairs() const { return uncovered_pairs_; }
  int64_t uncovered_triples() const { return uncovered_triples_; }
  // Per family: partners not yet drawn with it.
  const std::vector<int>& uncovered_degree() const { return uncovered_degree_; }
  // Unseen pairs (triples) of the combination of that rank; gains tracking only.
  int pair_gain(uint64_t rank) const { return pair_gain_[rank]; }
  int triple_gain(uint64_t rank) const { return triple_gain_[rank]; }
  bool has_gains() const { return tracking_.gains; }
  bool has_triples() const { return tracking_.triples; }

 private:
  const FreeSpace* space_;
  Tracking tracking_;
  DrawnSet drawn_;
  std::vector<int64_t> family_counts_;
  std::vector<int64_t> pair_counts_;
  std::vector<int32_t> triple_counts_;
  std::vector<int> uncovered_degree_;
  int64_t uncovered_pairs_ = 0;
  int64_t uncovered_triples_ = 0;
  std::vector<uint8_t> pair_gain_;
  std::vector<uint8_t> triple_gain_;
};

// ---------------------------------------------------------------------------------------------
// Choices shared by several samplers. `key` seeds the choice's randomness.
// ---------------------------------------------------------------------------------------------

// The balance-preserving choices for `counts` (m families, k' chosen): every family below the
// boundary count (the k'-th smallest) is forced, `need` more come from the families at the
// boundary (tied, ascending).
struct BalancedChoices {
  int forced[kMaxK], tied[kMaxN];
  int num_forced = 0, num_tied = 0, need = 0;
};
BalancedChoices ComputeBalancedChoices(const int64_t* counts, int m, int k);

// Balanced choice: the k' families with the smallest counts, ties chosen at random, never a drawn
// combination (random tie choices first, then a systematic search over every balance-preserving
// choice). Keeps the largest minus smallest family count within 1 when it was. Prefers choices
// after which the following draws can stay balanced (a depth-first lookahead through the end of
// the current count level, visiting at most `lookahead_budget` candidate combinations in all).
// Returns false when every balance-preserving choice is drawn.
inline constexpr int64_t kDefaultLookaheadBudget = int64_t{1} << 16;
bool BalancedChoice(const CoverageState& state, uint64_t key, uint64_t* rank,
                    int64_t lookahead_budget = kDefaultLookaheadBudget);

// The undrawn combination that leaves the family counts most even (smallest largest-minus-
// smallest count, then smallest sum of counts, then random). Exhaustive spaces scan every
// combination; larger ones compare random undrawn combinations. Precondition: not exhausted.
uint64_t RelaxedBalancedChoice(const CoverageState& state, uint64_t key);

// Greedy coverage choice: most unseen pairs while any pair is unseen, else most unseen triples
// while any triple is unseen (when tracked), ties by family balance (smallest sum of family
// counts), then at random; once everything is seen, family balance, then pair balance, then
// random. Precondition: not exhausted; state tracks pairs (and gains for exhaustive spaces).
uint64_t GreedyCoverChoice(const CoverageState& state, uint64_t key);

// A sequence of combinations covering every pair, from empty state: a covering design
// (covering_design.h; for 29 families and k' = 4, the optimum 73) issued in a family-balanced
// order, all derived from `seed`. Exhaustive spaces only; empty when k' < 2.
std::vector<uint64_t> BuildPairCoveringPlan(const FreeSpace& space, uint64_t seed);

// The pair-covering draw of PAIR_COVERING (and ADAPTIVE's coverage phase): while a pair is unseen,
// the first entry of `plan` from *plan_pos on that is undrawn and covers an unseen pair (advancing
// *plan_pos past entries that do not qualify: they never will again); otherwise
// GreedyCoverChoice(state, key). Precondition: not exhausted.
uint64_t PlannedCoverChoice(const CoverageState& state, const std::vector<uint64_t>& plan,
                            size_t* plan_pos, uint64_t key);

// A sampler that issues the ranks of a fixed bijection of [0, size) in order: the i-th draw is
// Forward(i), skipping ranks marked drawn out of order. Memory: O(1) plus one entry per rank marked
// ahead of the cursor (none after a restart that marks a prefix of the order).
class PermutationSampler : public Sampler {
 public:
  explicit PermutationSampler(uint64_t size) : size_(size) {}
  absl::StatusOr<uint64_t> Next() override;
  absl::Status MarkDrawn(uint64_t rank) override;
  void Observe(uint64_t /*rank*/, double /*accuracy*/) override {}
  uint64_t draws() const override { return cursor_ + ahead_.size(); }

 protected:
  // The bijection and its inverse.
  virtual uint64_t Forward(uint64_t index) const = 0;
  virtual uint64_t Inverse(uint64_t rank) const = 0;

 private:
  uint64_t size_;
  uint64_t cursor_ = 0;                  // every index below is drawn
  absl::flat_hash_set<uint64_t> ahead_;  // drawn indices >= cursor_
};

// Base of the samplers that keep a CoverageState of their draws (STRATIFIED, PAIR_COVERING,
// ADAPTIVE): recording, MarkDrawn's checks and the draw counters are shared here.
class CoverageSampler : public Sampler {
 public:
  absl::Status MarkDrawn(uint64_t rank) override;
  void Observe(uint64_t /*rank*/, double /*accuracy*/) override {}
  uint64_t draws() const override { return state_.draws(); }
  uint64_t relaxed_draws() const override { return relaxed_; }

 protected:
  CoverageSampler(const Space& space, uint64_t seed, const CoverageState::Tracking& tracking);

  // OUT_OF_RANGE once every combination is drawn; OK otherwise.
  absl::Status CheckNotExhausted() const;
  // Adds a draw to state_.
  void Record(uint64_t rank);

  FreeSpace free_;  // before state_, which points to it
  CoverageState state_;
  const uint64_t seed_;
  uint64_t relaxed_ = 0;  // draws that had to give up family balance
};

// Factories (one per sampler file).
// LEXICOGRAPHIC and UNIFORM order any space of `size` ranks (family or product space).
std::unique_ptr<Sampler> NewLexicographicSampler(uint64_t size);
std::unique_ptr<Sampler> NewUniformSampler(uint64_t size, uint64_t seed);
std::unique_ptr<Sampler> NewStratifiedSampler(const Space& space, uint64_t seed);
std::unique_ptr<Sampler> NewPairCoveringSampler(const Space& space, uint64_t seed);
// Any sampler over a product space with parameter axes (product_sampler.cc).
std::unique_ptr<Sampler> NewProductSampler(SamplerKind kind, const ProductSpace& space,
                                           uint64_t seed, const SamplerOptions& options);
std::unique_ptr<Sampler> NewAdaptiveSampler(const Space& space, uint64_t seed,
                                            const SamplerOptions& options);

// Template definition.
template <typename Fn>
void FreeSpace::ForEachContaining(const int* fixed, int count, Fn&& fn) const {
  int others[kMaxN];
  int num_others = 0;
  for (int f = 0, j = 0; f < m_; ++f) {
    if (j < count && fixed[j] == f) {
      ++j;
    } else {
      others[num_others++] = f;
    }
  }
  const int free_slots = k_ - count;
  int idx[kMaxK];
  for (int i = 0; i < free_slots; ++i) idx[i] = i;
  int combination[kMaxK];
  while (true) {
    // Merge fixed with the chosen others.
    int a = 0, b = 0, o = 0;
    while (a < count || b < free_slots) {
      if (b == free_slots || (a < count && fixed[a] < others[idx[b]])) {
        combination[o++] = fixed[a++];
      } else {
        combination[o++] = others[idx[b++]];
      }
    }
    fn(Rank(combination));
    // Next subset of `others` in lexicographic order.
    int i = free_slots - 1;
    while (i >= 0 && idx[i] == num_others - free_slots + i) --i;
    if (i < 0) break;
    ++idx[i];
    for (int j = i + 1; j < free_slots; ++j) idx[j] = idx[j - 1] + 1;
  }
}

}  // namespace quartet::coordinator::space::internal

#endif  // QUARTET_COORDINATOR_SPACE_SAMPLER_INTERNAL_H_
