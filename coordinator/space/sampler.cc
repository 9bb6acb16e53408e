#include "coordinator/space/sampler.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space {
namespace {

constexpr SamplerKind kAllKinds[] = {SamplerKind::kLexicographic, SamplerKind::kUniform,
                                     SamplerKind::kStratified, SamplerKind::kPairCovering,
                                     SamplerKind::kAdaptive};

absl::Status CheckOptions(const SamplerOptions& options) {
  // Negated comparison so that NaN is refused too.
  if (!(options.exploration_share >= 0.0 && options.exploration_share <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("exploration_share: ", options.exploration_share, " is outside [0, 1]"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* SamplerKindName(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::kLexicographic:
      return "LEXICOGRAPHIC";
    case SamplerKind::kUniform:
      return "UNIFORM";
    case SamplerKind::kStratified:
      return "STRATIFIED";
    case SamplerKind::kPairCovering:
      return "PAIR_COVERING";
    case SamplerKind::kAdaptive:
      return "ADAPTIVE";
  }
  return "UNKNOWN";
}

absl::StatusOr<SamplerKind> ParseSamplerKind(absl::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  for (SamplerKind kind : kAllKinds) {
    if (upper == SamplerKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("sampler: unknown sampler \"", name,
                   "\"; expected LEXICOGRAPHIC, UNIFORM, STRATIFIED, PAIR_COVERING or ADAPTIVE"));
}

absl::StatusOr<std::unique_ptr<Sampler>> CreateSampler(SamplerKind kind, const Space& space,
                                                       uint64_t seed,
                                                       const SamplerOptions& options) {
  QUARTET_RETURN_IF_ERROR(CheckOptions(options));
  switch (kind) {
    case SamplerKind::kLexicographic:
      return internal::NewLexicographicSampler(space.size());
    case SamplerKind::kUniform:
      return internal::NewUniformSampler(space.size(), seed);
    case SamplerKind::kStratified:
      return internal::NewStratifiedSampler(space, seed);
    case SamplerKind::kPairCovering:
      return internal::NewPairCoveringSampler(space, seed);
    case SamplerKind::kAdaptive:
      return internal::NewAdaptiveSampler(space, seed, options);
  }
  return absl::InvalidArgumentError("sampler: unknown sampler kind");
}

double SeededUnit(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  using internal::Mix64;
  const uint64_t bits = Mix64(Mix64(Mix64(seed ^ Mix64(a)) ^ Mix64(b + 1)) ^ Mix64(c + 2));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

absl::StatusOr<std::unique_ptr<Sampler>> CreateSampler(SamplerKind kind, const ProductSpace& space,
                                                       uint64_t seed,
                                                       const SamplerOptions& options) {
  if (space.num_axes() == 0) return CreateSampler(kind, space.families(), seed, options);
  QUARTET_RETURN_IF_ERROR(CheckOptions(options));
  return internal::NewProductSampler(kind, space, seed, options);
}

}  // namespace quartet::coordinator::space
