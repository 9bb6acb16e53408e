// VGG: torchvision VGG-11 (configuration "A") without batch norm, as LEMUR's VGG.py
// (shared/research/families.md section 3.27).
//
// Layout: conv 3x3 p1 +b each followed by ReLU, maxpool 2x2 s2 after each group:
// 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M; adaptive avgpool to 7x7 (at 32 px the 1x1
// map is replicated 49 times, as LEMUR); classifier FC 25088->4096, ReLU, Dropout, FC 4096->4096,
// ReLU, Dropout, FC 4096->classes.
// Init: conv kaiming-normal (fan_out, ReLU) with zero bias; Linear normal(0, 0.01) with zero bias.
// Params read: o.dropout (LEMUR prm "dropout").
// Params at 3x32x32, 10 classes: 128,807,306. Minimum input 32 px (five pools).
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// Channel counts of configuration "A"; 0 is a max-pool.
constexpr int64_t kVggConfigA[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
constexpr int64_t kVggPoolSide = 7;
constexpr int64_t kVggHidden = 4096;

class VGGImpl : public ClassifierImpl {
 public:
  explicit VGGImpl(const ModelOptions& o) : dropout_(o.dropout) {
    int64_t in = o.in_channels;
    for (int64_t v : kVggConfigA) {
      if (v == 0) {
        features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
        continue;
      }
      features->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, v, 3).padding(1)));
      features->push_back(torch::nn::ReLU());
      in = v;
    }
    register_module("features", features);
    fc1 = register_module("fc1", torch::nn::Linear(in * kVggPoolSide * kVggPoolSide, kVggHidden));
    fc2 = register_module("fc2", torch::nn::Linear(kVggHidden, kVggHidden));
    fc3 = register_module("fc3", torch::nn::Linear(kVggHidden, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        torch::nn::init::zeros_(conv->bias);
      } else if (auto* fc = m->as<torch::nn::Linear>()) {
        torch::nn::init::normal_(fc->weight, 0.0, 0.01);
        torch::nn::init::zeros_(fc->bias);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features->forward(x);
    x = torch::adaptive_avg_pool2d(x, {kVggPoolSide, kVggPoolSide}).flatten(1);
    x = Dropout(torch::relu(fc1(x)), dropout_, is_training());
    x = Dropout(torch::relu(fc2(x)), dropout_, is_training());
    return fc3(x);
  }

 private:
  double dropout_;
  torch::nn::Sequential features;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("VGG", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<VGGImpl>(o);
});

}  // namespace quartet::worker::models
