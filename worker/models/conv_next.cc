// ConvNeXt: torchvision ConvNeXt-Small layout (dims 96/192/384/768, depths 3/3/27/3), as LEMUR's
// ConvNeXt.py (shared/research/families.md section 3.7). Params at 3x32x32, 10 classes: 49,462,378.
//
// Params read (LEMUR prm names, defaults of reference-params.md's measurement; LEMUR itself has no
// defaults and draws all three from U[0, 1]):
//   stochastic_depth_prob  0.1   maximum stochastic-depth probability; block k of 36 uses p * k /
//   35 norm_eps               1e-5  eps of every LayerNorm2d (stem, downsamplers, head); the
//   LayerNorm
//                                inside each block keeps eps 1e-6
//   norm_std               0.02  std of the truncated-normal init (absolute bounds +-2) of every
//                                Conv2d and Linear weight; biases zero
// No classifier dropout. Minimum input 32 px (total stride 32; the last downsampler needs a 2x2
// map). No departure from LEMUR.
#include <cstdint>
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// CNBlock: depthwise 7x7 (+b), channels-last LayerNorm(eps 1e-6), Linear dim->4dim, GELU,
// Linear 4dim->dim, per-channel layer scale (init 1e-6), stochastic depth, residual add.
class ConvNeXtBlockImpl : public torch::nn::Module {
 public:
  ConvNeXtBlockImpl(int64_t dim, double sd_prob) : sd_prob_(sd_prob) {
    dwconv = register_module(
        "dwconv", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim)));
    norm =
        register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
    fc1 = register_module("fc1", torch::nn::Linear(dim, 4 * dim));
    fc2 = register_module("fc2", torch::nn::Linear(4 * dim, dim));
    layer_scale = register_parameter("layer_scale", torch::full({dim, 1, 1}, 1e-6));
  }

  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor y = dwconv(x).permute({0, 2, 3, 1});
    y = fc2(torch::gelu(fc1(norm(y)))).permute({0, 3, 1, 2});
    y = StochasticDepth(layer_scale * y, sd_prob_, is_training());
    return y + x;
  }

  torch::nn::Conv2d dwconv{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::Tensor layer_scale;

 private:
  double sd_prob_;
};
TORCH_MODULE(ConvNeXtBlock);

// Between stages: LayerNorm2d(norm_eps), then conv 2x2 s2 (+b) doubling the channels.
class ConvNeXtDownsampleImpl : public torch::nn::Module {
 public:
  ConvNeXtDownsampleImpl(int64_t in, int64_t out, double eps) {
    norm = register_module("norm", LayerNorm2d(in, eps));
    conv =
        register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 2).stride(2)));
  }

  torch::Tensor forward(torch::Tensor x) { return conv(norm(x)); }

  LayerNorm2d norm{nullptr};
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(ConvNeXtDownsample);

class ConvNeXtImpl : public ClassifierImpl {
 public:
  explicit ConvNeXtImpl(const ModelOptions& o) {
    const double sd_max = o.Param("stochastic_depth_prob", 0.1);
    const double eps = o.Param("norm_eps", 1e-5);
    const double init_std = o.Param("norm_std", 0.02);
    const int64_t dims[] = {96, 192, 384, 768};
    const int depths[] = {3, 3, 27, 3};
    const int total_blocks = 36;

    stem_conv = register_module(
        "stem_conv",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, dims[0], 4).stride(4)));
    stem_norm = register_module("stem_norm", LayerNorm2d(dims[0], eps));
    int block_id = 0;
    for (int stage = 0; stage < 4; ++stage) {
      for (int i = 0; i < depths[stage]; ++i) {
        const double p = sd_max * block_id / (total_blocks - 1.0);
        features->push_back(ConvNeXtBlock(dims[stage], p));
        ++block_id;
      }
      if (stage < 3) features->push_back(ConvNeXtDownsample(dims[stage], dims[stage + 1], eps));
    }
    register_module("features", features);
    head_norm = register_module("head_norm", LayerNorm2d(dims[3], eps));
    fc = register_module("fc", torch::nn::Linear(dims[3], o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      torch::Tensor w, b;
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        w = conv->weight;
        b = conv->bias;
      } else if (auto* lin = m->as<torch::nn::Linear>()) {
        w = lin->weight;
        b = lin->bias;
      } else {
        continue;
      }
      TruncNormal_(w, 0.0, init_std);
      if (b.defined()) b.zero_();
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = stem_norm(stem_conv(x));
    x = features->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1});
    return fc(head_norm(x).flatten(1));
  }

 private:
  torch::nn::Conv2d stem_conv{nullptr};
  LayerNorm2d stem_norm{nullptr};
  torch::nn::Sequential features;
  LayerNorm2d head_norm{nullptr};
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("ConvNeXt", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<ConvNeXtImpl>(o);
});

}  // namespace quartet::worker::models
