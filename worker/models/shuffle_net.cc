// ShuffleNet: torchvision ShuffleNetV2 x1.0 (stage widths 116/232/464, repeats 4/8/4, last conv
// 1024), as LEMUR's ShuffleNet.py (shared/research/families.md section 3.23). Params at 3x32x32,
// 10 classes: 1,263,854.
//
// Params read: none (LEMUR supports only lr and momentum). BatchNorm keeps eps 1e-5, momentum 0.1.
// Init: PyTorch's defaults (no custom init, as torchvision). Minimum input 1 px. No departure from
// LEMUR.
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

torch::nn::Conv2d ShuffleNetConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                                 int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(kernel / 2)
                               .groups(groups)
                               .bias(false));
}

// Interleaves the two halves of the channels: view (N, 2, C/2, H, W), swap the group axes, flatten.
torch::Tensor ShuffleNetChannelShuffle(const torch::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.view({n, 2, c / 2, h, w}).transpose(1, 2).contiguous().view({n, c, h, w});
}

// ShuffleNetV2 unit with b = out / 2 branch channels.
// Stride 1: split x into halves (x1, x2); out = shuffle(cat(x1, branch2(x2))).
// Stride 2: out = shuffle(cat(branch1(x), branch2(x))).
// branch1: depthwise 3x3 (stride), BN, 1x1 (in -> b), BN, ReLU.
// branch2: 1x1 (-> b), BN, ReLU, depthwise 3x3 (stride), BN, 1x1 (b -> b), BN, ReLU.
class ShuffleNetUnitImpl : public torch::nn::Module {
 public:
  ShuffleNetUnitImpl(int64_t in, int64_t out, int64_t stride) : stride_(stride) {
    const int64_t b = out / 2;
    if (stride > 1) {
      b1_dw = register_module("b1_dw", ShuffleNetConv(in, in, 3, stride, in));
      b1_bn1 = register_module("b1_bn1", torch::nn::BatchNorm2d(in));
      b1_pw = register_module("b1_pw", ShuffleNetConv(in, b, 1));
      b1_bn2 = register_module("b1_bn2", torch::nn::BatchNorm2d(b));
    }
    b2_pw1 = register_module("b2_pw1", ShuffleNetConv(stride > 1 ? in : b, b, 1));
    b2_bn1 = register_module("b2_bn1", torch::nn::BatchNorm2d(b));
    b2_dw = register_module("b2_dw", ShuffleNetConv(b, b, 3, stride, b));
    b2_bn2 = register_module("b2_bn2", torch::nn::BatchNorm2d(b));
    b2_pw2 = register_module("b2_pw2", ShuffleNetConv(b, b, 1));
    b2_bn3 = register_module("b2_bn3", torch::nn::BatchNorm2d(b));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor left, right;
    if (stride_ == 1) {
      auto halves = x.chunk(2, 1);
      left = halves[0];
      right = Branch2(halves[1]);
    } else {
      left = torch::relu(b1_bn2(b1_pw(b1_bn1(b1_dw(x)))));
      right = Branch2(x);
    }
    return ShuffleNetChannelShuffle(torch::cat({left, right}, 1));
  }

  torch::nn::Conv2d b1_dw{nullptr}, b1_pw{nullptr}, b2_pw1{nullptr}, b2_dw{nullptr},
      b2_pw2{nullptr};
  torch::nn::BatchNorm2d b1_bn1{nullptr}, b1_bn2{nullptr}, b2_bn1{nullptr}, b2_bn2{nullptr},
      b2_bn3{nullptr};

 private:
  torch::Tensor Branch2(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(b2_bn1(b2_pw1(x)));
    y = b2_bn2(b2_dw(y));
    return torch::relu(b2_bn3(b2_pw2(y)));
  }

  int64_t stride_;
};
TORCH_MODULE(ShuffleNetUnit);

class ShuffleNetImpl : public ClassifierImpl {
 public:
  explicit ShuffleNetImpl(const ModelOptions& o) {
    const int64_t stem_width = 24;
    const int64_t widths[] = {116, 232, 464};
    const int64_t repeats[] = {4, 8, 4};
    const int64_t last_width = 1024;

    conv1 = register_module("conv1", ShuffleNetConv(o.in_channels, stem_width, 3, 2));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(stem_width));
    int64_t in = stem_width;
    for (int s = 0; s < 3; ++s) {
      for (int64_t i = 0; i < repeats[s]; ++i) {
        stages->push_back(ShuffleNetUnit(in, widths[s], i == 0 ? 2 : 1));
        in = widths[s];
      }
    }
    register_module("stages", stages);
    conv5 = register_module("conv5", ShuffleNetConv(in, last_width, 1));
    bn5 = register_module("bn5", torch::nn::BatchNorm2d(last_width));
    fc = register_module("fc", torch::nn::Linear(last_width, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(bn1(conv1(x)));
    x = torch::max_pool2d(x, 3, 2, 1);
    x = stages->forward(x);
    x = torch::relu(bn5(conv5(x)));
    return fc(x.mean({2, 3}));
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv5{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn5{nullptr};
  torch::nn::Sequential stages;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("ShuffleNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<ShuffleNetImpl>(o);
});

}  // namespace quartet::worker::models
