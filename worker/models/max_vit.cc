// MaxVit: torchvision MaxViT with the MaxViT-T channel layout and partition size 1, as LEMUR's
// MaxVit.py (shared/research/families.md section 3.18). Stem 64; blocks of 64, 128, 256, 512
// channels with 2, 2, 5, 2 layers, each block starting with a stride-2 layer; every layer is an
// MBConv, then window attention, then grid attention; head dim 32, MLP ratio 4, GELU.
// BatchNorm(eps 1e-3, momentum 0.01) in the convolutional parts, LayerNorm(eps 1e-5) in the
// attention layers. Params at 3x32x32, 10 classes: 30,384,520 (independent of the input size).
//
// Params read: dropout (o.dropout, the MLP dropout), attention_dropout (default 0.1, applied to the
// attention output), stochastic_depth_prob (default 0.1, the maximum of linspace(0, p, 11) over the
// 11 layers; a layer's MBConv and its two attention sub-blocks share its p).
//
// Partition size 1: LEMUR's window partition makes groups of 1 token and its grid partition, after
// the axis swap, also groups of 1 token, so every attention is over a single token. The softmax of
// a single logit is exactly 1, so the attention output is merge(v) token by token, where v is the
// third chunk of the fused QKV projection; the relative-position bias (one entry per head) and the
// q and k chunks cannot change the output and receive exactly zero gradient in LEMUR. This port
// builds all of them (LEMUR's parameter count) and computes only what the output depends on: the
// attention sub-block is x + SD(Dropout(merge(v(LN(x))))) on every token, in NHWC layout, with no
// partitioning. The logits equal LEMUR's; q, k and the bias table get no gradient (undefined rather
// than zero). For the same reason nothing depends on the input size, so the port runs at any size
// >= 1 and does not read o.input_size (LEMUR fixes the grid sizes at construction and only accepts
// that size).
//
// Initialisation as LEMUR: every conv and linear weight normal(0, 0.02) with zero bias; BatchNorm
// (1, 0); LayerNorm (1, 0); relative-position bias table trunc_normal(0, 0.02, [-2, 2]).
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

namespace F = torch::nn::functional;

NormOptions MaxVitBatchNorm() { return NormOptions{true, 1e-3, 0.01}; }

torch::nn::BatchNorm2d MaxVitBatchNorm2d(int64_t channels) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(1e-3).momentum(0.01));
}

