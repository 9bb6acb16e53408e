// The family catalog: every LEMUR image-classification model Quartet's zoo can build, grouped into
// canonical families. Pure data, no LibTorch: the coordinator validates campaigns against it and
// the worker builds experts from it.
//
// Names. A *family* is a canonical name (AirNet, SqueezeNet, ...). A family has one or more
// *variants* (SqueezeNet-1, SqueezeNet-2, ...); the first variant is the family's default, and a
// family with one variant has a variant of the same name. Anywhere a model is named (campaign
// pools, candidate specs, quartet-train), either a family name (meaning its default variant) or a
// variant name is accepted.
//
// The default pool is the 29 canonical families: the 34 LEMUR models with the suffix variants
// collapsed (BayesianNet-1/2/3, InceptionV3-1/2, SqueezeNet-1/2) and DPN68 merged with DPN131,
// which are the same network; DPN107 is a different (grouped, bias-free) network and stays its own
// family. That gives C(29, 4) = 23,751 combinations, the size of the published MoE4 space.
//
// Thread-safe: the catalog is immutable.
#ifndef QUARTET_COMMON_CATALOG_H_
#define QUARTET_COMMON_CATALOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace quartet::common {

// Names longer than this get no "closest:" hints when unknown (the edit distance is quadratic).
inline constexpr size_t kMaxHintedNameBytes = 64;

// One buildable model.
struct VariantInfo {
  // Model name, e.g. "SqueezeNet-2" (or the family name for single-variant families).
  absl::string_view name;
  // Smallest square input side it trains at (train mode, batch >= 2).
  int min_input_size;
  // Largest square input side it trains at; 0 means no limit.
  int max_input_size;
  // Trains on unresized 32x32 CIFAR-10.
  bool native_32;
  // Accepts 1-channel input directly; otherwise the worker replicates 1 channel to 3.
  bool supports_one_channel;
  // Parameters for 3 input channels and 10 classes at the CIFAR-10 shape (32 px, or
  // min_input_size where larger), equal to LEMUR's own implementation
  // (shared/research/reference-params.md).
  int64_t cifar_parameters;
  // What a user should know (quirks, departures from LEMUR).
  absl::string_view note;
};

// A canonical family and its variants.
struct FamilyInfo {
  // Catalog index, 0-based, in catalog (ASCII) order.
  int id;
  absl::string_view name;
  // The first is the default.
  std::vector<VariantInfo> variants;

  const VariantInfo& default_variant() const { return variants.front(); }
};

// A model name resolved against the catalog.
struct ResolvedModel {
  const FamilyInfo* family;
  const VariantInfo* variant;
};

// The immutable catalog.
class FamilyCatalog {
 public:
  // The process-wide catalog. Never destroyed.
  static const FamilyCatalog& Get();

  // Families in catalog order (ASCII order of names, like Python's sorted()).
  absl::Span<const FamilyInfo> families() const { return families_; }
  size_t size() const { return families_.size(); }

  // Resolves a family or variant name. NOT_FOUND otherwise, echoing at most kMaxEchoBytes of
  // `name` (escaped) and, for names of at most kMaxHintedNameBytes, naming the closest known names.
  absl::StatusOr<ResolvedModel> Resolve(absl::string_view name) const;

  // The default campaign pool: the default variant of every family, in catalog order.
  std::vector<std::string> DefaultPool() const;

  // Every variant name, families in catalog order.
  std::vector<std::string> AllVariantNames() const;

 private:
  FamilyCatalog();
  std::vector<FamilyInfo> families_;
};

}  // namespace quartet::common

#endif  // QUARTET_COMMON_CATALOG_H_
