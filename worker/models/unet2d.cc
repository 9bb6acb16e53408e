// UNet2D: LEMUR's UNet2D.py (shared/research/families.md section 3.26), an encoder-decoder without
// skip connections, normalisation or attention, used as a classifier.
//
// LEMUR builds each block from its type name: "Down..." is conv 3x3 s2 p1 +b, ReLU, conv 3x3 p1
// +b, ReLU; "Up..." is conv-transpose 2x2 s2 +b, ReLU, conv 3x3 p1 +b, ReLU; any other name
// (the "AttnDownBlock2D" and "AttnUpBlock2D" in the middle, which start with "Attn") is a single
// conv 3x3 p1 +b, ReLU, with no attention and no resampling. (families.md section 3.26 describes
// all six blocks as resampling; LEMUR's code and its 560,106 count say otherwise.)
// Layout: Down(C->32), Attn(32->64), Down(64->128), Up(128->128), Attn(128->64), Up(64->32),
// final conv 1x1 +b (32->128); spatial mean; Dropout(p); FC(128->classes). At 32 px the maps are
// 16, 16, 8, 16, 16, 32; the decoder output side is 4 ceil(H / 4), not always H, which the mean
// makes harmless.
// Init: Conv2d and ConvTranspose2d kaiming-normal (fan_out, ReLU) with zero bias; Linear
// xavier-uniform with zero bias.
// Params read: o.dropout (LEMUR prm "dropout").
// Omitted as inert: LEMUR's list of encoder features (collected, never used) and its constant
// timesteps argument (ignored).
// Params at 3x32x32, 10 classes: 560,106. Minimum input 1 px.
#include <iterator>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

enum class UNet2DBlock { kDown, kPlain, kUp };

constexpr int64_t kUNet2DWidths[] = {32, 64, 128, 128, 64, 32};
constexpr UNet2DBlock kUNet2DBlocks[] = {UNet2DBlock::kDown,  UNet2DBlock::kPlain,
                                         UNet2DBlock::kDown,  UNet2DBlock::kUp,
                                         UNet2DBlock::kPlain, UNet2DBlock::kUp};
constexpr int64_t kUNet2DOutChannels = 128;

torch::nn::Conv2d UNet2DConv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

class UNet2DImpl : public ClassifierImpl {
 public:
  explicit UNet2DImpl(const ModelOptions& o) : dropout_(o.dropout) {
    int64_t in = o.in_channels;
    for (size_t i = 0; i < std::size(kUNet2DWidths); ++i) {
      const int64_t width = kUNet2DWidths[i];
      switch (kUNet2DBlocks[i]) {
        case UNet2DBlock::kDown:
          body->push_back(UNet2DConv3x3(in, width, 2));
          break;
        case UNet2DBlock::kUp:
          body->push_back(torch::nn::ConvTranspose2d(
              torch::nn::ConvTranspose2dOptions(in, width, 2).stride(2)));
          break;
        case UNet2DBlock::kPlain:
          body->push_back(UNet2DConv3x3(in, width, 1));
          break;
      }
      body->push_back(torch::nn::ReLU());
      if (kUNet2DBlocks[i] != UNet2DBlock::kPlain) {
        body->push_back(UNet2DConv3x3(width, width, 1));
        body->push_back(torch::nn::ReLU());
      }
      in = width;
    }
    body->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, kUNet2DOutChannels, 1)));
    register_module("body", body);
    classifier =
        register_module("classifier", torch::nn::Linear(kUNet2DOutChannels, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        torch::nn::init::zeros_(conv->bias);
      } else if (auto* deconv = m->as<torch::nn::ConvTranspose2d>()) {
        torch::nn::init::kaiming_normal_(deconv->weight, 0.0, torch::kFanOut, torch::kReLU);
        torch::nn::init::zeros_(deconv->bias);
      }
    }
    torch::nn::init::xavier_uniform_(classifier->weight);
    torch::nn::init::zeros_(classifier->bias);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = body->forward(x).mean({2, 3});
    x = Dropout(x, dropout_, is_training());
    return classifier(x);
  }

 private:
  double dropout_;
  torch::nn::Sequential body;
  torch::nn::Linear classifier{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("UNet2D", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<UNet2DImpl>(o);
});

}  // namespace quartet::worker::models
