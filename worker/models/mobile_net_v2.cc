// MobileNetV2: torchvision MobileNetV2 x1.0, as LEMUR's MobileNetV2.py
// (shared/research/families.md section 3.19). Params at 3x32x32, 10 classes: 2,236,682.
//
// Params read: ModelOptions::dropout (LEMUR prm "dropout", default 0.2), applied before the
// classifier. BatchNorm keeps PyTorch's eps 1e-5 and momentum 0.1.
// Init: conv kaiming-normal fan_out with zero bias, BN (1, 0), Linear normal(0, 0.01) with zero
// bias. Minimum input 1 px. No departure from LEMUR.
#include <cmath>
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// Inverted residual: [1x1 expand to round(in * t), BN, ReLU6] (when t != 1), depthwise 3x3
// (stride), BN, ReLU6, 1x1 project, BN. Residual when stride 1 and in == out.
class MobileNetV2InvertedResidualImpl : public torch::nn::Module {
 public:
  MobileNetV2InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio)
      : use_residual_(stride == 1 && in == out) {
    const int64_t hidden =
        static_cast<int64_t>(std::nearbyint(static_cast<double>(in) * expand_ratio));
    if (expand_ratio != 1) {
      expand = register_module("expand", ConvNormAct(ConvBnAct(in, hidden, 1, 1, 1, Act::kReLU6)));
    }
    depthwise = register_module(
        "depthwise", ConvNormAct(ConvBnAct(hidden, hidden, 3, stride, hidden, Act::kReLU6)));
    project = register_module("project", ConvNormAct(ConvBnAct(hidden, out, 1, 1, 1, Act::kNone)));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = expand ? expand(x) : x;
    y = project(depthwise(y));
    return use_residual_ ? x + y : y;
  }

  ConvNormAct expand{nullptr}, depthwise{nullptr}, project{nullptr};

 private:
  bool use_residual_;
};
TORCH_MODULE(MobileNetV2InvertedResidual);

class MobileNetV2Impl : public ClassifierImpl {
 public:
  explicit MobileNetV2Impl(const ModelOptions& o) : dropout_(o.dropout) {
    struct Group {
      int64_t t, c, n, s;
    };
    const Group groups[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                            {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    const int64_t last_channel = 1280;

    stem = register_module("stem", ConvNormAct(ConvBnAct(o.in_channels, 32, 3, 2, 1, Act::kReLU6)));
    int64_t in = 32;
    for (const Group& g : groups) {
      for (int64_t i = 0; i < g.n; ++i) {
        blocks->push_back(MobileNetV2InvertedResidual(in, g.c, i == 0 ? g.s : 1, g.t));
        in = g.c;
      }
    }
    register_module("blocks", blocks);
    head = register_module("head", ConvNormAct(ConvBnAct(in, last_channel, 1, 1, 1, Act::kReLU6)));
    fc = register_module("fc", torch::nn::Linear(last_channel, o.num_classes));

    InitConvKaimingBnOnes(*this);
    torch::NoGradGuard no_grad;
    fc->weight.normal_(0.0, 0.01);
    fc->bias.zero_();
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = head(blocks->forward(stem(x)));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    x = Dropout(x, dropout_, is_training());
    return fc(x);
  }

 private:
  double dropout_;
  ConvNormAct stem{nullptr}, head{nullptr};
  torch::nn::Sequential blocks;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("MobileNetV2", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<MobileNetV2Impl>(o);
});

}  // namespace quartet::worker::models
