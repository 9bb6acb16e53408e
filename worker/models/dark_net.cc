// DarkNet: LEMUR's DarkNet.py, Darknet-reference style (shared/research/families.md section 3.9).
// 4 stages x 3 units (64/128/256/512); the unit kernels of each stage are 1x1, 3x3, 1x1; every unit
// is conv (-b; 1x1 p0 or 3x3 p1), BN, LeakyReLU(0.1); max-pool 2 s2 after stages 1-3. Head: conv
// 1x1 (+b) 512->classes, LeakyReLU(0.1) on the class maps, GAP, flatten.
//
// Needs >= 8 px (three 2x2 pools). Params at 3x32x32, 10 classes: 3,664,714. Reads no params
// (LEMUR lists dropout but never uses it). Init as LEMUR: every conv weight kaiming-uniform
// (fan_in, leaky_relu gain with slope 0, i.e. sqrt(2)), conv biases 0, BN ones/zeros. No
// departures.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr double kDarkNetSlope = 0.1;

class DarkNetUnitImpl : public torch::nn::Module {
 public:
  DarkNetUnitImpl(int64_t in, int64_t out, bool pointwise) {
    const int64_t kernel = pointwise ? 1 : 3;
    conv = register_module(
        "conv", torch::nn::Conv2d(
                    torch::nn::Conv2dOptions(in, out, kernel).padding(kernel / 2).bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(out));
  }

  torch::Tensor forward(torch::Tensor x) { return torch::leaky_relu(bn(conv(x)), kDarkNetSlope); }

 private:
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(DarkNetUnit);

class DarkNetImpl : public ClassifierImpl {
 public:
  explicit DarkNetImpl(const ModelOptions& o) {
    const int64_t widths[] = {64, 128, 256, 512};
    int64_t in = o.in_channels;
    for (int stage = 0; stage < 4; ++stage) {
      for (int unit = 0; unit < 3; ++unit) {
        // LEMUR's odd_pointwise rule: units 1 and 3 of a stage are 1x1, unit 2 is 3x3.
        features->push_back(DarkNetUnit(in, widths[stage], unit % 2 == 0));
        in = widths[stage];
      }
      if (stage != 3) features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)));
    }
    register_module("features", features);
    head =
        register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, o.num_classes, 1)));

    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_uniform_(conv->weight, /*a=*/0, torch::kFanIn, torch::kLeakyReLU);
        if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features->forward(x);
    x = torch::leaky_relu(head(x), kDarkNetSlope);
    return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  }

 private:
  torch::nn::Sequential features;
  torch::nn::Conv2d head{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("DarkNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DarkNetImpl>(o);
});

}  // namespace quartet::worker::models
