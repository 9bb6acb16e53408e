#include "coordinator/space/product_space.h"

#include "absl/strings/str_cat.h"

namespace quartet::coordinator::space {

absl::StatusOr<ProductSpace> ProductSpace::Create(std::optional<Space> families,
                                                  std::vector<int> levels) {
  if (static_cast<int>(levels.size()) > kMaxAxes) {
    return absl::InvalidArgumentError(
        absl::StrCat("axes: ", levels.size(), " axes; at most ", kMaxAxes));
  }
  if (!families.has_value() && levels.empty()) {
    return absl::InvalidArgumentError(
        "axes: a campaign without a family axis needs at least one parameter axis");
  }
  ProductSpace out;
  out.combinations_ = families.has_value() ? families->size() : 1;
  unsigned __int128 size = out.combinations_;
  for (size_t j = 0; j < levels.size(); ++j) {
    if (levels[j] < 1 || levels[j] > kMaxLevels) {
      return absl::InvalidArgumentError(
          absl::StrCat("axes[", j, "]: ", levels[j], " levels; an axis has 1 to ", kMaxLevels));
    }
    size *= static_cast<unsigned>(levels[j]);
    if (size >= kMaxSpaceSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("axes: the space (", out.combinations_,
                       " family combinations times the axes' levels) reaches 2^63 points at "
                       "axis ",
                       j, "; use fewer levels or fewer axes"));
    }
  }
  out.families_ = std::move(families);
  out.levels_ = std::move(levels);
  out.strides_.assign(out.levels_.size(), 1);
  for (int j = static_cast<int>(out.levels_.size()) - 2; j >= 0; --j) {
    out.strides_[j] = out.strides_[j + 1] * static_cast<uint64_t>(out.levels_[j + 1]);
  }
  out.level_points_ = out.levels_.empty() ? 1 : out.strides_[0] * out.levels_[0];
  out.size_ = static_cast<uint64_t>(size);
  return out;
}

uint64_t ProductSpace::LevelIndex(const int* levels) const {
  uint64_t index = 0;
  for (size_t j = 0; j < levels_.size(); ++j)
    index += static_cast<uint64_t>(levels[j]) * strides_[j];
  return index;
}

uint64_t ProductSpace::Rank(uint64_t combination, const int* levels) const {
  return combination * level_points_ + LevelIndex(levels);
}

void ProductSpace::UnrankLevels(uint64_t index, int* levels) const {
  for (size_t j = 0; j < levels_.size(); ++j) {
    levels[j] = static_cast<int>(index / strides_[j]);
    index %= strides_[j];
  }
}

void ProductSpace::Unrank(uint64_t rank, uint64_t* combination, int* levels) const {
  *combination = rank / level_points_;
  UnrankLevels(rank % level_points_, levels);
}

}  // namespace quartet::coordinator::space
