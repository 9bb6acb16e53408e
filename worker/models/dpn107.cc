// DPN107: LEMUR's DPN107.py (shared/research/families.md section 3.8), the DPN68 skeleton with
// every conv bias-free and the two convs of each residual block grouped by 4. Not a dual-path
// network.
//
// Layout: stem conv 3x3 s1 p1 -b (C->32, not grouped), BN, ReLU; three residual blocks at 32
// channels (conv 3x3 p1 -b g4, BN, ReLU, conv 3x3 p1 -b g4, BN, add identity, ReLU); GAP;
// FC(32->classes). No downsampling. LEMUR's learn() casts the input to float32; our inputs are
// float already.
// Params read: none (LEMUR's prm has only lr and momentum). Default PyTorch initialisation.
// Params at 3x32x32, 10 classes: 15,466.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr int64_t kDpn107Width = 32;
constexpr int64_t kDpn107Groups = 4;
constexpr int kDpn107Blocks = 3;

torch::nn::Conv2dOptions DPN107GroupedConv(int64_t channels) {
  return torch::nn::Conv2dOptions(channels, channels, 3)
      .padding(1)
      .groups(kDpn107Groups)
      .bias(false);
}

class DPN107BlockImpl : public torch::nn::Module {
 public:
  explicit DPN107BlockImpl(int64_t channels) {
    conv1 = register_module("conv1", torch::nn::Conv2d(DPN107GroupedConv(channels)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(channels));
    conv2 = register_module("conv2", torch::nn::Conv2d(DPN107GroupedConv(channels)));
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
TORCH_MODULE(DPN107Block);

class DPN107Impl : public ClassifierImpl {
 public:
  explicit DPN107Impl(const ModelOptions& o) {
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(
            torch::nn::Conv2dOptions(o.in_channels, kDpn107Width, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(kDpn107Width));
    for (int i = 0; i < kDpn107Blocks; ++i) blocks->push_back(DPN107Block(kDpn107Width));
    register_module("blocks", blocks);
    fc = register_module("fc", torch::nn::Linear(kDpn107Width, o.num_classes));
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

QUARTET_REGISTER_MODEL("DPN107", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DPN107Impl>(o);
});

}  // namespace quartet::worker::models
