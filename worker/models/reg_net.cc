// RegNet: torchvision RegNetY-400MF, as LEMUR's RegNet.py (shared/research/families.md section
// 3.21). Params at 3x32x32, 10 classes: 3,907,554.
//
// LEMUR builds the stages with torchvision's generator (depth 16, w0 48, wa 27.89, wm 2.09, group
// width 8, SE ratio 0.25, bottleneck multiplier 1); its output is written here as a table: widths
// 48/104/208/440, depths 1/3/6/6, stride 2 each, 3x3 groups 6/13/26/55.
// Params read: none (LEMUR supports only lr and momentum). BatchNorm keeps eps 1e-5, momentum 0.1.
// Init: conv weight normal(0, sqrt(2 / (k * k * out_channels))) with the conv biases (only the SE
// convs have them) left at PyTorch's default init, BN (1, 0), Linear normal(0, 0.01) with zero
// bias. Minimum input 1 px. No departure from LEMUR.
#include <cmath>
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// ResBottleneckBlock with SE: ReLU(shortcut(x) + f(x)), where f is 1x1 (in -> out), BN, ReLU,
// grouped 3x3 (stride, groups out / 8), BN, ReLU, SE(out -> round(0.25 in), ReLU, sigmoid),
// 1x1, BN; the shortcut is a 1x1 conv (stride) + BN when the shape changes, else identity.
class RegNetBlockImpl : public torch::nn::Module {
 public:
  RegNetBlockImpl(int64_t in, int64_t out, int64_t stride) {
    const int64_t group_width = 8;
    const int64_t se_width = static_cast<int64_t>(std::nearbyint(0.25 * static_cast<double>(in)));
    if (in != out || stride != 1) {
      proj = register_module("proj", ConvNormAct(ConvBnAct(in, out, 1, stride, 1, Act::kNone)));
    }
    a = register_module("a", ConvNormAct(ConvBnAct(in, out, 1, 1, 1, Act::kReLU)));
    b = register_module("b",
                        ConvNormAct(ConvBnAct(out, out, 3, stride, out / group_width, Act::kReLU)));
    se = register_module("se", SqueezeExcitation(out, se_width, Act::kReLU, Act::kSigmoid));
    c = register_module("c", ConvNormAct(ConvBnAct(out, out, 1, 1, 1, Act::kNone)));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = c(se(b(a(x))));
    return torch::relu((proj ? proj(x) : x) + y);
  }

  ConvNormAct proj{nullptr}, a{nullptr}, b{nullptr}, c{nullptr};
  SqueezeExcitation se{nullptr};
};
TORCH_MODULE(RegNetBlock);

class RegNetImpl : public ClassifierImpl {
 public:
  explicit RegNetImpl(const ModelOptions& o) {
    const int64_t stem_width = 32;
    const int64_t widths[] = {48, 104, 208, 440};
    const int64_t depths[] = {1, 3, 6, 6};

    stem = register_module("stem",
                           ConvNormAct(ConvBnAct(o.in_channels, stem_width, 3, 2, 1, Act::kReLU)));
    int64_t in = stem_width;
    for (int s = 0; s < 4; ++s) {
      for (int64_t i = 0; i < depths[s]; ++i) {
        blocks->push_back(RegNetBlock(in, widths[s], i == 0 ? 2 : 1));
        in = widths[s];
      }
    }
    register_module("blocks", blocks);
    fc = register_module("fc", torch::nn::Linear(in, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        const auto& k = conv->options.kernel_size();
        const double fan_out =
            static_cast<double>(k->at(0) * k->at(1) * conv->options.out_channels());
        conv->weight.normal_(0.0, std::sqrt(2.0 / fan_out));
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      }
    }
    fc->weight.normal_(0.0, 0.01);
    fc->bias.zero_();
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = blocks->forward(stem(x));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc(x);
  }

 private:
  ConvNormAct stem{nullptr};
  torch::nn::Sequential blocks;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("RegNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<RegNetImpl>(o);
});

}  // namespace quartet::worker::models
