// BagNet: LEMUR's BagNet.py (shared/research/families.md section 3.4), a bottleneck ResNet with BN
// only on the 3x3 conv; not a real BagNet (padded 3x3 convs, unrestricted receptive field). ResNet
// stem (conv 7x7 s2 p3 -b, BN, ReLU, max-pool 3 s2 p1), 4 stages x 3 units (64/128/256/512; the
// first unit of stages 2-4 has stride 2), GAP, FC.
//
// Unit (mid = out / 4): body conv 1x1 -b in->mid, ReLU; conv 3x3 (stride s) p1 -b, BN, ReLU; conv
// 1x1 -b mid->out. Shortcut: identity, or a 1x1 conv -b with stride 1 when the channels or stride
// change; when its map differs from the body's it is bilinearly resized (align_corners = false) to
// the body's size. ReLU after the add. Any input >= 1 px runs.
//
// Params at 3x32x32, 10 classes: 1,254,890. Reads no params (LEMUR reads dropout but never applies
// it). PyTorch default initialisation. Departure (same function, less work): on a resized shortcut
// the bilinear resize runs before the bias-free 1x1 conv instead of after it. Both are linear maps
// acting on different axes (space and channels), so they commute; the conv then runs on the
// quarter-size map. Results agree with LEMUR's order up to float rounding.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d BagNetConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding((kernel - 1) / 2)
                               .bias(false));
}

class BagNetUnitImpl : public torch::nn::Module {
 public:
  BagNetUnitImpl(int64_t in, int64_t out, int64_t stride) {
    const int64_t mid = out / 4;
    conv1 = register_module("conv1", BagNetConv(in, mid, 1));
    conv2 = register_module("conv2", BagNetConv(mid, mid, 3, stride));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(mid));
    conv3 = register_module("conv3", BagNetConv(mid, out, 1));
    if (in != out || stride != 1) {
      identity_conv = register_module("identity_conv", BagNetConv(in, out, 1));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = torch::relu(conv1(x));
    y = torch::relu(bn2(conv2(y)));
    y = conv3(y);
    torch::Tensor identity = x;
    if (identity.size(2) != y.size(2) || identity.size(3) != y.size(3)) {
      identity = F::interpolate(identity, F::InterpolateFuncOptions()
                                              .size(std::vector<int64_t>{y.size(2), y.size(3)})
                                              .mode(torch::kBilinear)
                                              .align_corners(false));
    }
    if (identity_conv) identity = identity_conv(identity);
    return torch::relu(y + identity);
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, identity_conv{nullptr};
  torch::nn::BatchNorm2d bn2{nullptr};
};
TORCH_MODULE(BagNetUnit);

class BagNetImpl : public ClassifierImpl {
 public:
  explicit BagNetImpl(const ModelOptions& o) {
    stem_conv = register_module("stem_conv", BagNetConv(o.in_channels, 64, 7, 2));
    stem_bn = register_module("stem_bn", torch::nn::BatchNorm2d(64));
    const int64_t widths[] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      for (int unit = 0; unit < 3; ++unit) {
        const int64_t stride = (unit == 0 && stage > 0) ? 2 : 1;
        units->push_back(BagNetUnit(in, widths[stage], stride));
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

QUARTET_REGISTER_MODEL("BagNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<BagNetImpl>(o);
});

}  // namespace quartet::worker::models
