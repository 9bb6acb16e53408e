// ICNet: LEMUR's ICNet.py (shared/research/families.md section 3.15), a classifier built from
// ICNet's pieces, not a segmentation net.
//
// Layout: init block of three conv 3x3 s2 p1 +b (C->32->32->64), each followed by ReLU (no BN);
// PSP block on 64 channels: four branches adaptive-avgpool to 1, 2, 3, 6 then conv 1x1 -b
// (64->16), each upsampled bilinearly (align_corners false) back to the map, concatenated with the
// input (128 channels), conv 1x1 -b (128->64), ReLU; head conv 1x1 +b (64->128) without
// activation; GAP; FC(128->classes). Default PyTorch initialisation.
// Params read: none (LEMUR's prm has only lr and momentum).
// Params at 3x32x32, 10 classes: 50,538. Minimum input 1 px.
#include <iterator>
#include <string>
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kICNetPoolSizes[] = {1, 2, 3, 6};

torch::nn::Conv2d ICNetStridedConv(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(2).padding(1));
}

torch::nn::Conv2d ICNetPointwiseConv(int64_t in, int64_t out, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(bias));
}

class ICNetPSPBlockImpl : public torch::nn::Module {
 public:
  explicit ICNetPSPBlockImpl(int64_t channels) {
    const int64_t branches = static_cast<int64_t>(std::size(kICNetPoolSizes));
    const int64_t branch_channels = channels / branches;
    for (int64_t i = 0; i < branches; ++i) {
      stages.push_back(register_module("stage" + std::to_string(i + 1),
                                       ICNetPointwiseConv(channels, branch_channels, false)));
    }
    bottleneck = register_module(
        "bottleneck", ICNetPointwiseConv(channels + branch_channels * branches, channels, false));
  }

  torch::Tensor forward(torch::Tensor x) {
    const std::vector<int64_t> size = {x.size(2), x.size(3)};
    std::vector<torch::Tensor> parts = {x};
    for (size_t i = 0; i < stages.size(); ++i) {
      torch::Tensor y =
          stages[i](torch::adaptive_avg_pool2d(x, {kICNetPoolSizes[i], kICNetPoolSizes[i]}));
      parts.push_back(F::interpolate(
          y, F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false)));
    }
    return torch::relu(bottleneck(torch::cat(parts, 1)));
  }

  std::vector<torch::nn::Conv2d> stages;
  torch::nn::Conv2d bottleneck{nullptr};
};
TORCH_MODULE(ICNetPSPBlock);

class ICNetImpl : public ClassifierImpl {
 public:
  explicit ICNetImpl(const ModelOptions& o) {
    conv1 = register_module("conv1", ICNetStridedConv(o.in_channels, 32));
    conv2 = register_module("conv2", ICNetStridedConv(32, 32));
    conv3 = register_module("conv3", ICNetStridedConv(32, 64));
    psp = register_module("psp", ICNetPSPBlock(64));
    head = register_module("head", ICNetPointwiseConv(64, 128, true));
    classifier = register_module("classifier", torch::nn::Linear(128, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(conv1(x));
    x = torch::relu(conv2(x));
    x = torch::relu(conv3(x));
    x = head(psp(x));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return classifier(x);
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  ICNetPSPBlock psp{nullptr};
  torch::nn::Conv2d head{nullptr};
  torch::nn::Linear classifier{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("ICNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<ICNetImpl>(o);
});

}  // namespace quartet::worker::models
