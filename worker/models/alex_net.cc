// AlexNet: LEMUR's AlexNet.py, torchvision's AlexNet layout (shared/research/families.md section
// 3.3). Features: conv 11x11 s4 p2 C->64, ReLU, max-pool 3 s2; conv 5x5 p2 64->192, ReLU, max-pool
// 3 s2; conv 3x3 p1 192->384, ReLU; conv 3x3 p1 384->256, ReLU; conv 3x3 p1 256->256, ReLU,
// max-pool 3 s2. Adaptive average pool to 6x6, then Dropout, FC 9216->4096, ReLU, Dropout, FC
// 4096->4096, ReLU, FC 4096->classes.
//
// Needs >= 63 px (at 63: 15 -> 7 -> 7 -> 3 -> 3 -> 1). Params at 3x64x64, 10 classes: 57,044,810.
// Reads ModelOptions::dropout (LEMUR prm "dropout", default 0.2). PyTorch default initialisation.
// No departures.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

class AlexNetImpl : public ClassifierImpl {
 public:
  explicit AlexNetImpl(const ModelOptions& o) : dropout_(o.dropout) {
    using torch::nn::Conv2d;
    using torch::nn::Conv2dOptions;
    conv1 =
        register_module("conv1", Conv2d(Conv2dOptions(o.in_channels, 64, 11).stride(4).padding(2)));
    conv2 = register_module("conv2", Conv2d(Conv2dOptions(64, 192, 5).padding(2)));
    conv3 = register_module("conv3", Conv2d(Conv2dOptions(192, 384, 3).padding(1)));
    conv4 = register_module("conv4", Conv2d(Conv2dOptions(384, 256, 3).padding(1)));
    conv5 = register_module("conv5", Conv2d(Conv2dOptions(256, 256, 3).padding(1)));
    fc1 = register_module("fc1", torch::nn::Linear(256 * 6 * 6, 4096));
    fc2 = register_module("fc2", torch::nn::Linear(4096, 4096));
    fc3 = register_module("fc3", torch::nn::Linear(4096, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1(x)), 3, 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 3, 2);
    x = torch::relu(conv3(x));
    x = torch::relu(conv4(x));
    x = torch::max_pool2d(torch::relu(conv5(x)), 3, 2);
    x = torch::adaptive_avg_pool2d(x, {6, 6}).flatten(1);
    x = Dropout(x, dropout_, is_training());
    x = torch::relu(fc1(x));
    x = Dropout(x, dropout_, is_training());
    x = torch::relu(fc2(x));
    return fc3(x);
  }

 private:
  double dropout_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4{nullptr}, conv5{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("AlexNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<AlexNetImpl>(o);
});

}  // namespace quartet::worker::models
