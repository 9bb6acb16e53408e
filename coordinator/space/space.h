// The combination space of one campaign: k-subsets of a pool of n families that contain every
// required family. Pure data, thread-safe after construction.
//
// Families are pool indices [0, n) (the caller maps names to indices in pool order). Required
// families are in every combination; the space is the (k - r)-subsets of the n - r free families,
// and a combination's rank is the lexicographic rank of its free part among those (so with no
// required families the rank is the plain lexicographic rank).
#ifndef QUARTET_COORDINATOR_SPACE_SPACE_H_
#define QUARTET_COORDINATOR_SPACE_SPACE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace quartet::coordinator::space {

class Space {
 public:
  // INVALID_ARGUMENT (naming the field: "pool", "k", "required") when n < 1 or n > kMaxN, k < 1 or
  // k > min(kMaxK, n), a required index is out of [0, n) or repeated, or there are k or more
  // required families (nothing left to choose).
  static absl::StatusOr<Space> Create(int n, int k, std::vector<int> required);

  int n() const { return n_; }
  int k() const { return k_; }
  const std::vector<int>& required() const { return required_; }
  // Number of distinct combinations: C(n - r, k - r).
  uint64_t size() const { return size_; }

  // The combination of rank `rank` (< size()), sorted pool indices, required ones included.
  std::vector<int> Unrank(uint64_t rank) const;
  // Unchecked, into `out` (k values, sorted).
  void UnrankInto(uint64_t rank, int* out) const;
  // Rank of a sorted combination of k pool indices that contains every required family.
  // INVALID_ARGUMENT otherwise.
  absl::StatusOr<uint64_t> Rank(absl::Span<const int> combination) const;

 private:
  Space() = default;
  int n_ = 0, k_ = 0;
  uint64_t size_ = 0;
  std::vector<int> required_;
  std::vector<int> free_;      // free pool indices, ascending
  std::vector<int> free_pos_;  // pool index -> position in free_, or -1 when required
  std::vector<char> is_required_;
};

}  // namespace quartet::coordinator::space

#endif  // QUARTET_COORDINATOR_SPACE_SPACE_H_
