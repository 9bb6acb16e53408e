// FractalNet: LEMUR's FractalNet.py (shared/research/families.md section 3.13). Five fractal units
// with 64, 128, 256, 512, 512 output channels, each a 3-column fractal block (4 rows, mean join)
// followed by maxpool 2x2 s2; then flatten and FC(F->classes) with no global pooling.
//
// Fractal block: column j has a conv block on the rows r (1-based) with r % 2^j == 0 (7 conv
// blocks); a conv block is conv 3x3 p1 -b, BN, ReLU, Dropout2d(p) when p > 0. Every column keeps a
// running tensor (initially the block input); at each row the active columns apply their conv
// blocks to their own running tensors, the outputs are averaged and the mean becomes the running
// tensor of every active column. The block returns column 0's tensor. LEMUR's drop-path fields
// (glob_drop_ratio, loc_drop_prob, glob_num_columns) are unused there and absent here.
// Unit i uses drop rate min(0.5, dropout + 0.1 i).
// Init: conv kaiming-uniform (fan_in, gain sqrt 2), zero bias; BN and Linear PyTorch defaults.
// Params read: o.dropout (LEMUR prm "dropout", the base drop rate), o.input_size.
// Departures from LEMUR: F = 512 s^2, with s the input size after five floor halvings, is computed
// analytically instead of by LEMUR's construction-time dummy forward; that dummy pass (train mode,
// a batch of one zero image) leaves every BN with running_var 0.9 and one tracked batch, which the
// constructor reproduces. The model is built for o.input_size and accepts only inputs with the
// same s (e.g. 32-63 px when built at 32); minimum 32 px (five pools).
// Params at 3x32x32, 10 classes: 33,724,618.
#include <algorithm>
#include <string>
#include <vector>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr int kFractalColumns = 3;
constexpr int kFractalUnits = 5;
constexpr int64_t kFractalChannels[kFractalUnits] = {64, 128, 256, 512, 512};

class FractalNetConvBlockImpl : public torch::nn::Module {
 public:
  FractalNetConvBlockImpl(int64_t in, int64_t out, double drop_rate) : drop_rate_(drop_rate) {
    conv = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(out));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn(conv(x)));
    if (drop_rate_ > 0.0) {
      x = FeatureDropout(x, drop_rate_, is_training());
    }
    return x;
  }

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  double drop_rate_;
};
TORCH_MODULE(FractalNetConvBlock);

// A fractal block followed by maxpool 2x2 s2.
class FractalNetUnitImpl : public torch::nn::Module {
 public:
  FractalNetUnitImpl(int64_t in, int64_t out, double drop_rate) {
    const int depth = 1 << (kFractalColumns - 1);
    rows_.resize(depth);
    for (int row = 1; row <= depth; ++row) {
      for (int col = 0; col < kFractalColumns; ++col) {
        if (row % (1 << col) != 0) continue;
        // A column's first conv block (row 2^col) reads the block input.
        const int64_t col_in = row == (1 << col) ? in : out;
        rows_[row - 1].push_back(
            register_module("row" + std::to_string(row) + "_col" + std::to_string(col + 1),
                            FractalNetConvBlock(col_in, out, drop_rate)));
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    std::vector<torch::Tensor> running(kFractalColumns, x);
    std::vector<torch::Tensor> outs;
    for (auto& row : rows_) {
      outs.clear();
      // Active columns are always a prefix 0..k-1 of the columns.
      for (size_t col = 0; col < row.size(); ++col) outs.push_back(row[col](running[col]));
      torch::Tensor joined = outs.size() == 1 ? outs[0] : torch::stack(outs).mean(0);
      for (size_t col = 0; col < row.size(); ++col) running[col] = joined;
    }
    return torch::max_pool2d(running[0], 2, 2);
  }

 private:
  std::vector<std::vector<FractalNetConvBlock>> rows_;
};
TORCH_MODULE(FractalNetUnit);

class FractalNetImpl : public ClassifierImpl {
 public:
  explicit FractalNetImpl(const ModelOptions& o) {
    int64_t in = o.in_channels;
    int64_t side = o.input_size;
    for (int i = 0; i < kFractalUnits; ++i) {
      const double drop_rate = std::min(0.5, o.dropout + 0.1 * i);
      features->push_back(FractalNetUnit(in, kFractalChannels[i], drop_rate));
      in = kFractalChannels[i];
      side = ConvOutSize(side, 2, 2);
    }
    register_module("features", features);
    output = register_module("output", torch::nn::Linear(in * side * side, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_uniform_(conv->weight);
        if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        // The state LEMUR's dummy forward of a zero image leaves: batch variance 0 folded into
        // running_var with momentum 0.1, running_mean stays 0.
        bn->running_var.fill_(0.9);
        bn->num_batches_tracked.fill_(1);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features->forward(x);
    return output(x.flatten(1));
  }

 private:
  torch::nn::Sequential features;
  torch::nn::Linear output{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("FractalNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<FractalNetImpl>(o);
});

}  // namespace quartet::worker::models
