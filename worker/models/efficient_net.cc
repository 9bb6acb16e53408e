// EfficientNet: torchvision EfficientNet-B0 (MBConv with SiLU, squeeze-excitation and stochastic
// depth), as LEMUR's EfficientNet.py (shared/research/families.md section 3.12). Params at
// 3x32x32, 10 classes: 4,020,358.
//
// Params read: ModelOptions::dropout (LEMUR prm "dropout", default 0.2), applied before the
// classifier. The stochastic-depth maximum is fixed at 0.2 as in LEMUR (block j of 16 uses
// 0.2 * j / 16); BatchNorm keeps PyTorch's eps 1e-5 and momentum 0.1.
// Init: conv kaiming-normal fan_out with zero bias, BN (1, 0), Linear uniform +-1/sqrt(out) with
// zero bias. Minimum input 1 px (every conv is padded). No departure from LEMUR.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// MBConv: [1x1 expand, BN, SiLU] (when expanded != in), depthwise k x k (stride), BN, SiLU,
// SE(expanded -> max(1, in / 4), SiLU, sigmoid), 1x1 project, BN. Residual with stochastic depth
// when stride 1 and in == out.
class EfficientNetMBConvImpl : public torch::nn::Module {
 public:
  EfficientNetMBConvImpl(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel,
                         int64_t stride, double sd_prob)
      : use_residual_(stride == 1 && in == out), sd_prob_(sd_prob) {
    const int64_t expanded = MakeDivisible(static_cast<double>(in * expand_ratio), 8);
    if (expanded != in) {
      expand = register_module("expand", ConvNormAct(ConvBnAct(in, expanded, 1, 1, 1, Act::kSiLU)));
    }
    depthwise = register_module("depthwise", ConvNormAct(ConvBnAct(expanded, expanded, kernel,
                                                                   stride, expanded, Act::kSiLU)));
    se = register_module(
        "se", SqueezeExcitation(expanded, std::max<int64_t>(1, in / 4), Act::kSiLU, Act::kSigmoid));
    project =
        register_module("project", ConvNormAct(ConvBnAct(expanded, out, 1, 1, 1, Act::kNone)));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = expand ? expand(x) : x;
    y = project(se(depthwise(y)));
    if (!use_residual_) return y;
    return StochasticDepth(y, sd_prob_, is_training()) + x;
  }

  ConvNormAct expand{nullptr}, depthwise{nullptr}, project{nullptr};
  SqueezeExcitation se{nullptr};

 private:
  bool use_residual_;
  double sd_prob_;
};
TORCH_MODULE(EfficientNetMBConv);

class EfficientNetImpl : public ClassifierImpl {
 public:
  explicit EfficientNetImpl(const ModelOptions& o) : dropout_(o.dropout) {
    struct Stage {
      int64_t expand, kernel, stride, in, out, repeats;
    };
    const Stage stages[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                            {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                            {6, 3, 1, 192, 320, 1}};
    const double sd_max = 0.2;
    const int total_blocks = 16;

    stem = register_module("stem", ConvNormAct(ConvBnAct(o.in_channels, 32, 3, 2, 1, Act::kSiLU)));
    int block_id = 0;
    for (const Stage& s : stages) {
      for (int64_t i = 0; i < s.repeats; ++i) {
        const double p = sd_max * block_id / total_blocks;
        blocks->push_back(EfficientNetMBConv(i == 0 ? s.in : s.out, s.out, s.expand, s.kernel,
                                             i == 0 ? s.stride : 1, p));
        ++block_id;
      }
    }
    register_module("blocks", blocks);
    head = register_module("head", ConvNormAct(ConvBnAct(320, 1280, 1, 1, 1, Act::kSiLU)));
    fc = register_module("fc", torch::nn::Linear(1280, o.num_classes));

    InitConvKaimingBnOnes(*this);
    torch::NoGradGuard no_grad;
    const double range = 1.0 / std::sqrt(static_cast<double>(o.num_classes));
    fc->weight.uniform_(-range, range);
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

QUARTET_REGISTER_MODEL("EfficientNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<EfficientNetImpl>(o);
});

}  // namespace quartet::worker::models
