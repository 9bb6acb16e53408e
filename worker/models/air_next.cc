// AirNext: LEMUR's AirNext.py (shared/research/families.md section 3.2). ResNet stem (conv 7x7 s2
// p3 -b, BN, ReLU, max-pool 3 s2 p1), then 4 stages x 3 AirNeXt units (64/128/256/512; the first
// unit of stages 2-4 has stride 2), GAP, FC.
//
// AirNeXt unit (cardinality 32, bottleneck width 4, ratio 2): group width G = 32 * floor(out/4 *
// 4/64); main path conv 1x1 -b in->G, grouped conv 3x3 (32 groups, stride s) -b, multiplied by the
// attention map when the unit has stride 1, conv 1x1 -b G->out; no BN and no activation on the main
// path. Shortcut: 1x1 conv -b (stride s) when the shape changes, else identity; ReLU after the add.
// Attention (AirBlock, stride-1 units) from the unit input: conv 1x1 -b in->G/2, BN, ReLU, max-pool
// 3 s2 p1, grouped conv 3x3 (16 groups) -b, BN, ReLU, bilinear x2 (align_corners), conv 1x1 -b
// G/2->G, BN, sigmoid; resized bilinearly (align_corners) to the unit input's size when it differs
// (odd sizes). Any input >= 1 px runs.
//
// Params at 3x32x32, 10 classes: 1,509,850. Reads no params (LEMUR lists dropout and momentum but
// uses neither; its optimiser is Adam + StepLR, which is the trainer's business). PyTorch default
// initialisation. Modules are created in LEMUR's order. No departures: the final resize is skipped
// only where it is the identity (attention map already at the input's size).
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d AirNextConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                              int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding((kernel - 1) / 2)
                               .groups(groups)
                               .bias(false));
}

// Bilinear resize with align_corners = true.
torch::Tensor AirNextResize(const torch::Tensor& x, int64_t h, int64_t w) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBilinear)
                               .align_corners(true));
}

// The attention branch (LEMUR's AirBlock): a sigmoid map with `out` channels.
class AirNextBlockImpl : public torch::nn::Module {
 public:
  AirNextBlockImpl(int64_t in, int64_t out, int64_t groups, int64_t ratio) {
    const int64_t mid = out / ratio;
    conv1 = register_module("conv1", AirNextConv(in, mid, 1));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(mid));
    conv2 = register_module("conv2", AirNextConv(mid, mid, 3, 1, groups));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(mid));
    conv3 = register_module("conv3", AirNextConv(mid, out, 1));
    bn3 = register_module("bn3", torch::nn::BatchNorm2d(out));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1(conv1(x)));
    x = torch::max_pool2d(x, 3, 2, 1);
    x = torch::relu(bn2(conv2(x)));
    x = AirNextResize(x, 2 * x.size(2), 2 * x.size(3));
    return torch::sigmoid(bn3(conv3(x)));
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
};
TORCH_MODULE(AirNextBlock);

class AirNextUnitImpl : public torch::nn::Module {
 public:
  AirNextUnitImpl(int64_t in, int64_t out, int64_t stride) {
    constexpr int64_t kCardinality = 32, kBottleneckWidth = 4, kRatio = 2;
    const int64_t mid = out / 4;
    const int64_t d = mid * kBottleneckWidth / 64;  // floor(mid * width / 64), all positive
    const int64_t group_width = kCardinality * d;
    conv1 = register_module("conv1", AirNextConv(in, group_width, 1));
    conv2 =
        register_module("conv2", AirNextConv(group_width, group_width, 3, stride, kCardinality));
    conv3 = register_module("conv3", AirNextConv(group_width, out, 1));
    if (stride == 1 && mid < 512) {
      air = register_module("air", AirNextBlock(in, group_width, kCardinality / kRatio, kRatio));
    }
    if (in != out || stride != 1) {
      identity_conv = register_module("identity_conv", AirNextConv(in, out, 1, stride));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor att;
    if (air) {
      att = air(x);
      if (att.size(2) != x.size(2) || att.size(3) != x.size(3)) {
        att = AirNextResize(att, x.size(2), x.size(3));
      }
    }
    torch::Tensor identity = identity_conv ? identity_conv(x) : x;
    torch::Tensor y = conv2(conv1(x));
    if (air) y = y * att;
    y = conv3(y);
    return torch::relu(y + identity);
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, identity_conv{nullptr};
  AirNextBlock air{nullptr};
};
TORCH_MODULE(AirNextUnit);

class AirNextImpl : public ClassifierImpl {
 public:
  explicit AirNextImpl(const ModelOptions& o) {
    stem_conv = register_module("stem_conv", AirNextConv(o.in_channels, 64, 7, 2));
    stem_bn = register_module("stem_bn", torch::nn::BatchNorm2d(64));
    const int64_t widths[] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      for (int unit = 0; unit < 3; ++unit) {
        const int64_t stride = (unit == 0 && stage != 0) ? 2 : 1;
        units->push_back(AirNextUnit(in, widths[stage], stride));
        in = widths[stage];
      }
    }
    register_module("units", units);
    output = register_module("output", torch::nn::Linear(in, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_bn(stem_conv(x)));
    x = torch::max_pool2d(x, 3, 2, 1);
    x = units->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return output(x);
  }

 private:
  torch::nn::Conv2d stem_conv{nullptr};
  torch::nn::BatchNorm2d stem_bn{nullptr};
  torch::nn::Sequential units;
  torch::nn::Linear output{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("AirNext", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<AirNextImpl>(o);
});

}  // namespace quartet::worker::models
