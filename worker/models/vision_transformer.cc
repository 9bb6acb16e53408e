// VisionTransformer: torchvision ViT-B encoder with a patch size chosen from the input size, as
// LEMUR's VisionTransformer.py (shared/research/families.md section 3.28). Patch embedding conv
// p x p stride p (+b) -> 768, a learnable class token, learnable position embeddings for the
// (H/p)^2 + 1 tokens, 12 pre-norm encoder blocks (12-head self-attention, MLP 3072, LayerNorm eps
// 1e-6), final LayerNorm, FC on the class token. Built for one input size (o.input_size): the patch
// size and the position embeddings follow it, and an input whose patch grid differs fails in
// forward. Params at 3x32x32, 10 classes (patch 16, 5 tokens): 85,658,890; 87,428,362 at 64 px;
// 94,506,250 at 128 px.
//
// Params read: dropout (o.dropout: after the position embeddings, after the attention, in the MLP),
// attention_dropout (default 0.1, on the attention weights), patch_size (default 0.5, a fraction of
// the input size: the patch is the divisor of the size closest to floor(size * patch_size), ties to
// the larger one, as LEMUR's get_closest_split).
//
// Initialisation as LEMUR: patch conv trunc_normal(0, sqrt(1 / fan_in), [-2, 2]) with zero bias;
// class token zeros; position embeddings normal(0, 0.02); MLP weights xavier-uniform with biases
// normal(0, 1e-6); attention as PyTorch's MultiheadAttention (xavier-uniform in-projection, zero
// biases, default out-projection weight); LayerNorm (1, 0). The attention's forward is written out
// on the MultiheadAttention module's parameters (the same computation, checked equal to PyTorch's)
// so that its dropout draws through blocks.h's Dropout.
//
// Departures:
// - Head init: LEMUR zero-initialises the head weight and bias, which makes the first backward pass
//   give exactly zero gradient to every layer before the head (the zoo contract requires gradient
//   at the first layer). The head weight here is normal(0, 1e-6) and its bias zero: the logits
//   start of order 1e-5, as near LEMUR's zeros as makes no difference to training, and the gradient
//   reaches the whole network from the first step.
// - patch_size >= 1 makes LEMUR's get_closest_split find no divisor and crash; here it gives one
//   patch covering the whole image.
// - Degenerate sizes: at a prime side (17, 23, 29, ...) LEMUR's rule falls back to 1-pixel patches,
//   i.e. H^2 tokens (842 at 29 px: minutes per step on a CPU). When the rule would give a patch
//   grid wider than max(16, 2 / patch_size), the input is resized (bilinear) to the next larger
//   side whose grid is not (29 -> 30: patch 15, 4 patches). Every side LEMUR itself used (32, 64,
//   128, 256, 299, 512) is unaffected, and so is the parameter count at 32 px.
#include <algorithm>
#include <cmath>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// LEMUR's get_closest_split(size, int(size * fraction)).
int64_t VisionTransformerPatchSize(int64_t size, double fraction) {
  const int64_t close_to = static_cast<int64_t>(static_cast<double>(size) * fraction);
  int64_t previous = 0;
  for (int64_t d = 1; d <= size; ++d) {
    if (size % d != 0) continue;
    if (close_to < d) {
      if (previous == 0) return d;
      return (d - close_to) > (close_to - previous) ? previous : d;
    }
    previous = d;
  }
  return size;
}

// The side the encoder runs at: `size` unless LEMUR's rule degenerates there (see the header).
int64_t VisionTransformerWorkingSize(int64_t size, double fraction) {
  const double max_grid = std::max(16.0, 2.0 / std::max(fraction, 1e-9));
  for (int64_t s = size; s <= 2 * size + 16; ++s) {
    if (s / VisionTransformerPatchSize(s, fraction) <= max_grid) return s;
  }
  return size;
}

