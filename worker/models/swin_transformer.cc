// SwinTransformer: torchvision Swin-T (v1), as LEMUR's SwinTransformer.py
// (shared/research/families.md section 3.25). Patch embedding conv 4x4 s4 (+b) -> 96 channels and
// LayerNorm; four stages of 2, 2, 6, 2 blocks at 96, 192, 384, 768 channels with 3, 6, 12, 24
// heads, v1 PatchMerging between stages; 7x7 windows with a 13x13 relative-position bias table per
// block; odd blocks shift their windows by (3, 3). The trunk works in NHWC. Params at 3x32x32, 10
// classes: 27,527,044 (independent of the input size). Minimum input 4 px (one token after the
// patch embedding).
//
// Params read: dropout (o.dropout: the attention projection's and the MLP's dropout),
// attention_dropout (default 0.1, on the attention weights), stochastic_depth_prob (default 0.1;
// block k of 12 uses stochastic_depth_prob * k / 11).
//
// Any input size works, as in torchvision: each block zero-pads the normalised map at the bottom
// and right to a multiple of 7 (the padded tokens are not masked), drops the shift in a dimension
// the window covers entirely, and crops the padding after the attention; PatchMerging zero-pads odd
// sizes. All windows of a batch are one batched matmul.
//
// Initialisation as LEMUR: every Linear weight trunc_normal(0, 0.02, [-2, 2]) with zero bias (this
// overrides the MLP's xavier init, which torchvision runs first); bias tables trunc_normal(0, 0.02,
// [-2, 2]); the patch conv keeps PyTorch's default init; LayerNorm (1, 0).
#include <cmath>
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kSwinWindow = 7;

torch::nn::LayerNorm SwinLayerNorm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5));
}

// Region ids of the shifted-window mask along one padded axis of length `padded` shifted by `shift`
// (> 0): 0 before the last window, 1 in the last window up to the shift, 2 in the last `shift`
// positions; torchvision's slices (0, -w), (-w, -s), (-s, None). A dimension that is not shifted
// is one region.
torch::Tensor SwinMaskRegions(int64_t padded, int64_t shift, const torch::TensorOptions& options) {
  torch::Tensor pos = torch::arange(padded, options);
  if (shift == 0) return torch::full({padded}, 2, options);
  return (pos >= padded - kSwinWindow).to(options.dtype()) +
         (pos >= padded - shift).to(options.dtype());
}

// ShiftedWindowAttention (v1) on NHWC x.
class SwinWindowAttentionImpl : public torch::nn::Module {
 public:
  SwinWindowAttentionImpl(int64_t dim, int64_t heads, int64_t shift, double attention_dropout,
                          double dropout)
      : heads_(heads), shift_(shift), attention_dropout_(attention_dropout), dropout_(dropout) {
    const int64_t side = 2 * kSwinWindow - 1;
    relative_position_bias_table =
        register_parameter("relative_position_bias_table", torch::empty({side * side, heads}));
    TruncNormal_(relative_position_bias_table, 0.0, 0.02);
    // index[i, j] of window tokens i = (hi, wi), j = (hj, wj): (hi - hj + 6) * 13 + (wi - wj + 6).
    torch::Tensor coords = torch::arange(kSwinWindow, torch::kLong);
    torch::Tensor h = coords.repeat_interleave(kSwinWindow);
    torch::Tensor w = coords.repeat({kSwinWindow});
    torch::Tensor dh = h.unsqueeze(1) - h.unsqueeze(0) + (kSwinWindow - 1);
    torch::Tensor dw = w.unsqueeze(1) - w.unsqueeze(0) + (kSwinWindow - 1);
    relative_position_index =
        register_buffer("relative_position_index", (dh * side + dw).flatten());
    qkv = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
    proj = register_module("proj", torch::nn::Linear(dim, dim));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    const int64_t b = input.size(0), h = input.size(1), w = input.size(2), c = input.size(3);
    const int64_t ws = kSwinWindow;
    const int64_t pad_r = (ws - w % ws) % ws;
    const int64_t pad_b = (ws - h % ws) % ws;
    torch::Tensor x = F::pad(input, F::PadFuncOptions({0, 0, 0, pad_r, 0, pad_b}));
    const int64_t ph = h + pad_b, pw = w + pad_r;
    const int64_t shift_h = ws >= ph ? 0 : shift_;
    const int64_t shift_w = ws >= pw ? 0 : shift_;
    const bool shifted = shift_h + shift_w > 0;
    if (shifted) x = torch::roll(x, {-shift_h, -shift_w}, {1, 2});
    const int64_t nh = ph / ws, nw = pw / ws, windows = nh * nw, n = ws * ws;
    x = x.view({b, nh, ws, nw, ws, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b * windows, n, c});

    const int64_t head_dim = c / heads_;
    torch::Tensor qkv_out =
        qkv(x).reshape({b * windows, n, 3, heads_, head_dim}).permute({2, 0, 3, 1, 4});
    torch::Tensor q = qkv_out[0] * std::pow(static_cast<double>(head_dim), -0.5);
    torch::Tensor k = qkv_out[1], v = qkv_out[2];
    torch::Tensor attn = torch::matmul(q, k.transpose(-2, -1));
    torch::Tensor bias = relative_position_bias_table.index_select(0, relative_position_index)
                             .view({n, n, heads_})
                             .permute({2, 0, 1})
                             .unsqueeze(0);
    attn = attn + bias;
    if (shifted) {
      const auto options = x.options();
      torch::Tensor region = SwinMaskRegions(ph, shift_h, options).unsqueeze(1) * 3 +
                             SwinMaskRegions(pw, shift_w, options).unsqueeze(0);
      region = region.view({nh, ws, nw, ws}).permute({0, 2, 1, 3}).reshape({windows, n});
      torch::Tensor mask =
          (region.unsqueeze(1) != region.unsqueeze(2)).to(options.dtype()) * -100.0;
      attn = attn.view({b, windows, heads_, n, n}) + mask.unsqueeze(1).unsqueeze(0);
      attn = attn.view({b * windows, heads_, n, n});
    }
    attn = Dropout(torch::softmax(attn, -1), attention_dropout_, is_training());
    x = torch::matmul(attn, v).transpose(1, 2).reshape({b * windows, n, c});
    x = Dropout(proj(x), dropout_, is_training());

    x = x.view({b, nh, nw, ws, ws, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b, ph, pw, c});
    if (shifted) x = torch::roll(x, {shift_h, shift_w}, {1, 2});
    return x.slice(1, 0, h).slice(2, 0, w).contiguous();
  }

