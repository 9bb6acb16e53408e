// SqueezeNet: torchvision SqueezeNet 1.0 (variant 1, LEMUR SqueezeNet-1.py) and 1.1 (variant 2,
// LEMUR SqueezeNet-2.py); shared/research/families.md section 3.24. The two files differ only in
// the version string.
//
// Fire(in, s, e1, e3): squeeze conv 1x1 +b (in->s), ReLU; expand conv 1x1 +b (s->e1), ReLU and
// expand conv 3x3 p1 +b (s->e3), ReLU, concatenated.
// v1.0: conv 7x7 s2 +b (C->96), ReLU, maxpool 3 s2 ceil, Fire x3, maxpool, Fire x4, maxpool, Fire.
// v1.1: conv 3x3 s2 +b (C->64), ReLU, maxpool 3 s2 ceil, Fire x2, maxpool, Fire x2, maxpool,
// Fire x4. All max-pools use ceil_mode.
// Classifier: Dropout(p), conv 1x1 +b (512->classes), ReLU (so the logits are non-negative, as
// LEMUR), GAP, flatten.
// Init: final conv normal(0, 0.01); every other conv kaiming-uniform (fan_in, gain sqrt 2); all
// biases 0.
// Params read: o.dropout (LEMUR prm "dropout").
// Params at 3x32x32, 10 classes: 740,554 (v1.0), 727,626 (v1.1). Minimum input 21 px (v1.0), 17
// px (v1.1).
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

class SqueezeNetFireImpl : public torch::nn::Module {
 public:
  SqueezeNetFireImpl(int64_t in, int64_t squeeze_planes, int64_t expand1x1_planes,
                     int64_t expand3x3_planes) {
    squeeze = register_module("squeeze",
                              torch::nn::Conv2d(torch::nn::Conv2dOptions(in, squeeze_planes, 1)));
    expand1x1 = register_module("expand1x1", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                 squeeze_planes, expand1x1_planes, 1)));
    expand3x3 = register_module(
        "expand3x3", torch::nn::Conv2d(
                         torch::nn::Conv2dOptions(squeeze_planes, expand3x3_planes, 3).padding(1)));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(squeeze(x));
    return torch::cat({torch::relu(expand1x1(x)), torch::relu(expand3x3(x))}, 1);
  }

  torch::nn::Conv2d squeeze{nullptr}, expand1x1{nullptr}, expand3x3{nullptr};
};
TORCH_MODULE(SqueezeNetFire);

// maxpool 3 s2 with ceil_mode, as a Sequential element.
torch::nn::MaxPool2d SqueezeNetPool() {
  return torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).ceil_mode(true));
}

class SqueezeNetImpl : public ClassifierImpl {
 public:
  // `version` 1 is SqueezeNet 1.0, 2 is SqueezeNet 1.1.
  SqueezeNetImpl(const ModelOptions& o, int version) : dropout_(o.dropout) {
    if (version == 1) {
      features->push_back(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, 96, 7).stride(2)));
      features->push_back(torch::nn::ReLU());
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(96, 16, 64, 64));
      features->push_back(SqueezeNetFire(128, 16, 64, 64));
      features->push_back(SqueezeNetFire(128, 32, 128, 128));
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(256, 32, 128, 128));
      features->push_back(SqueezeNetFire(256, 48, 192, 192));
      features->push_back(SqueezeNetFire(384, 48, 192, 192));
      features->push_back(SqueezeNetFire(384, 64, 256, 256));
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(512, 64, 256, 256));
    } else {
      features->push_back(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, 64, 3).stride(2)));
      features->push_back(torch::nn::ReLU());
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(64, 16, 64, 64));
      features->push_back(SqueezeNetFire(128, 16, 64, 64));
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(128, 32, 128, 128));
      features->push_back(SqueezeNetFire(256, 32, 128, 128));
      features->push_back(SqueezeNetPool());
      features->push_back(SqueezeNetFire(256, 48, 192, 192));
      features->push_back(SqueezeNetFire(384, 48, 192, 192));
      features->push_back(SqueezeNetFire(384, 64, 256, 256));
      features->push_back(SqueezeNetFire(512, 64, 256, 256));
    }
    register_module("features", features);
    final_conv = register_module(
        "final_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(512, o.num_classes, 1)));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      auto* conv = m->as<torch::nn::Conv2d>();
      if (conv == nullptr) continue;
      if (conv == final_conv.get()) {
        torch::nn::init::normal_(conv->weight, 0.0, 0.01);
      } else {
        torch::nn::init::kaiming_uniform_(conv->weight);
      }
      torch::nn::init::zeros_(conv->bias);
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features->forward(x);
    x = Dropout(x, dropout_, is_training());
    x = torch::relu(final_conv(x));
    return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  }

 private:
  double dropout_;
  torch::nn::Sequential features;
  torch::nn::Conv2d final_conv{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("SqueezeNet-1", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<SqueezeNetImpl>(o, 1);
});
QUARTET_REGISTER_MODEL("SqueezeNet-2", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<SqueezeNetImpl>(o, 2);
});

}  // namespace quartet::worker::models
