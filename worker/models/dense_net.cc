// DenseNet: torchvision's DenseNet-121 layout as LEMUR's DenseNet.py (shared/research/families.md
// section 3.10): growth 32, blocks (6, 12, 24, 16), 64 stem features, compression 0.5.
//
// Layout: conv 7x7 s2 p3 -b (C->64), BN, ReLU, maxpool 3 s2 p1; four dense blocks, each layer
// BN, ReLU, conv 1x1 -b (in->bn_size*32), BN, ReLU, conv 3x3 p1 -b (->32), dropout (training
// only), its output concatenated to the block's running features; transitions after blocks 1-3
// (BN, ReLU, conv 1x1 -b n->n/2, avgpool 2 s2); final BN, ReLU, GAP, FC(1024->classes).
// Init: conv kaiming-normal (fan_in, gain sqrt 2); BN weight 1, bias 0; Linear bias 0, weight
// PyTorch's default.
// Params read: "bn_size" (default 4, standard DenseNet-121) and o.dropout (LEMUR prm "dropout",
// the dense-layer drop rate).
// Departure from LEMUR: LEMUR sets bn_size to the batch size (in_shape[0]); Quartet makes it the
// "bn_size" param, so the width does not depend on the batch. LEMUR's reference count (3,870,346)
// was taken at batch 2, i.e. bn_size 2; bn_size 4 gives the standard 6,964,106.
// Minimum input 29 px (five halvings must leave a 1x1 map).
#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr int64_t kDenseNetGrowth = 32;
constexpr int64_t kDenseNetStemFeatures = 64;
constexpr int kDenseNetBlockLayers[] = {6, 12, 24, 16};

torch::nn::Conv2d DenseNetConv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                               int64_t padding = 0) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// One dense layer: maps the block's running features (N, in, H, W) to `growth` new channels.
class DenseNetLayerImpl : public torch::nn::Module {
 public:
  DenseNetLayerImpl(int64_t in, int64_t growth, int64_t bn_size, double drop_rate)
      : drop_rate_(drop_rate) {
    norm1 = register_module("norm1", torch::nn::BatchNorm2d(in));
    conv1 = register_module("conv1", DenseNetConv(in, bn_size * growth, 1));
    norm2 = register_module("norm2", torch::nn::BatchNorm2d(bn_size * growth));
    conv2 = register_module("conv2", DenseNetConv(bn_size * growth, growth, 3, 1, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = conv1(torch::relu(norm1(x)));
    y = conv2(torch::relu(norm2(y)));
    if (drop_rate_ > 0.0) {
      y = torch::nn::functional::dropout(
          y, torch::nn::functional::DropoutFuncOptions().p(drop_rate_).training(is_training()));
    }
    return y;
  }

  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};

 private:
  double drop_rate_;
};
TORCH_MODULE(DenseNetLayer);

// A dense block: every layer sees the concatenation of the block input and all earlier layers'
// outputs; the block returns that concatenation with the last layer's output appended.
class DenseNetBlockImpl : public torch::nn::Module {
 public:
  DenseNetBlockImpl(int num_layers, int64_t in, int64_t growth, int64_t bn_size, double drop_rate) {
    for (int i = 0; i < num_layers; ++i) {
      layers.push_back(register_module("denselayer" + std::to_string(i + 1),
                                       DenseNetLayer(in + i * growth, growth, bn_size, drop_rate)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    for (auto& layer : layers) x = torch::cat({x, layer(x)}, 1);
    return x;
  }

  std::vector<DenseNetLayer> layers;
};
TORCH_MODULE(DenseNetBlock);

class DenseNetTransitionImpl : public torch::nn::Module {
 public:
  DenseNetTransitionImpl(int64_t in, int64_t out) {
    norm = register_module("norm", torch::nn::BatchNorm2d(in));
    conv = register_module("conv", DenseNetConv(in, out, 1));
  }

  torch::Tensor forward(torch::Tensor x) {
    return torch::avg_pool2d(conv(torch::relu(norm(x))), 2, 2);
  }

  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(DenseNetTransition);

class DenseNetImpl : public ClassifierImpl {
 public:
  explicit DenseNetImpl(const ModelOptions& o) {
    const int64_t bn_size = std::llround(o.Param("bn_size", 4));
    conv0 = register_module("conv0", DenseNetConv(o.in_channels, kDenseNetStemFeatures, 7, 2, 3));
    norm0 = register_module("norm0", torch::nn::BatchNorm2d(kDenseNetStemFeatures));
    int64_t features = kDenseNetStemFeatures;
    const int num_blocks = static_cast<int>(std::size(kDenseNetBlockLayers));
    for (int i = 0; i < num_blocks; ++i) {
      stages->push_back(
          DenseNetBlock(kDenseNetBlockLayers[i], features, kDenseNetGrowth, bn_size, o.dropout));
      features += kDenseNetBlockLayers[i] * kDenseNetGrowth;
      if (i + 1 < num_blocks) {
        stages->push_back(DenseNetTransition(features, features / 2));
        features /= 2;
      }
    }
    register_module("stages", stages);
    norm5 = register_module("norm5", torch::nn::BatchNorm2d(features));
    classifier = register_module("classifier", torch::nn::Linear(features, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      }
    }
    torch::nn::init::zeros_(classifier->bias);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(norm0(conv0(x)));
    x = torch::max_pool2d(x, 3, 2, 1);
    x = stages->forward(x);
    x = torch::relu(norm5(x));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return classifier(x);
  }

 private:
  torch::nn::Conv2d conv0{nullptr};
  torch::nn::BatchNorm2d norm0{nullptr}, norm5{nullptr};
  torch::nn::Sequential stages;
  torch::nn::Linear classifier{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("DenseNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DenseNetImpl>(o);
});

}  // namespace quartet::worker::models
