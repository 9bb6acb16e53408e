#include "coordinator/core/memory_estimate.h"

#include <algorithm>
#include <map>

#include "common/catalog.h"

namespace quartet::coordinator {
namespace {

constexpr int64_t kMiB = 1 << 20;
// CUDA context and allocator slack, counted once per candidate.
constexpr int64_t kDeviceOverheadBytes = 512 * kMiB;
// fp32 weights and gradients (included in the measured figure), plus AdamW's two moments.
constexpr int64_t kMeasuredBytesPerParameter = 8;
constexpr int64_t kTrainingBytesPerParameter = 16;
// The batch and the smallest input the zoo benchmark measured at.
constexpr int kMeasuredBatch = 32;
constexpr int kSmallestInput = 32;

struct Measured {
  int input_size;  // the side the family was measured at
  int64_t mib;     // peak MiB above LibTorch's baseline, forward and backward, batch 32
};

// bench/RESULTS.md, "Family zoo" (2026-11-22, `./build/bench/zoo --iterations=3 --record`).
const std::map<std::string, Measured>& Table() {
  static const auto* table = new std::map<std::string, Measured>{
      {"AirNet", {32, 105}},
      {"AirNext", {32, 63}},
      {"AlexNet", {63, 607}},
      {"BagNet", {32, 53}},
      {"BayesianNet", {32, 104}},
      {"ComplexNet", {32, 31}},
      {"ConvNeXt", {32, 533}},
      {"DPN", {32, 136}},
      {"DPN107", {32, 144}},
      {"DarkNet", {32, 335}},
      {"DenseNet", {32, 188}},
      {"Diffuser", {32, 52}},
      {"EfficientNet", {32, 110}},
      {"FractalNet", {32, 714}},
      {"GoogLeNet", {32, 124}},
      {"ICNet", {32, 18}},
      {"InceptionV3", {75, 385}},
      {"MNASNet", {32, 65}},
      {"MaxVit", {32, 489}},
      {"MobileNetV2", {32, 85}},
      {"MobileNetV3", {32, 34}},
      {"RegNet", {32, 84}},
      {"ResNet", {32, 144}},
      {"ShuffleNet", {32, 40}},
      {"SqueezeNet", {32, 31}},
      {"SwinTransformer", {32, 791}},
      {"UNet2D", {32, 105}},
      {"VGG", {32, 1443}},
      {"VisionTransformer", {32, 865}},
  };
  return *table;
}

const Measured& Largest() {
  static const Measured largest = [] {
    Measured m{kSmallestInput, 0};
    for (const auto& [name, entry] : Table()) m = entry.mib > m.mib ? entry : m;
    return m;
  }();
  return largest;
}

}  // namespace

int64_t EstimateTrainingBytes(const std::vector<std::string>& models, int input_size,
                              int batch_size) {
  const double batch_scale = static_cast<double>(std::max(batch_size, 1)) / kMeasuredBatch;
  int64_t total = kDeviceOverheadBytes;
  for (const std::string& name : models) {
    Measured measured = Largest();
    int side = std::max(input_size, kSmallestInput);
    int64_t parameters = 0;
    auto model = common::FamilyCatalog::Get().Resolve(name);
    if (model.ok()) {
      auto it = Table().find(std::string(model->family->name));
      if (it != Table().end()) measured = it->second;
      if (input_size == 0) side = std::max(kSmallestInput, model->variant->min_input_size);
      parameters = model->variant->cifar_parameters;
    }
    // What the measurement holds beyond weights and gradients is activations: they scale with the
    // input area and the batch; the parameters' share does not.
    const double area = static_cast<double>(side) * side /
                        (static_cast<double>(measured.input_size) * measured.input_size);
    const int64_t activations =
        std::max<int64_t>(0, measured.mib * kMiB - parameters * kMeasuredBytesPerParameter);
    total += static_cast<int64_t>(activations * area * batch_scale) +
             parameters * kTrainingBytesPerParameter;
  }
  return total;
}

bool HasMeasuredMemory(const std::string& family) { return Table().count(family) > 0; }

}  // namespace quartet::coordinator
