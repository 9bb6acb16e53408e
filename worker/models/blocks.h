// Building blocks shared by several families (the torchvision helpers LEMUR's models use).
// See shared/research/families.md section 2. Not thread-safe (torch modules).
#ifndef QUARTET_WORKER_MODELS_BLOCKS_H_
#define QUARTET_WORKER_MODELS_BLOCKS_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace quartet::worker::models {

// Activation choices for ConvNormAct and SqueezeExcitation.
enum class Act { kNone, kReLU, kReLU6, kSiLU, kHardswish, kHardsigmoid, kSigmoid, kGELU };

// Applies `act` functionally.
torch::Tensor Activate(const torch::Tensor& x, Act act);

// Batch-norm settings of a ConvNormAct; `enabled = false` means no norm layer.
struct NormOptions {
  bool enabled = true;
  double eps = 1e-5;
  double momentum = 0.1;
};

// torchvision Conv2dNormActivation: conv, then BatchNorm (optional), then activation (optional).
// Padding defaults to ((k - 1) / 2) * dilation; the conv has a bias exactly when there is no norm,
// unless `bias` says otherwise (-1 default, 0 no, 1 yes).
struct ConvNormActOptions {
  int64_t in = 0, out = 0, kernel = 3, stride = 1, groups = 1, dilation = 1;
  int64_t padding = -1;  // -1: ((kernel - 1) / 2) * dilation
  int bias = -1;
  NormOptions norm;
  Act act = Act::kReLU;
};

// The common case: conv without bias, BatchNorm with PyTorch defaults, activation `act`.
ConvNormActOptions ConvBnAct(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                             int64_t groups = 1, Act act = Act::kReLU);

class ConvNormActImpl : public torch::nn::Module {
 public:
  explicit ConvNormActImpl(const ConvNormActOptions& o);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  Act act_;
};
TORCH_MODULE(ConvNormAct);

// torchvision SqueezeExcitation: GAP, 1x1 conv in->squeeze (+b), activation, 1x1 conv
// squeeze->in (+b), scale activation, channel-wise multiply.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze, Act act = Act::kReLU,
                        Act scale_act = Act::kSigmoid);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};

 private:
  Act act_, scale_act_;
};
TORCH_MODULE(SqueezeExcitation);

// ---- Random draws inside forward passes ----
// While a ScopedGenerator lives on a thread, the draws below that this thread makes for CPU tensors
// come from its generator instead of LibTorch's global one. The MoE gives each expert and the gate
// a generator of their own, so experts that run concurrently on different threads draw the same
// numbers as they would one after another. Without a scope, or for CUDA tensors, the draws use the
// global generator (and the fused CUDA kernels). Every random draw a zoo family makes in forward
// goes through these.
class ScopedGenerator {
 public:
  // `generator` (a CPU generator) must outlive the scope; nullptr selects the global generator.
  explicit ScopedGenerator(at::Generator* generator);
  ~ScopedGenerator();
  ScopedGenerator(const ScopedGenerator&) = delete;
  ScopedGenerator& operator=(const ScopedGenerator&) = delete;

 private:
  at::Generator* previous_;
};

// Element-wise dropout (torch.nn.functional.dropout): identity in eval or for p = 0.
torch::Tensor Dropout(const torch::Tensor& x, double p, bool training);
// Channel-wise dropout (dropout2d): one draw per (sample, channel) of an NCHW tensor.
torch::Tensor FeatureDropout(const torch::Tensor& x, double p, bool training);
// Standard normal noise shaped like x.
torch::Tensor RandnLike(const torch::Tensor& x);
// Integers uniform in [0, high) of the given shape.
torch::Tensor RandInt(int64_t high, at::IntArrayRef size, const torch::TensorOptions& options);

// torchvision StochasticDepth in "row" mode: identity in eval or when p = 0; in training, one
// Bernoulli(1 - p) per sample, scaled by 1 / (1 - p). The residual add is the caller's.
torch::Tensor StochasticDepth(const torch::Tensor& x, double p, bool training);

// torchvision ops.MLP with hidden dims [hidden, out]: Linear, activation, Dropout, Linear, Dropout.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t in, int64_t hidden, int64_t out, double dropout, Act act = Act::kGELU);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  double dropout_;
  Act act_;
};
TORCH_MODULE(Mlp);

// LayerNorm over the channel axis of an NCHW tensor (permute to NHWC, LayerNorm over C, back).
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(LayerNorm2d);

// GoogLeNet / Inception-v3 BasicConv2d: conv without bias, BatchNorm(eps 1e-3), ReLU.
class BasicConv2dImpl : public torch::nn::Module {
 public:
  BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                  torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> padding = 0);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

// torchvision _make_divisible: max(min_value or divisor, floor((v + divisor/2) / divisor) *
// divisor), raised by divisor when that is below 0.9 v.
int64_t MakeDivisible(double v, int64_t divisor = 8, int64_t min_value = 0);

// In-place truncated normal N(mean, std^2) restricted to the absolute interval [a, b] (PyTorch's
// trunc_normal_ defaults a = -2, b = 2, which are absolute bounds, not multiples of std).
void TruncNormal_(torch::Tensor t, double mean = 0.0, double std = 1.0, double a = -2.0,
                  double b = 2.0);

// Kaiming-normal fan_out (ReLU) for every Conv2d weight and zero bias; BatchNorm/GroupNorm weight 1
// bias 0. The common torchvision ResNet-style initialisation.
void InitConvKaimingBnOnes(torch::nn::Module& root);

// The spatial size after a conv or pool: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1,
// or ceil(...) when ceil_mode.
int64_t ConvOutSize(int64_t in, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
                    int64_t dilation = 1, bool ceil_mode = false);

}  // namespace quartet::worker::models

#endif  // QUARTET_WORKER_MODELS_BLOCKS_H_
