// MNASNet: torchvision MNASNet with width multiplier 0.75 (depths 24, 16, 24, 32, 64, 72, 144,
// 240), as LEMUR's MNASNet.py (shared/research/families.md section 3.17). Params at 3x32x32,
// 10 classes: 1,902,018.
//
// Params read: ModelOptions::dropout (LEMUR prm "dropout", default 0.2), applied before the
// classifier. Every BatchNorm has momentum 3e-4 (= 1 - 0.9997, fixed in LEMUR, not a prm; the
// running statistics move slowly, so eval accuracy lags early in training) and eps 1e-5.
// Init: conv kaiming-normal fan_out (ReLU), BN (1, 0), Linear kaiming-uniform fan_out with gain 1
// and zero bias. Minimum input 1 px. No departure from LEMUR.
#include <cstdint>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr double kMNASNetBnMomentum = 1.0 - 0.9997;

torch::nn::BatchNorm2d MNASNetBn(int64_t channels) {
  return torch::nn::BatchNorm2d(
      torch::nn::BatchNorm2dOptions(channels).momentum(kMNASNetBnMomentum));
}

torch::nn::Conv2d MNASNetConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                              int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(kernel / 2)
                               .groups(groups)
                               .bias(false));
}

// Inverted residual: 1x1 expand, BN, ReLU, depthwise k x k (stride), BN, ReLU, 1x1 project, BN;
// residual when in == out and stride 1. No SE.
class MNASNetInvertedResidualImpl : public torch::nn::Module {
 public:
  MNASNetInvertedResidualImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                              int64_t expansion)
      : use_residual_(in == out && stride == 1) {
    const int64_t mid = in * expansion;
    expand = register_module("expand", MNASNetConv(in, mid, 1));
    bn1 = register_module("bn1", MNASNetBn(mid));
    depthwise = register_module("depthwise", MNASNetConv(mid, mid, kernel, stride, mid));
    bn2 = register_module("bn2", MNASNetBn(mid));
    project = register_module("project", MNASNetConv(mid, out, 1));
    bn3 = register_module("bn3", MNASNetBn(out));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = torch::relu(bn1(expand(x)));
    y = torch::relu(bn2(depthwise(y)));
    y = bn3(project(y));
    return use_residual_ ? y + x : y;
  }

  torch::nn::Conv2d expand{nullptr}, depthwise{nullptr}, project{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};

 private:
  bool use_residual_;
};
TORCH_MODULE(MNASNetInvertedResidual);

class MNASNetImpl : public ClassifierImpl {
 public:
  explicit MNASNetImpl(const ModelOptions& o) : dropout_(o.dropout) {
    const double alpha = 0.75;
    const int64_t base[] = {32, 16, 24, 40, 80, 96, 192, 320};
    int64_t d[8];
    for (int i = 0; i < 8; ++i) d[i] = MakeDivisible(base[i] * alpha, 8);

    stem_conv1 = register_module("stem_conv1", MNASNetConv(o.in_channels, d[0], 3, 2));
    stem_bn1 = register_module("stem_bn1", MNASNetBn(d[0]));
    stem_conv2 = register_module("stem_conv2", MNASNetConv(d[0], d[0], 3, 1, d[0]));
    stem_bn2 = register_module("stem_bn2", MNASNetBn(d[0]));
    stem_conv3 = register_module("stem_conv3", MNASNetConv(d[0], d[1], 1));
    stem_bn3 = register_module("stem_bn3", MNASNetBn(d[1]));

    struct Stack {
      int64_t kernel, stride, expansion, repeats;
    };
    const Stack stacks[] = {{3, 2, 3, 3}, {5, 2, 3, 3}, {5, 2, 6, 3},
                            {3, 1, 6, 2}, {5, 2, 6, 4}, {3, 1, 6, 1}};
    for (int s = 0; s < 6; ++s) {
      const Stack& st = stacks[s];
      for (int64_t i = 0; i < st.repeats; ++i) {
        blocks->push_back(MNASNetInvertedResidual(i == 0 ? d[s + 1] : d[s + 2], d[s + 2], st.kernel,
                                                  i == 0 ? st.stride : 1, st.expansion));
      }
    }
    register_module("blocks", blocks);
    tail_conv = register_module("tail_conv", MNASNetConv(d[7], 1280, 1));
    tail_bn = register_module("tail_bn", MNASNetBn(1280));
    fc = register_module("fc", torch::nn::Linear(1280, o.num_classes));

    InitConvKaimingBnOnes(*this);
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(fc->weight, 0.0, torch::kFanOut, torch::kSigmoid);
    fc->bias.zero_();
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_bn1(stem_conv1(x)));
    x = torch::relu(stem_bn2(stem_conv2(x)));
    x = stem_bn3(stem_conv3(x));
    x = blocks->forward(x);
    x = torch::relu(tail_bn(tail_conv(x)));
    x = x.mean({2, 3});
    x = Dropout(x, dropout_, is_training());
    return fc(x);
  }

 private:
  double dropout_;
  torch::nn::Conv2d stem_conv1{nullptr}, stem_conv2{nullptr}, stem_conv3{nullptr},
      tail_conv{nullptr};
  torch::nn::BatchNorm2d stem_bn1{nullptr}, stem_bn2{nullptr}, stem_bn3{nullptr}, tail_bn{nullptr};
  torch::nn::Sequential blocks;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("MNASNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<MNASNetImpl>(o);
});

}  // namespace quartet::worker::models