// Encoder block on sequence-first tokens (L, N, E): x += Dropout(MHA(LN(x))); x += MLP(LN(x)).
class VisionTransformerBlockImpl : public torch::nn::Module {
 public:
  VisionTransformerBlockImpl(int64_t hidden, int64_t heads, int64_t mlp_dim, double dropout,
                             double attention_dropout)
      : heads_(heads), dropout_(dropout), attention_dropout_(attention_dropout) {
    ln_1 = register_module("ln_1",
                           torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(1e-6)));
    self_attention = register_module(
        "self_attention",
        torch::nn::MultiheadAttention(
            torch::nn::MultiheadAttentionOptions(hidden, heads).dropout(attention_dropout)));
    ln_2 = register_module("ln_2",
                           torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(1e-6)));
    mlp = register_module("mlp", Mlp(hidden, mlp_dim, hidden, dropout, Act::kGELU));
    torch::NoGradGuard no_grad;
    for (torch::nn::Linear linear : {mlp->fc1, mlp->fc2}) {
      torch::nn::init::xavier_uniform_(linear->weight);
      torch::nn::init::normal_(linear->bias, 0.0, 1e-6);
    }
  }

  torch::Tensor forward(const torch::Tensor& input) {
    torch::Tensor y = ln_1(input);
    torch::Tensor x = input + Dropout(SelfAttention(y), dropout_, is_training());
    return x + mlp(ln_2(x));
  }

  // MultiheadAttention::forward(x, x, x) without masks, written out on the module's parameters so
  // that the attention dropout draws through Dropout (see ScopedGenerator in blocks.h).
  torch::Tensor SelfAttention(const torch::Tensor& x) {  // (L, N, E)
    const int64_t length = x.size(0), batch = x.size(1), embed = x.size(2);
    const int64_t head_dim = embed / heads_;
    std::vector<torch::Tensor> qkv =
        torch::nn::functional::linear(x, self_attention->in_proj_weight,
                                      self_attention->in_proj_bias)
            .chunk(3, -1);
    auto split_heads = [&](const torch::Tensor& t) {  // (L, N, E) -> (N * heads, L, head_dim)
      return t.contiguous().view({length, batch * heads_, head_dim}).transpose(0, 1);
    };
    torch::Tensor q = split_heads(qkv[0] * (1.0 / std::sqrt(static_cast<double>(head_dim))));
    torch::Tensor attention =
        torch::softmax(torch::bmm(q, split_heads(qkv[1]).transpose(1, 2)), -1);
    attention = Dropout(attention, attention_dropout_, is_training());
    torch::Tensor out = torch::bmm(attention, split_heads(qkv[2]))
                            .transpose(0, 1)
                            .contiguous()
                            .view({length, batch, embed});
    return self_attention->out_proj(out);
  }

  torch::nn::LayerNorm ln_1{nullptr};
  torch::nn::MultiheadAttention self_attention{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  Mlp mlp{nullptr};

 private:
  int64_t heads_;
  double dropout_, attention_dropout_;
};
TORCH_MODULE(VisionTransformerBlock);

// Class token, position embeddings and the encoder blocks.
class VisionTransformerEncoderImpl : public torch::nn::Module {
 public:
  VisionTransformerEncoderImpl(int64_t tokens, int64_t hidden, double dropout,
                               double attention_dropout)
      : dropout_(dropout) {
    class_token = register_parameter("class_token", torch::zeros({1, 1, hidden}));
    pos_embedding = register_parameter("pos_embedding", torch::empty({1, tokens + 1, hidden}));
    {
      torch::NoGradGuard no_grad;
      pos_embedding.normal_(0.0, 0.02);
    }
    for (int i = 0; i < 12; ++i) {
      layers->push_back(VisionTransformerBlock(hidden, 12, 3072, dropout, attention_dropout));
    }
    register_module("layers", layers);
    ln = register_module("ln",
                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(1e-6)));
  }

  // patches (N, L, E) -> normalised class-token features (N, E).
  torch::Tensor forward(const torch::Tensor& patches) {
    const int64_t n = patches.size(0);
    torch::Tensor x = torch::cat({class_token.expand({n, -1, -1}), patches}, 1) + pos_embedding;
    x = Dropout(x, dropout_, is_training()).transpose(0, 1);
    x = layers->forward(x);
    return ln(x[0]);
  }

  torch::Tensor class_token, pos_embedding;
  torch::nn::Sequential layers;
  torch::nn::LayerNorm ln{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(VisionTransformerEncoder);

class VisionTransformerImpl : public ClassifierImpl {
 public:
  explicit VisionTransformerImpl(const ModelOptions& o) {
    constexpr int64_t kHidden = 768;
    const double fraction = o.Param("patch_size", 0.5);
    size_ = VisionTransformerWorkingSize(o.input_size, fraction);
    patch_ = VisionTransformerPatchSize(size_, fraction);
    const int64_t grid = size_ / patch_;
    conv_proj = register_module(
        "conv_proj",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, kHidden, patch_).stride(patch_)));
    encoder =
        register_module("encoder", VisionTransformerEncoder(grid * grid, kHidden, o.dropout,
                                                            o.Param("attention_dropout", 0.1)));
    head = register_module("head", torch::nn::Linear(kHidden, o.num_classes));

    torch::NoGradGuard no_grad;
    const double fan_in = static_cast<double>(o.in_channels * patch_ * patch_);
    TruncNormal_(conv_proj->weight, 0.0, std::sqrt(1.0 / fan_in));
    torch::nn::init::zeros_(conv_proj->bias);
    torch::nn::init::normal_(head->weight, 0.0, 1e-6);
    torch::nn::init::zeros_(head->bias);
  }

  torch::Tensor forward(torch::Tensor x) override {
    if (x.size(2) != size_ || x.size(3) != size_) {
      x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{size_, size_})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(false));
    }
    x = conv_proj(x).flatten(2).transpose(1, 2);
    return head(encoder(x));
  }

 private:
  int64_t size_;
  int64_t patch_;
  torch::nn::Conv2d conv_proj{nullptr};
  VisionTransformerEncoder encoder{nullptr};
  torch::nn::Linear head{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("VisionTransformer", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<VisionTransformerImpl>(o);
});

}  // namespace quartet::worker::models