  torch::Tensor relative_position_bias_table, relative_position_index;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_, shift_;
  double attention_dropout_, dropout_;
};
TORCH_MODULE(SwinWindowAttention);

// Pre-norm block: x += SD(attn(LN(x))); x += SD(MLP(LN(x))).
class SwinBlockImpl : public torch::nn::Module {
 public:
  SwinBlockImpl(int64_t dim, int64_t heads, int64_t shift, double dropout, double attention_dropout,
                double p_stochastic)
      : p_stochastic_(p_stochastic) {
    norm1 = register_module("norm1", SwinLayerNorm(dim));
    attn =
        register_module("attn", SwinWindowAttention(dim, heads, shift, attention_dropout, dropout));
    norm2 = register_module("norm2", SwinLayerNorm(dim));
    mlp = register_module("mlp", Mlp(dim, 4 * dim, dim, dropout, Act::kGELU));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = x + StochasticDepth(attn(norm1(x)), p_stochastic_, is_training());
    return x + StochasticDepth(mlp(norm2(x)), p_stochastic_, is_training());
  }

  torch::nn::LayerNorm norm1{nullptr};
  SwinWindowAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};

 private:
  double p_stochastic_;
};
TORCH_MODULE(SwinBlock);

// v1 PatchMerging on NHWC x: zero-pad to even H and W, concatenate the 2x2 sub-grids in the order
// (even, even), (odd, even), (even, odd), (odd, odd) (row, col), LayerNorm(4 dim), FC 4 dim -> 2
// dim without bias.
class SwinPatchMergingImpl : public torch::nn::Module {
 public:
  explicit SwinPatchMergingImpl(int64_t dim) {
    reduction = register_module(
        "reduction", torch::nn::Linear(torch::nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
    norm = register_module("norm", SwinLayerNorm(4 * dim));
  }

  torch::Tensor forward(torch::Tensor x) {
    const int64_t h = x.size(1), w = x.size(2);
    x = F::pad(x, F::PadFuncOptions({0, 0, 0, w % 2, 0, h % 2}));
    using torch::indexing::Slice;
    torch::Tensor x0 =
        x.index({Slice(), Slice(0, torch::indexing::None, 2), Slice(0, torch::indexing::None, 2)});
    torch::Tensor x1 =
        x.index({Slice(), Slice(1, torch::indexing::None, 2), Slice(0, torch::indexing::None, 2)});
    torch::Tensor x2 =
        x.index({Slice(), Slice(0, torch::indexing::None, 2), Slice(1, torch::indexing::None, 2)});
    torch::Tensor x3 =
        x.index({Slice(), Slice(1, torch::indexing::None, 2), Slice(1, torch::indexing::None, 2)});
    return reduction(norm(torch::cat({x0, x1, x2, x3}, -1)));
  }

  torch::nn::Linear reduction{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(SwinPatchMerging);

class SwinTransformerImpl : public ClassifierImpl {
 public:
  explicit SwinTransformerImpl(const ModelOptions& o) {
    const double attention_dropout = o.Param("attention_dropout", 0.1);
    const double stochastic_depth_prob = o.Param("stochastic_depth_prob", 0.1);
    patch_embed = register_module(
        "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, 96, 4).stride(4)));
    patch_norm = register_module("patch_norm", SwinLayerNorm(96));
    const int64_t depths[] = {2, 2, 6, 2};
    const int64_t heads[] = {3, 6, 12, 24};
    const int64_t total_blocks = 12;
    int64_t block_id = 0;
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t dim = 96 << stage;
      for (int64_t i = 0; i < depths[stage]; ++i) {
        const double p = stochastic_depth_prob * static_cast<double>(block_id) / (total_blocks - 1);
        features->push_back(SwinBlock(dim, heads[stage], i % 2 == 0 ? 0 : kSwinWindow / 2,
                                      o.dropout, attention_dropout, p));
        ++block_id;
      }
      if (stage < 3) features->push_back(SwinPatchMerging(dim));
    }
    register_module("features", features);
    norm = register_module("norm", SwinLayerNorm(768));
    head = register_module("head", torch::nn::Linear(768, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* linear = m->as<torch::nn::Linear>()) {
        TruncNormal_(linear->weight, 0.0, 0.02);
        if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = patch_norm(patch_embed(x).permute({0, 2, 3, 1}));
    x = features->forward(x);
    x = norm(x).mean({1, 2});
    return head(x);
  }

 private:
  torch::nn::Conv2d patch_embed{nullptr};
  torch::nn::LayerNorm patch_norm{nullptr};
  torch::nn::Sequential features;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("SwinTransformer", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<SwinTransformerImpl>(o);
});

}  // namespace quartet::worker::models
