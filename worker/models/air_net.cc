// AirNet: LEMUR's AirNet.py (shared/research/families.md section 3.1). Despite the name it has no
// attention module: a plain 4-unit residual net. Init block conv 3x3 s2 p1 (+b) C->64, BN, ReLU;
// four residual units (64/128/256/512, strides 1/2/2/2), each conv 3x3 (+b), BN, ReLU, conv 3x3
// (+b), BN, plus an identity or 1x1 conv (-b) + BN shortcut, ReLU after the add; GAP; FC.
// Every layer is padded, so any input >= 1 px runs.
// Params at 3x32x32, 10 classes: 4,905,226. Reads no params (LEMUR's only prm are lr and
// momentum, which are optimiser settings). PyTorch default initialisation. No departures.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

class AirNetUnitImpl : public torch::nn::Module {
 public:
  AirNetUnitImpl(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2 = register_module("conv2",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1)));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out) {
      down_conv = register_module(
          "down_conv",
          torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
      down_bn = register_module("down_bn", torch::nn::BatchNorm2d(out));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor identity = down_conv ? down_bn(down_conv(x)) : x;
    torch::Tensor y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    return torch::relu(y + identity);
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, down_conv{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, down_bn{nullptr};
};
TORCH_MODULE(AirNetUnit);

class AirNetImpl : public ClassifierImpl {
 public:
  explicit AirNetImpl(const ModelOptions& o) {
    init_conv = register_module(
        "init_conv",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, 64, 3).stride(2).padding(1)));
    init_bn = register_module("init_bn", torch::nn::BatchNorm2d(64));
    const int64_t widths[] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int i = 0; i < 4; ++i) {
      units->push_back(AirNetUnit(in, widths[i], i == 0 ? 1 : 2));
      in = widths[i];
    }
    register_module("units", units);
    fc = register_module("fc", torch::nn::Linear(512, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(init_bn(init_conv(x)));
    x = units->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc(x);
  }

 private:
  torch::nn::Conv2d init_conv{nullptr};
  torch::nn::BatchNorm2d init_bn{nullptr};
  torch::nn::Sequential units;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("AirNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<AirNetImpl>(o);
});

}  // namespace quartet::worker::models
