// ResNet: torchvision ResNet-18 with the ImageNet stem, as LEMUR's ResNet.py
// (shared/research/families.md section 3.22). Params at 3x32x32, 10 classes: 11,181,642.
// With ModelOptions::params["small_input_stem"] = 1, the stem is the CIFAR one (3x3 stride-1 conv,
// no max-pool), as in the heads study (shared/research/moe.md section 0.2). It is a
// FeatureBackbone: Features() is the last stage's map before pooling.
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/features.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

class ResNetBasicBlockImpl : public torch::nn::Module {
 public:
  ResNetBasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(
                     torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
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

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, down_conv{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, down_bn{nullptr};
};
TORCH_MODULE(ResNetBasicBlock);

class ResNetImpl : public ClassifierImpl, public FeatureBackbone {
 public:
  explicit ResNetImpl(const ModelOptions& o) : small_stem_(o.Param(kSmallInputStemParam, 0) != 0) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, 64, small_stem_ ? 3 : 7)
                                       .stride(small_stem_ ? 1 : 2)
                                       .padding(small_stem_ ? 1 : 3)
                                       .bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(64));
    const int64_t widths[] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      for (int block = 0; block < 2; ++block) {
        const int64_t stride = (stage > 0 && block == 0) ? 2 : 1;
        layers->push_back(ResNetBasicBlock(in, widths[stage], stride));
        in = widths[stage];
      }
    }
    register_module("layers", layers);
    fc = register_module("fc", torch::nn::Linear(512, o.num_classes));
    InitConvKaimingBnOnes(*this);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::adaptive_avg_pool2d(Features(x), {1, 1}).flatten(1);
    return fc(x);
  }

  int64_t feature_channels() const override { return 512; }

  torch::Tensor Features(torch::Tensor x) override {
    x = torch::relu(bn1(conv1(x)));
    if (!small_stem_) x = torch::max_pool2d(x, 3, 2, 1);
    return layers->forward(x);
  }

 private:
  bool small_stem_;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layers;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("ResNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<ResNetImpl>(o);
});

}  // namespace quartet::worker::models