// MBConv(in -> out, stride): shortcut [avgpool 3 s2 p1 when stride 2] + 1x1 conv (+b) when the
// shape changes, identity otherwise; main path BN, 1x1 conv-BN-GELU (in -> 4 out), depthwise 3x3
// conv-BN- GELU (stride), SE (SiLU, squeeze out / 4), 1x1 conv (+b) (4 out -> out); stochastic
// depth on the main path.
class MaxVitMBConvImpl : public torch::nn::Module {
 public:
  MaxVitMBConvImpl(int64_t in, int64_t out, int64_t stride, double p_stochastic)
      : stride_(stride), p_stochastic_(p_stochastic) {
    if (stride != 1 || in != out) {
      proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
    }
    const int64_t mid = out * 4;
    const int64_t squeeze = out / 4;
    pre_norm = register_module("pre_norm", MaxVitBatchNorm2d(in));
    ConvNormActOptions a;
    a.in = in;
    a.out = mid;
    a.kernel = 1;
    a.padding = 0;
    a.norm = MaxVitBatchNorm();
    a.act = Act::kGELU;
    conv_a = register_module("conv_a", ConvNormAct(a));
    ConvNormActOptions b = a;
    b.in = mid;
    b.kernel = 3;
    b.stride = stride;
    b.padding = 1;
    b.groups = mid;
    conv_b = register_module("conv_b", ConvNormAct(b));
    squeeze_excitation =
        register_module("squeeze_excitation", SqueezeExcitation(mid, squeeze, Act::kSiLU));
    conv_c = register_module("conv_c", torch::nn::Conv2d(torch::nn::Conv2dOptions(mid, out, 1)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor res = x;
    if (proj) {
      if (stride_ == 2) res = torch::avg_pool2d(res, 3, 2, 1);
      res = proj(res);
    }
    torch::Tensor y = conv_c(squeeze_excitation(conv_b(conv_a(pre_norm(x)))));
    return res + StochasticDepth(y, p_stochastic_, is_training());
  }

  torch::nn::Conv2d proj{nullptr};
  torch::nn::BatchNorm2d pre_norm{nullptr};
  ConvNormAct conv_a{nullptr}, conv_b{nullptr};
  SqueezeExcitation squeeze_excitation{nullptr};
  torch::nn::Conv2d conv_c{nullptr};

 private:
  int64_t stride_;
  double p_stochastic_;
};
TORCH_MODULE(MaxVitMBConv);

// LEMUR's RelativePositionalMultiHeadAttention at partition size 1 (see the file comment): computes
// merge(v) for every token of x (..., C).
class MaxVitAttentionImpl : public torch::nn::Module {
 public:
  MaxVitAttentionImpl(int64_t channels, int64_t head_dim) : channels_(channels) {
    const int64_t heads = channels / head_dim;
    relative_position_bias_table =
        register_parameter("relative_position_bias_table", torch::empty({1, heads}));
    TruncNormal_(relative_position_bias_table, 0.0, 0.02);
    to_qkv = register_module("to_qkv", torch::nn::Linear(channels, 3 * channels));
    merge = register_module("merge", torch::nn::Linear(channels, channels));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor w_v = to_qkv->weight.narrow(0, 2 * channels_, channels_);
    torch::Tensor b_v = to_qkv->bias.narrow(0, 2 * channels_, channels_);
    return merge(F::linear(x, w_v, b_v));
  }

  torch::Tensor relative_position_bias_table;
  torch::nn::Linear to_qkv{nullptr}, merge{nullptr};

 private:
  int64_t channels_;
};
TORCH_MODULE(MaxVitAttention);

// PartitionAttentionLayer (window or grid; identical at partition size 1) on NHWC x:
// x += SD(Dropout_att(attn(LN(x)))); x += SD(Dropout_mlp(FC(GELU(FC(LN(x)))))).
class MaxVitPartitionAttentionImpl : public torch::nn::Module {
 public:
  MaxVitPartitionAttentionImpl(int64_t channels, double attention_dropout, double mlp_dropout,
                               double p_stochastic)
      : attention_dropout_(attention_dropout),
        mlp_dropout_(mlp_dropout),
        p_stochastic_(p_stochastic) {
    attn_norm = register_module(
        "attn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({channels}).eps(1e-5)));
    attn = register_module("attn", MaxVitAttention(channels, 32));
    mlp_norm = register_module(
        "mlp_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({channels}).eps(1e-5)));
    mlp_fc1 = register_module("mlp_fc1", torch::nn::Linear(channels, 4 * channels));
    mlp_fc2 = register_module("mlp_fc2", torch::nn::Linear(4 * channels, channels));
  }

  torch::Tensor forward(torch::Tensor x) {
    const bool training = is_training();
    torch::Tensor a = Dropout(attn(attn_norm(x)), attention_dropout_, training);
    x = x + StochasticDepth(a, p_stochastic_, training);
    torch::Tensor m = mlp_fc2(torch::gelu(mlp_fc1(mlp_norm(x))));
    m = Dropout(m, mlp_dropout_, training);
    return x + StochasticDepth(m, p_stochastic_, training);
  }

  torch::nn::LayerNorm attn_norm{nullptr};
  MaxVitAttention attn{nullptr};
  torch::nn::LayerNorm mlp_norm{nullptr};
  torch::nn::Linear mlp_fc1{nullptr}, mlp_fc2{nullptr};

 private:
  double attention_dropout_, mlp_dropout_, p_stochastic_;
};
TORCH_MODULE(MaxVitPartitionAttention);

// MaxVitLayer: MBConv (NCHW), then window and grid attention (NHWC).
class MaxVitLayerImpl : public torch::nn::Module {
 public:
  MaxVitLayerImpl(int64_t in, int64_t out, int64_t stride, double attention_dropout,
                  double mlp_dropout, double p_stochastic) {
    mbconv = register_module("MBconv", MaxVitMBConv(in, out, stride, p_stochastic));
    window_attention = register_module(
        "window_attention",
        MaxVitPartitionAttention(out, attention_dropout, mlp_dropout, p_stochastic));
    grid_attention = register_module(
        "grid_attention",
        MaxVitPartitionAttention(out, attention_dropout, mlp_dropout, p_stochastic));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = mbconv(x).permute({0, 2, 3, 1}).contiguous();
    y = grid_attention(window_attention(y));
    return y.permute({0, 3, 1, 2}).contiguous();
  }

  MaxVitMBConv mbconv{nullptr};
  MaxVitPartitionAttention window_attention{nullptr}, grid_attention{nullptr};
};
TORCH_MODULE(MaxVitLayer);

class MaxVitImpl : public ClassifierImpl {
 public:
  explicit MaxVitImpl(const ModelOptions& o) {
    const double attention_dropout = o.Param("attention_dropout", 0.1);
    const double stochastic_depth_prob = o.Param("stochastic_depth_prob", 0.1);
    ConvNormActOptions s1;
    s1.in = o.in_channels;
    s1.out = 64;
    s1.kernel = 3;
    s1.stride = 2;
    s1.norm = MaxVitBatchNorm();
    s1.act = Act::kGELU;
    stem1 = register_module("stem1", ConvNormAct(s1));
    stem2 = register_module(
        "stem2", torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 64, 3).padding(1).bias(true)));

    const int64_t channels[] = {64, 128, 256, 512};
    const int layers_per_block[] = {2, 2, 5, 2};
    const int total_layers = 11;
    int64_t in = 64;
    int layer_index = 0;
    for (int block = 0; block < 4; ++block) {
      for (int i = 0; i < layers_per_block[block]; ++i) {
        // numpy.linspace(0, stochastic_depth_prob, 11)[layer_index].
        const double p = stochastic_depth_prob * layer_index / (total_layers - 1);
        layers->push_back(
            MaxVitLayer(in, channels[block], i == 0 ? 2 : 1, attention_dropout, o.dropout, p));
        in = channels[block];
        ++layer_index;
      }
    }
    register_module("layers", layers);
    head_norm = register_module("head_norm",
                                torch::nn::LayerNorm(torch::nn::LayerNormOptions({512}).eps(1e-5)));
    head_fc = register_module("head_fc", torch::nn::Linear(512, 512));
    head_out = register_module(
        "head_out", torch::nn::Linear(torch::nn::LinearOptions(512, o.num_classes).bias(false)));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::normal_(conv->weight, 0.0, 0.02);
        if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
      } else if (auto* linear = m->as<torch::nn::Linear>()) {
        torch::nn::init::normal_(linear->weight, 0.0, 0.02);
        if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = stem2(stem1(x));
    x = layers->forward(x);
    x = x.mean({2, 3});
    return head_out(torch::tanh(head_fc(head_norm(x))));
  }

 private:
  ConvNormAct stem1{nullptr};
  torch::nn::Conv2d stem2{nullptr};
  torch::nn::Sequential layers;
  torch::nn::LayerNorm head_norm{nullptr};
  torch::nn::Linear head_fc{nullptr}, head_out{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("MaxVit", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<MaxVitImpl>(o);
});

}  // namespace quartet::worker::models
