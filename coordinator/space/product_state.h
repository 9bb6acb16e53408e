// Coverage state of a product space (family axis x parameter axes) for the samplers that balance or
// cover it: the drawn points, family counts, level counts per axis, and the three kinds of pairs
// PAIR_COVERING covers: family pairs, (family, level) cells and (level, level) pairs across axes.
// Internal to coordinator/space. Like CoverageState, every field is an integer function of the
// drawn set alone, so the order of Add() calls does not matter.
//
// Families are the free part of the family axis (required families are in every point and are
// not counted); without a family axis m() == 0.
#ifndef QUARTET_COORDINATOR_SPACE_PRODUCT_STATE_H_
#define QUARTET_COORDINATOR_SPACE_PRODUCT_STATE_H_

#include <cstdint>
#include <vector>

#include "coordinator/space/product_space.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {

// (level, level) pairs are tracked when the total number of levels T has T * T at most this.
inline constexpr int64_t kMaxTrackedLevelPairs = int64_t{1} << 20;

class ProductState {
 public:
  explicit ProductState(const ProductSpace& space);

  const ProductSpace& space() const { return *space_; }
  const FreeSpace& free() const { return free_; }
  int m() const { return free_.m(); }
  int k() const { return free_.k(); }
  int num_axes() const { return space_->num_axes(); }
  int levels(int axis) const { return space_->levels(axis); }
  // Index of (axis, level) among all levels of all axes, in [0, total_levels()).
  int LevelId(int axis, int level) const { return offset_[axis] + level; }
  int total_levels() const { return total_levels_; }

  bool Drawn(uint64_t point) const { return drawn_.Contains(point); }
  const DrawnSet& drawn() const { return drawn_; }
  uint64_t draws() const { return drawn_.count(); }
  bool exhausted() const { return drawn_.count() == space_->size(); }

  // A point from free families (sorted, k() of them) and levels (one per axis), and back.
  uint64_t Point(const int* families, const int* levels) const;
  void Decode(uint64_t point, int* families, int* levels) const;

  // Records a point. False when already drawn.
  bool Add(uint64_t point);

  int64_t family_count(int f) const { return family_counts_[f]; }
  const std::vector<int64_t>& family_counts() const { return family_counts_; }
  int64_t level_count(int axis, int level) const { return level_counts_[LevelId(axis, level)]; }
  int64_t pair_count(int a, int b) const { return pair_counts_[free_.Pair(a, b)]; }
  int64_t cell_count(int f, int axis, int level) const {
    return cell_counts_[static_cast<size_t>(f) * total_levels_ + LevelId(axis, level)];
  }
  bool tracks_level_pairs() const { return !level_pair_counts_.empty(); }
  // Precondition: axis_a != axis_b and tracks_level_pairs().
  int64_t level_pair_count(int axis_a, int level_a, int axis_b, int level_b) const {
    return level_pair_counts_[static_cast<size_t>(LevelId(axis_a, level_a)) * total_levels_ +
                              LevelId(axis_b, level_b)];
  }
  // Unseen (family, level) cells of family f, over every axis.
  int uncovered_cells_of(int f) const { return uncovered_cells_of_[f]; }

  // Unseen family pairs, (family, level) cells and (level, level) pairs, in all.
  int64_t uncovered() const { return uncovered_pairs_ + uncovered_cells_ + uncovered_level_pairs_; }
  // Unseen items the point (families, levels) would cover.
  int Gain(const int* families, const int* levels) const;

  // Largest minus smallest count among families, and among the levels of each axis (the largest
  // over axes), were the point (families, levels) added.
  int64_t FamilyDeviationWith(const int* families) const;
  int64_t LevelDeviationWith(const int* levels) const;

 private:
  const ProductSpace* space_;
  FreeSpace free_;
  DrawnSet drawn_;
  std::vector<int> offset_;
  int total_levels_ = 0;
  std::vector<int64_t> family_counts_, pair_counts_, level_counts_, cell_counts_,
      level_pair_counts_;
  std::vector<int> uncovered_cells_of_;
  int64_t uncovered_pairs_ = 0, uncovered_cells_ = 0, uncovered_level_pairs_ = 0;
};

// Balanced choice on a product space: the k' families with the smallest counts (ties at random)
// and, on every axis, a level with the smallest count (ties at random), never a drawn point:
// random tie choices first, then a systematic search of the balance-preserving points from a
// random start (bounded). Keeps every family count and every axis's level counts within 1 when
// they were. False when no balance-preserving undrawn point was found.
bool BalancedPoint(const ProductState& state, uint64_t key, uint64_t* point);

// The undrawn point that leaves the counts most even (smallest family deviation plus level
// deviation, then smallest sum of counts, then random): every undrawn point on small spaces; on
// large ones, every level tuple of a few balance-preserving family choices and random undrawn
// points (bounded work). Precondition: not exhausted.
uint64_t RelaxedPoint(const ProductState& state, uint64_t key);

// Greedy coverage choice: families chosen one by one for unseen family pairs, then unseen cells,
// then low counts; then on each axis the level with the most unseen cells and level pairs (two
// passes), ties by low count, then at random. An undrawn point; precondition: not exhausted.
uint64_t GreedyCoverPoint(const ProductState& state, uint64_t key);

// A sequence of points covering every family pair, (family, level) cell and (level, level) pair,
// computed from `seed` alone: family blocks covering every pair (the family space's covering plan),
// extended with family-balanced blocks to the largest per-kind lower bound, levels assigned by a
// greedy pass and a bounded local search, in a count-balanced order. Empty when the family space
// is not exhaustive or the plan would exceed kMaxPlanDraws.
inline constexpr int kMaxPlanDraws = 1024;
std::vector<uint64_t> BuildProductCoveringPlan(const ProductSpace& space, uint64_t seed);

// The covering draw: while something is unseen, the first plan entry from *plan_pos on that is
// undrawn and covers something unseen (advancing past those that do not: they never will again),
// else GreedyCoverPoint; once everything is seen, BalancedPoint (RelaxedPoint when none), counting
// relaxed draws in *relaxed.
uint64_t PlannedCoverPoint(const ProductState& state, const std::vector<uint64_t>& plan,
                           size_t* plan_pos, uint64_t key, uint64_t* relaxed);

}  // namespace quartet::coordinator::space::internal

#endif  // QUARTET_COORDINATOR_SPACE_PRODUCT_STATE_H_
