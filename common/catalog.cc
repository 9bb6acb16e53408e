#include "common/catalog.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log_escape.h"

namespace quartet::common {
namespace {

// Names longer than this get no "closest:" hints when unknown (the edit distance is quadratic).
constexpr size_t kMaxHintedNameBytes = 64;

// Columns: name, min input, max input (0 = none), native 32, 1-channel, parameters, note.
// Minimum inputs and parameter counts are measured on LEMUR's Python models
// (shared/research/families.md section 4, reference-params.md); the zoo tests hold the C++ ports
// to them.
std::vector<FamilyInfo> BuildCatalog() {
  std::vector<FamilyInfo> f = {
      {0, "AirNet", {{"AirNet", 1, 0, true, true, 4'905'226, "plain 4-unit residual net"}}},
      {0,
       "AirNext",
       {{"AirNext", 1, 0, true, true, 1'509'850,
         "ResNeXt-style units without BN plus an attention branch"}}},
      {0,
       "AlexNet",
       {{"AlexNet", 63, 0, false, true, 57'044'810,
         "needs >= 63 px: stride-4 stem and three max-pools; counted at 64 px"}}},
      {0, "BagNet", {{"BagNet", 1, 0, true, true, 1'254'890, "bottleneck net, BN only on 3x3"}}},
      {0,
       "BayesianNet",
       {{"BayesianNet-1", 23, 0, true, true, 3'565'268,
         "Bayes-by-backprop 3 conv + 3 FC; noise sampled every train forward, eval uses the mean "
         "(LEMUR samples in eval too); adaptive pool to LEMUR's 32-px 2x2 map before the flatten, "
         "so any size >= 23 runs"},
        {"BayesianNet-2", 29, 0, true, true, 4'351'892,
         "Bayes-by-backprop AlexNet-like; eval uses the mean; adaptive pool to the 32-px 1x1 map "
         "before the flatten"},
        {"BayesianNet-3", 16, 0, true, true, 124'012,
         "Bayes-by-backprop LeNet-5; eval uses the mean; adaptive pool to the 32-px 5x5 map before "
         "the flatten"}}},
      {0,
       "ComplexNet",
       {{"ComplexNet", 16, 0, true, true, 522'580,
         "complex-valued LeNet-like net on (re, im) = (pixel, 0); built for its input size; "
         "outputs log-probabilities"}}},
      {0, "ConvNeXt", {{"ConvNeXt", 32, 0, true, true, 49'462'378, "ConvNeXt-Small layout"}}},
      {0,
       "DPN",
       {{"DPN68", 1, 0, true, true, 57'162,
         "3 residual blocks at 32 channels, full resolution; DPN131 is the same network"},
        {"DPN131", 1, 0, true, true, 57'162, "identical to DPN68"}}},
      {0, "DPN107", {{"DPN107", 1, 0, true, true, 15'466, "grouped (g=4), bias-free DPN68"}}},
      {0, "DarkNet", {{"DarkNet", 8, 0, true, true, 3'664'714, "darknet-reference layout"}}},
      {0,
       "DenseNet",
       {{"DenseNet", 29, 0, true, true, 3'870'346,
         "DenseNet-121 layout; LEMUR ties bn_size to the batch size, Quartet makes it an option "
         "(count at bn_size 2)"}}},
      {0, "Diffuser", {{"Diffuser", 1, 0, true, true, 43'658, "2-conv CNN with train-time noise"}}},
      {0, "EfficientNet", {{"EfficientNet", 1, 0, true, true, 4'020'358, "EfficientNet-B0"}}},
      {0,
       "FractalNet",
       {{"FractalNet", 32, 0, true, true, 33'724'618,
         "5 fractal units, no global pool: the classifier grows with the input size"}}},
      {0,
       "GoogLeNet",
       {{"GoogLeNet", 15, 0, true, true, 9'960'638,
         "Inception-v1 with BN; the aux heads are built (counted) but not run: LEMUR discards "
         "their outputs"}}},
      {0, "ICNet", {{"ICNet", 1, 0, true, true, 50'538, "ICNet pieces as a classifier"}}},
      {0,
       "InceptionV3",
       {{"InceptionV3-1", 75, 0, false, true, 21'806'058,
         "Inception-v3 without aux head; needs >= 75 px; counted at 128 px"},
        {"InceptionV3-2", 299, 0, false, true, 24'371'444,
         "Inception-v3 with the aux head built (counted) but not run, as LEMUR discards its "
         "output; keeps LEMUR's 299 px training minimum (the port itself runs from 75 px)"}}},
      {0, "MNASNet", {{"MNASNet", 1, 0, true, true, 1'902'018, "MNASNet-0.75"}}},
      {0,
       "MaxVit",
       {{"MaxVit", 1, 0, true, true, 30'384'520,
         "MaxViT-T channels with partition size 1: every attention is over one token, computed as "
         "the value and output projections; runs at any size"}}},
      {0, "MobileNetV2", {{"MobileNetV2", 1, 0, true, true, 2'236'682, "MobileNetV2 x1.0"}}},
      {0,
       "MobileNetV3",
       {{"MobileNetV3", 1, 0, true, true, 591'802,
         "MobileNetV3-Small with reduced tail and dilation"}}},
      {0, "RegNet", {{"RegNet", 1, 0, true, true, 3'907'554, "RegNetY-400MF"}}},
      {0, "ResNet", {{"ResNet", 1, 0, true, true, 11'181'642, "ResNet-18, ImageNet stem"}}},
      {0, "ShuffleNet", {{"ShuffleNet", 1, 0, true, true, 1'263'854, "ShuffleNetV2 x1.0"}}},
      {0,
       "SqueezeNet",
       {{"SqueezeNet-2", 17, 0, true, true, 727'626, "SqueezeNet 1.1 (default: trains at 32 px)"},
        {"SqueezeNet-1", 21, 0, true, true, 740'554, "SqueezeNet 1.0 (weak at 32 px)"}}},
      {0, "SwinTransformer", {{"SwinTransformer", 4, 0, true, true, 27'527'044, "Swin-T v1"}}},
      {0, "UNet2D", {{"UNet2D", 1, 0, true, true, 560'106, "encoder-decoder without skips"}}},
      {0, "VGG", {{"VGG", 32, 0, true, true, 128'807'306, "VGG-11 without BN"}}},
      {0,
       "VisionTransformer",
       {{"VisionTransformer", 1, 0, true, true, 85'658'890,
         "ViT-B encoder, patch size a fraction of the input; counted at 32 px; head init "
         "normal(0, 1e-6) instead of LEMUR's zeros so that the first step reaches every layer"}}},
  };
  std::sort(f.begin(), f.end(),
            [](const FamilyInfo& a, const FamilyInfo& b) { return a.name < b.name; });
  for (size_t i = 0; i < f.size(); ++i) f[i].id = static_cast<int>(i);
  return f;
}

// Levenshtein distance, case-insensitive; for "did you mean" hints.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

FamilyCatalog::FamilyCatalog() : families_(BuildCatalog()) {}

const FamilyCatalog& FamilyCatalog::Get() {
  static const FamilyCatalog* const catalog = new FamilyCatalog();
  return *catalog;
}

absl::StatusOr<ResolvedModel> FamilyCatalog::Resolve(absl::string_view name) const {
  for (const FamilyInfo& family : families_) {
    if (family.name == name) return ResolvedModel{&family, &family.default_variant()};
    for (const VariantInfo& v : family.variants) {
      if (v.name == name) return ResolvedModel{&family, &v};
    }
  }
  // Hints cost |name| x |candidate| per catalog name: only short names get them.
  if (name.size() > kMaxHintedNameBytes) {
    return absl::NotFoundError(absl::StrCat("unknown family '", EscapeForLog(name, kMaxEchoBytes),
                                            "' (`quartet-train --list-families` lists all)"));
  }
  std::vector<std::pair<size_t, absl::string_view>> scored;
  for (const FamilyInfo& family : families_) {
    scored.emplace_back(EditDistance(name, family.name), family.name);
    for (const VariantInfo& v : family.variants) {
      if (v.name != family.name) scored.emplace_back(EditDistance(name, v.name), v.name);
    }
  }
  std::sort(scored.begin(), scored.end());
  std::vector<absl::string_view> hints;
  for (size_t i = 0; i < scored.size() && i < 3; ++i) hints.push_back(scored[i].second);
  return absl::NotFoundError(absl::StrCat("unknown family '", EscapeForLog(name, kMaxEchoBytes),
                                          "' (closest: ", absl::StrJoin(hints, ", "),
                                          "; `quartet-train --list-families` lists all)"));
}

std::vector<std::string> FamilyCatalog::DefaultPool() const {
  std::vector<std::string> pool;
  for (const FamilyInfo& family : families_) pool.emplace_back(family.name);
  return pool;
}

std::vector<std::string> FamilyCatalog::AllVariantNames() const {
  std::vector<std::string> names;
  for (const FamilyInfo& family : families_) {
    for (const VariantInfo& v : family.variants) names.emplace_back(v.name);
  }
  return names;
}

}  // namespace quartet::common
