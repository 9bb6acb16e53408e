// DPN (catalog variants DPN68 and DPN131): LEMUR's "DPN" is a small plain residual net, not a
// dual-path network (shared/research/families.md section 3.8). LEMUR sources: DPN68.py and
// DPN131.py; the two are the same network (DPN131 keeps its blocks in a ModuleList instead of a
// Sequential), so both names build this one module.
//
// Layout: stem conv 3x3 s1 p1 +b (C->32), BN, ReLU; three residual blocks at 32 channels (conv 3x3
// p1 +b, BN, ReLU, conv 3x3 p1 +b, BN, add identity, ReLU); GAP; FC(32->classes). There is no
// downsampling: every map has the input's resolution.
// Params read: none (LEMUR's prm has only lr and momentum). Default PyTorch initialisation.
// Params at 3x32x32, 10 classes: 57,162.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr int64_t kDpnWidth = 32;
constexpr int kDpnBlocks = 3;

class DPNBlockImpl : public torch::nn::Module {
 public:
  explicit DPNBlockImpl(int64_t channels) {
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(channels));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1)));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(channels));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    return torch::relu(y + x);
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(DPNBlock);

class DPNImpl : public ClassifierImpl {
 public:
  explicit DPNImpl(const ModelOptions& o) {
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, kDpnWidth, 3).padding(1)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(kDpnWidth));
    for (int i = 0; i < kDpnBlocks; ++i) blocks->push_back(DPNBlock(kDpnWidth));
    register_module("blocks", blocks);
    fc = register_module("fc", torch::nn::Linear(kDpnWidth, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(bn1(conv1(x)));
    x = blocks->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc(x);
  }

 private:
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential blocks;
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("DPN68", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DPNImpl>(o);
});
QUARTET_REGISTER_MODEL("DPN131", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DPNImpl>(o);
});

}  // namespace quartet::worker::models
