// The search space of a campaign: an optional family axis (k of n families, a Space) times any
// number of parameter axes, axis j having levels(j) levels (values of a CATEGORICAL axis, strata of
// a CONTINUOUS one). Pure data, thread-safe after construction.
//
// A point is (combination rank, one level per axis). Its rank is mixed-radix with the combination
// most significant and the last axis least significant:
//   rank = combination * P + sum_j level_j * stride_j,  stride_last = 1, P = prod_j levels(j),
// so a space without axes ranks points exactly as its family Space ranks combinations, and a space
// without a family axis has one "combination", rank 0. Sizes are checked to stay below 2^63 (ranks
// are stored as signed 64-bit integers).
#ifndef QUARTET_COORDINATOR_SPACE_PRODUCT_SPACE_H_
#define QUARTET_COORDINATOR_SPACE_PRODUCT_SPACE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/space/space.h"

namespace quartet::coordinator::space {

// At most this many parameter axes, and this many levels on one axis.
inline constexpr int kMaxAxes = 16;
inline constexpr int kMaxLevels = 1024;
// Largest space: points are stored as signed 64-bit ranks.
inline constexpr uint64_t kMaxSpaceSize = uint64_t{1} << 63;

class ProductSpace {
 public:
  // INVALID_ARGUMENT ("axes: ...") when there are more than kMaxAxes axes, an axis has fewer than
  // 1 or more than kMaxLevels levels, there is neither a family axis nor a parameter axis, or the
  // product reaches kMaxSpaceSize.
  static absl::StatusOr<ProductSpace> Create(std::optional<Space> families,
                                             std::vector<int> levels);

  bool has_families() const { return families_.has_value(); }
  // Precondition: has_families().
  const Space& families() const { return *families_; }
  int num_axes() const { return static_cast<int>(levels_.size()); }
  int levels(int axis) const { return levels_[axis]; }
  // Level points per combination: prod_j levels(j) (1 without axes).
  uint64_t level_points() const { return level_points_; }
  // Points in the space: combinations on the family axis (1 without one) * level_points().
  uint64_t size() const { return size_; }

  // Rank of (combination, levels[0..num_axes)). Unchecked: combination < size() / level_points(),
  // 0 <= levels[j] < levels(j).
  uint64_t Rank(uint64_t combination, const int* levels) const;
  // The mixed-radix index of a level tuple among level_points().
  uint64_t LevelIndex(const int* levels) const;
  // Inverse of Rank: `levels` receives num_axes() values. Unchecked: rank < size().
  void Unrank(uint64_t rank, uint64_t* combination, int* levels) const;
  // Inverse of LevelIndex.
  void UnrankLevels(uint64_t index, int* levels) const;

 private:
  ProductSpace() = default;
  std::optional<Space> families_;
  std::vector<int> levels_;
  std::vector<uint64_t> strides_;
  uint64_t combinations_ = 1, level_points_ = 1, size_ = 1;
};

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_PRODUCT_SPACE_H_
