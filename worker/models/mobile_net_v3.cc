// MobileNetV3: torchvision MobileNetV3-Small with reduced tail (last stage 48 channels, last
// channel 512) and dilation 2 in the last three blocks, as LEMUR's MobileNetV3.py
// (shared/research/families.md section 3.20). Params at 3x32x32, 10 classes: 591,802.
//
// Params read (LEMUR prm names; LEMUR draws both from U[0, 1] and has no defaults, these are the
// values of reference-params.md's measurement rather than torchvision's 1e-3 / 0.01):
//   norm_eps       1e-5  eps of every BatchNorm
//   norm_momentum  0.1   momentum of every BatchNorm
// and ModelOptions::dropout (LEMUR prm "dropout", default 0.2) between the two classifier Linears.
// Init: conv kaiming-normal fan_out with zero bias, BN (1, 0), Linear normal(0, 0.01) with zero
// bias. Total stride 16; minimum input 1 px. No departure from LEMUR.
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// Conv (no bias), BN(norm), activation; padding ((k - 1) / 2) * dilation.
ConvNormActOptions MobileNetV3Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                   int64_t groups, int64_t dilation, Act act,
                                   const NormOptions& norm) {
  ConvNormActOptions c = ConvBnAct(in, out, kernel, stride, groups, act);
  c.dilation = dilation;
  c.norm = norm;
  return c;
}

struct MobileNetV3BlockConfig {
  int64_t in, kernel, expanded, out;
  bool use_se;
  Act act;
  int64_t stride, dilation;
};

// Inverted residual: [1x1 expand, BN, act] (when expanded != in), depthwise k x k (stride 1 when
// dilated, else the configured stride), BN, act, [SE(expanded -> make_divisible(expanded / 4),
// ReLU, Hardsigmoid)], 1x1 project, BN. Residual when the configured stride is 1 and in == out.
class MobileNetV3InvertedResidualImpl : public torch::nn::Module {
 public:
  MobileNetV3InvertedResidualImpl(const MobileNetV3BlockConfig& c, const NormOptions& norm)
      : use_residual_(c.stride == 1 && c.in == c.out) {
    if (c.expanded != c.in) {
      expand = register_module(
          "expand", ConvNormAct(MobileNetV3Conv(c.in, c.expanded, 1, 1, 1, 1, c.act, norm)));
    }
    const int64_t stride = c.dilation > 1 ? 1 : c.stride;
    depthwise = register_module(
        "depthwise", ConvNormAct(MobileNetV3Conv(c.expanded, c.expanded, c.kernel, stride,
                                                 c.expanded, c.dilation, c.act, norm)));
    if (c.use_se) {
      se = register_module("se", SqueezeExcitation(c.expanded, MakeDivisible(c.expanded / 4, 8),
                                                   Act::kReLU, Act::kHardsigmoid));
    }
    project = register_module(
        "project", ConvNormAct(MobileNetV3Conv(c.expanded, c.out, 1, 1, 1, 1, Act::kNone, norm)));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = expand ? expand(x) : x;
    y = depthwise(y);
    if (se) y = se(y);
    y = project(y);
    return use_residual_ ? y + x : y;
  }

  ConvNormAct expand{nullptr}, depthwise{nullptr}, project{nullptr};
  SqueezeExcitation se{nullptr};

 private:
  bool use_residual_;
};
TORCH_MODULE(MobileNetV3InvertedResidual);

class MobileNetV3Impl : public ClassifierImpl {
 public:
  explicit MobileNetV3Impl(const ModelOptions& o) : dropout_(o.dropout) {
    NormOptions norm;
    norm.eps = o.Param("norm_eps", 1e-5);
    norm.momentum = o.Param("norm_momentum", 0.1);
    const Act re = Act::kReLU, hs = Act::kHardswish;
    // MobileNetV3-Small, reduce_divider 2, dilation 2, width 1.0.
    const MobileNetV3BlockConfig configs[] = {
        {16, 3, 16, 16, true, re, 2, 1},  {16, 3, 72, 24, false, re, 2, 1},
        {24, 3, 88, 24, false, re, 1, 1}, {24, 5, 96, 40, true, hs, 2, 1},
        {40, 5, 240, 40, true, hs, 1, 1}, {40, 5, 240, 40, true, hs, 1, 1},
        {40, 5, 120, 48, true, hs, 1, 1}, {48, 5, 144, 48, true, hs, 1, 1},
        {48, 5, 288, 48, true, hs, 2, 2}, {48, 5, 288, 48, true, hs, 1, 2},
        {48, 5, 288, 48, true, hs, 1, 2}};
    const int64_t last_conv = 6 * 48;
    const int64_t last_channel = 512;

    stem = register_module(
        "stem", ConvNormAct(MobileNetV3Conv(o.in_channels, 16, 3, 2, 1, 1, Act::kHardswish, norm)));
    for (const MobileNetV3BlockConfig& c : configs) {
      blocks->push_back(MobileNetV3InvertedResidual(c, norm));
    }
    register_module("blocks", blocks);
    head = register_module(
        "head", ConvNormAct(MobileNetV3Conv(48, last_conv, 1, 1, 1, 1, Act::kHardswish, norm)));
    fc1 = register_module("fc1", torch::nn::Linear(last_conv, last_channel));
    fc2 = register_module("fc2", torch::nn::Linear(last_channel, o.num_classes));

    InitConvKaimingBnOnes(*this);
    torch::NoGradGuard no_grad;
    fc1->weight.normal_(0.0, 0.01);
    fc1->bias.zero_();
    fc2->weight.normal_(0.0, 0.01);
    fc2->bias.zero_();
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = head(blocks->forward(stem(x)));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    x = torch::hardswish(fc1(x));
    x = Dropout(x, dropout_, is_training());
    return fc2(x);
  }

 private:
  double dropout_;
  ConvNormAct stem{nullptr}, head{nullptr};
  torch::nn::Sequential blocks;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("MobileNetV3", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<MobileNetV3Impl>(o);
});

}  // namespace quartet::worker::models
