#include "worker/models/blocks.h"

#include <cmath>

namespace quartet::worker::models {

namespace F = torch::nn::functional;

torch::Tensor Activate(const torch::Tensor& x, Act act) {
  switch (act) {
    case Act::kNone:
      return x;
    case Act::kReLU:
      return torch::relu(x);
    case Act::kReLU6:
      return torch::clamp(x, 0.0, 6.0);
    case Act::kSiLU:
      return torch::silu(x);
    case Act::kHardswish:
      return torch::hardswish(x);
    case Act::kHardsigmoid:
      return torch::hardsigmoid(x);
    case Act::kSigmoid:
      return torch::sigmoid(x);
    case Act::kGELU:
      return torch::gelu(x);
  }
  return x;
}

ConvNormActOptions ConvBnAct(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                             int64_t groups, Act act) {
  ConvNormActOptions c;
  c.in = in;
  c.out = out;
  c.kernel = kernel;
  c.stride = stride;
  c.groups = groups;
  c.act = act;
  return c;
}

ConvNormActImpl::ConvNormActImpl(const ConvNormActOptions& o) : act_(o.act) {
  const int64_t padding = o.padding >= 0 ? o.padding : ((o.kernel - 1) / 2) * o.dilation;
  const bool bias = o.bias >= 0 ? o.bias == 1 : !o.norm.enabled;
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in, o.out, o.kernel)
                                                       .stride(o.stride)
                                                       .padding(padding)
                                                       .dilation(o.dilation)
                                                       .groups(o.groups)
                                                       .bias(bias)));
  if (o.norm.enabled) {
    bn = register_module(
        "bn", torch::nn::BatchNorm2d(
                  torch::nn::BatchNorm2dOptions(o.out).eps(o.norm.eps).momentum(o.norm.momentum)));
  }
}

torch::Tensor ConvNormActImpl::forward(torch::Tensor x) {
  x = conv(x);
  if (bn) x = bn(x);
  return Activate(x, act_);
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze, Act act,
                                             Act scale_act)
    : act_(act), scale_act_(scale_act) {
  fc1 = register_module("fc1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, squeeze, 1)));
  fc2 = register_module("fc2", torch::nn::Conv2d(torch::nn::Conv2dOptions(squeeze, channels, 1)));
}

torch::Tensor SqueezeExcitationImpl::forward(torch::Tensor x) {
  torch::Tensor s = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1));
  s = Activate(fc1(s), act_);
  s = Activate(fc2(s), scale_act_);
  return x * s;
}

namespace {

thread_local at::Generator* current_generator = nullptr;

// The scoped generator for CPU draws, else none (the global generator).
c10::optional<at::Generator> GeneratorFor(const torch::Device& device) {
  if (current_generator != nullptr && device.is_cpu()) return *current_generator;
  return c10::nullopt;
}

c10::optional<at::Generator> GeneratorFor(const torch::Tensor& x) {
  return GeneratorFor(x.device());
}

// x * Bernoulli(1 - p) / (1 - p), one draw per element of a tensor of `shape` (broadcast over x).
torch::Tensor MaskedScale(const torch::Tensor& x, at::IntArrayRef shape, double p,
                          c10::optional<at::Generator> generator) {
  const double survival = 1.0 - p;
  torch::Tensor noise = torch::empty(shape, x.options()).bernoulli_(survival, generator);
  if (survival > 0.0) noise.div_(survival);
  return x * noise;
}

}  // namespace

ScopedGenerator::ScopedGenerator(at::Generator* generator) : previous_(current_generator) {
  current_generator = generator;
}

ScopedGenerator::~ScopedGenerator() { current_generator = previous_; }

torch::Tensor Dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  auto generator = GeneratorFor(x);
  if (!generator) return torch::dropout(x, p, training);
  return MaskedScale(x, x.sizes(), p, generator);
}

torch::Tensor FeatureDropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  auto generator = GeneratorFor(x);
  if (!generator) return torch::feature_dropout(x, p, training);
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  if (x.dim() > 1) shape[1] = x.size(1);
  return MaskedScale(x, shape, p, generator);
}

torch::Tensor RandnLike(const torch::Tensor& x) {
  auto generator = GeneratorFor(x);
  if (!generator) return torch::randn_like(x);
  return torch::randn(x.sizes(), generator, x.options());
}

torch::Tensor RandInt(int64_t high, at::IntArrayRef size, const torch::TensorOptions& options) {
  return torch::randint(high, size, GeneratorFor(options.device()), options);
}

torch::Tensor StochasticDepth(const torch::Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return MaskedScale(x, shape, p, GeneratorFor(x));
}

MlpImpl::MlpImpl(int64_t in, int64_t hidden, int64_t out, double dropout, Act act)
    : dropout_(dropout), act_(act) {
  fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, out));
}

torch::Tensor MlpImpl::forward(torch::Tensor x) {
  x = Dropout(Activate(fc1(x), act_), dropout_, is_training());
  return Dropout(fc2(x), dropout_, is_training());
}

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps) {
  norm = register_module("norm",
                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({channels}).eps(eps)));
}

torch::Tensor LayerNorm2dImpl::forward(torch::Tensor x) {
  return norm(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

BasicConv2dImpl::BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                                 torch::ExpandingArray<2> stride,
                                 torch::ExpandingArray<2> padding) {
  conv = register_module(
      "conv",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(1e-3)));
}

torch::Tensor BasicConv2dImpl::forward(torch::Tensor x) { return torch::relu(bn(conv(x))); }

int64_t MakeDivisible(double v, int64_t divisor, int64_t min_value) {
  if (min_value <= 0) min_value = divisor;
  int64_t new_v =
      std::max<int64_t>(min_value, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (new_v < 0.9 * v) new_v += divisor;
  return new_v;
}

void TruncNormal_(torch::Tensor t, double mean, double std, double a, double b) {
  // Inverse-CDF method, as PyTorch's trunc_normal_.
  torch::NoGradGuard no_grad;
  auto norm_cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double l = norm_cdf((a - mean) / std);
  const double u = norm_cdf((b - mean) / std);
  t.uniform_(2 * l - 1, 2 * u - 1);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.add_(mean);
  t.clamp_(a, b);
}

void InitConvKaimingBnOnes(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      if (bn->weight.defined()) torch::nn::init::ones_(bn->weight);
      if (bn->bias.defined()) torch::nn::init::zeros_(bn->bias);
    } else if (auto* gn = m->as<torch::nn::GroupNorm>()) {
      if (gn->weight.defined()) torch::nn::init::ones_(gn->weight);
      if (gn->bias.defined()) torch::nn::init::zeros_(gn->bias);
    }
  }
}

int64_t ConvOutSize(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                    bool ceil_mode) {
  const int64_t num = in + 2 * padding - dilation * (kernel - 1) - 1;
  if (num < 0) return 0;
  int64_t out = ceil_mode ? (num + stride - 1) / stride + 1 : num / stride + 1;
  // PyTorch: with ceil_mode the last window must start inside the input (or left padding).
  if (ceil_mode && (out - 1) * stride >= in + padding) --out;
  return out;
}

}  // namespace quartet::worker::models
