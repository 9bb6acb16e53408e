#include "coordinator/space/space.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "coordinator/space/combinatorics.h"

namespace quartet::coordinator::space {

absl::StatusOr<Space> Space::Create(int n, int k, std::vector<int> required) {
  if (n < 1 || n > kMaxN) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool: ", n, " families; a pool needs between 1 and ", kMaxN));
  }
  if (k < 1 || k > std::min(kMaxK, n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("k: ", k, " is outside [1, ", std::min(kMaxK, n), "] for a pool of ", n));
  }
  std::vector<char> is_required(n, 0);
  for (int r : required) {
    if (r < 0 || r >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("required: family index ", r, " is not in the pool [0, ", n, ")"));
    }
    if (is_required[r]) {
      return absl::InvalidArgumentError(
          absl::StrCat("required: family index ", r, " is listed twice"));
    }
    is_required[r] = 1;
  }
  if (static_cast<int>(required.size()) >= k) {
    return absl::InvalidArgumentError(absl::StrCat("required: ", required.size(),
                                                   " required families leave nothing to choose "
                                                   "with k = ",
                                                   k));
  }
  Space space;
  space.n_ = n;
  space.k_ = k;
  std::sort(required.begin(), required.end());
  space.required_ = std::move(required);
  space.is_required_ = std::move(is_required);
  space.free_pos_.assign(n, -1);
  for (int i = 0; i < n; ++i) {
    if (space.is_required_[i]) continue;
    space.free_pos_[i] = static_cast<int>(space.free_.size());
    space.free_.push_back(i);
  }
  const int r = static_cast<int>(space.required_.size());
  space.size_ = Binomial(n - r, k - r);
  return space;
}

std::vector<int> Space::Unrank(uint64_t rank) const {
  std::vector<int> out(k_);
  UnrankInto(rank, out.data());
  return out;
}

void Space::UnrankInto(uint64_t rank, int* out) const {
  const int r = static_cast<int>(required_.size());
  const int m = static_cast<int>(free_.size());
  int free_part[kMaxK];
  UnrankUnchecked(rank, m, k_ - r, free_part);
  // Merge the free part (mapped to pool indices) with the sorted required families.
  int i = 0, j = 0, o = 0;
  while (i < k_ - r || j < r) {
    if (j == r || (i < k_ - r && free_[free_part[i]] < required_[j])) {
      out[o++] = free_[free_part[i++]];
    } else {
      out[o++] = required_[j++];
    }
  }
}

absl::StatusOr<uint64_t> Space::Rank(absl::Span<const int> combination) const {
  if (static_cast<int>(combination.size()) != k_) {
    return absl::InvalidArgumentError(
        absl::StrCat("combination has ", combination.size(), " families; the space has k = ", k_));
  }
  int free_part[kMaxK];
  int f = 0, required_seen = 0;
  for (int i = 0; i < k_; ++i) {
    const int v = combination[i];
    if (v < 0 || v >= n_) {
      return absl::InvalidArgumentError(
          absl::StrCat("combination value ", v, " is not in the pool [0, ", n_, ")"));
    }
    if (i > 0 && v <= combination[i - 1]) {
      return absl::InvalidArgumentError(
          "combination is not sorted or has duplicates (values must strictly increase)");
    }
    if (is_required_[v]) {
      ++required_seen;
    } else {
      free_part[f++] = free_pos_[v];
    }
  }
  if (required_seen != static_cast<int>(required_.size())) {
    return absl::InvalidArgumentError("combination lacks a required family");
  }
  return RankUnchecked(free_part, f, static_cast<int>(free_.size()));
}

}  // namespace quartet::coordinator::space
