// ComplexNet: LEMUR's ComplexNet.py (shared/research/families.md section 3.6), a complex-valued
// LeNet-like net. Activations are (re, im) pairs of real tensors; the real input x enters as
// re = x, im = 0 (LEMUR feeds complex64 images with a zero imaginary part).
//
// Layers: complex conv 5x5 p0 C->10, complex ReLU, complex max-pool 2; complex BN(10); complex conv
// 5x5 p0 10->20, complex ReLU, complex max-pool 2; flatten; complex linear F->500, complex ReLU,
// complex linear 500->classes; modulus |z|; log_softmax over the classes (the output is
// log-probabilities, so cross-entropy on it equals NLL, as in LEMUR).
//  - Complex conv / linear: two real layers R and I (both with bias, PyTorch default init);
//    re' = R(re) - I(im), im' = R(im) + I(re).
//  - Complex ReLU: ReLU on re and on im. Complex max-pool: in each window the element of largest
//    modulus, as a whole complex value.
//  - Complex BN: per-channel 2x2 whitening with batch statistics in training (mean; Crr, Cii with
//    eps, Cri) and running statistics in eval (momentum 0.1, n/(n-1) correction on the covariances,
//    covariance initialised to (sqrt 2, sqrt 2, 0)), then LEMUR's affine step, whose weight and
//    bias are never registered with the module and so stay at their init: a constant multiply by
//    sqrt(2), with no trainable parameters.
// The model is built for o.input_size: F = 20 * m^2 with m = floor((floor((S - 4) / 2) - 4) / 2),
// 500 at 32 px. Needs >= 16 px. Params at 3x32x32, 10 classes: 522,580. Reads o.input_size; no
// params (LEMUR's only prm are lr and momentum).
//
// Departures from LEMUR (none change the function):
//  - F is computed analytically instead of by a dummy forward pass. LEMUR's dummy pass (a constant
//    0.1 input in train mode) also updates the BN running statistics once; the constructor
//    reproduces that update by running the layers up to the BN on a constant 0.1 image (batch 1;
//    LEMUR's batch only enters through the n/(n-1) factor on a covariance of eps).
//  - R and I run as one fused op (weights stacked along the output axis, re and im stacked along
//    the batch axis); with im = 0 (first layer) I(im) and R(im) reduce to the biases.
//  - The max-pool picks its window by |z|^2 and gathers re and im (LEMUR rebuilds the element from
//    |z| and its phase; same values). The modulus is sqrt(max(re^2 + im^2, 1e-30)), whose
//    gradient at z = 0 is 0, as PyTorch's complex abs.
#include <cmath>

#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// A complex activation; an undefined `im` means an imaginary part of zero.
struct ComplexNetPair {
  torch::Tensor re, im;
};

// Applies R and I (weights w_r / w_i, biases b_r / b_i) to z as one fused real op `op(input,
// weight, bias)` whose output channels are on dim 1.
template <typename Op>
ComplexNetPair ComplexNetApply(const ComplexNetPair& z, const torch::Tensor& w_r,
                               const torch::Tensor& b_r, const torch::Tensor& w_i,
                               const torch::Tensor& b_i, Op op) {
  const int64_t out = w_r.size(0);
  const torch::Tensor w = torch::cat({w_r, w_i}, 0), b = torch::cat({b_r, b_i}, 0);
  if (!z.im.defined()) {
    // R(0) = b_r and I(0) = b_i.
    torch::Tensor y = op(z.re, w, b);
    std::vector<int64_t> shape(y.dim(), 1);
    shape[1] = out;
    return {y.narrow(1, 0, out) - b_i.view(shape), y.narrow(1, out, out) + b_r.view(shape)};
  }
  const int64_t batch = z.re.size(0);
  torch::Tensor y = op(torch::cat({z.re, z.im}, 0), w, b);
  torch::Tensor from_re = y.narrow(0, 0, batch), from_im = y.narrow(0, batch, batch);
  return {from_re.narrow(1, 0, out) - from_im.narrow(1, out, out),
          from_im.narrow(1, 0, out) + from_re.narrow(1, out, out)};
}

class ComplexNetConvImpl : public torch::nn::Module {
 public:
  ComplexNetConvImpl(int64_t in, int64_t out, int64_t kernel) {
    conv_r =
        register_module("conv_r", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)));
    conv_i =
        register_module("conv_i", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)));
  }

  ComplexNetPair forward(const ComplexNetPair& z) {
    return ComplexNetApply(z, conv_r->weight, conv_r->bias, conv_i->weight, conv_i->bias,
                           [](const torch::Tensor& x, const torch::Tensor& w,
                              const torch::Tensor& b) { return torch::conv2d(x, w, b); });
  }

 private:
  torch::nn::Conv2d conv_r{nullptr}, conv_i{nullptr};
};
TORCH_MODULE(ComplexNetConv);

class ComplexNetLinearImpl : public torch::nn::Module {
 public:
  ComplexNetLinearImpl(int64_t in, int64_t out) {
    fc_r = register_module("fc_r", torch::nn::Linear(in, out));
    fc_i = register_module("fc_i", torch::nn::Linear(in, out));
  }

  ComplexNetPair forward(const ComplexNetPair& z) {
    return ComplexNetApply(z, fc_r->weight, fc_r->bias, fc_i->weight, fc_i->bias,
                           [](const torch::Tensor& x, const torch::Tensor& w,
                              const torch::Tensor& b) { return torch::linear(x, w, b); });
  }

 private:
  torch::nn::Linear fc_r{nullptr}, fc_i{nullptr};
};
TORCH_MODULE(ComplexNetLinear);

ComplexNetPair ComplexNetRelu(const ComplexNetPair& z) {
  return {torch::relu(z.re), torch::relu(z.im)};
}

// Max-pool 2x2 s2 by modulus: each window's element of largest |z|, as a whole.
ComplexNetPair ComplexNetMaxPool2(const ComplexNetPair& z) {
  torch::Tensor indices;
  {
    torch::NoGradGuard no_grad;
    indices = std::get<1>(torch::max_pool2d_with_indices(z.re * z.re + z.im * z.im, 2, 2));
  }
  torch::Tensor flat = indices.flatten(2);
  return {z.re.flatten(2).gather(2, flat).view_as(indices),
          z.im.flatten(2).gather(2, flat).view_as(indices)};
}

class ComplexNetBatchNormImpl : public torch::nn::Module {
 public:
  explicit ComplexNetBatchNormImpl(int64_t channels) {
    running_mean_re = register_buffer("running_mean_re", torch::zeros({channels}));
    running_mean_im = register_buffer("running_mean_im", torch::zeros({channels}));
    running_covar = register_buffer(
        "running_covar", torch::tensor({kSqrt2, kSqrt2, 0.0}, torch::kFloat).repeat({channels, 1}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  }

  ComplexNetPair forward(const ComplexNetPair& z) {
    const std::vector<int64_t> dims = {0, 2, 3};
    torch::Tensor re, im, crr, cii, cri;
    if (is_training()) {
      torch::Tensor mean_re = z.re.mean(dims), mean_im = z.im.mean(dims);
      re = z.re - mean_re.view({1, -1, 1, 1});
      im = z.im - mean_im.view({1, -1, 1, 1});
      crr = re.square().mean(dims) + kEps;
      cii = im.square().mean(dims) + kEps;
      cri = (re * im).mean(dims);
      torch::NoGradGuard no_grad;
      const double n = static_cast<double>(z.re.numel() / z.re.size(1));
      const double unbias = n / (n - 1.0);
      num_batches_tracked.add_(1);
      running_mean_re.mul_(1.0 - kMomentum).add_(mean_re.detach(), kMomentum);
      running_mean_im.mul_(1.0 - kMomentum).add_(mean_im.detach(), kMomentum);
      running_covar.mul_(1.0 - kMomentum)
          .add_(torch::stack({crr.detach(), cii.detach(), cri.detach()}, 1), kMomentum * unbias);
    } else {
      re = z.re - running_mean_re.view({1, -1, 1, 1});
      im = z.im - running_mean_im.view({1, -1, 1, 1});
      crr = running_covar.select(1, 0) + kEps;
      cii = running_covar.select(1, 1) + kEps;
      cri = running_covar.select(1, 2);
    }
    // Inverse square root of [[crr, cri], [cri, cii]], times the constant affine sqrt(2).
    torch::Tensor s = torch::sqrt(crr * cii - cri.square());
    torch::Tensor t = torch::sqrt(cii + crr + 2 * s);
    torch::Tensor scale = kSqrt2 / (s * t);
    torch::Tensor rrr = ((cii + s) * scale).view({1, -1, 1, 1});
    torch::Tensor rii = ((crr + s) * scale).view({1, -1, 1, 1});
    torch::Tensor rri = (-cri * scale).view({1, -1, 1, 1});
    return {rrr * re + rri * im, rii * im + rri * re};
  }

 private:
  static constexpr double kEps = 1e-5;
  static constexpr double kMomentum = 0.1;
  static constexpr double kSqrt2 = 1.4142135623730951;
  torch::Tensor running_mean_re, running_mean_im, running_covar, num_batches_tracked;
};
TORCH_MODULE(ComplexNetBatchNorm);

class ComplexNetImpl : public ClassifierImpl {
 public:
  explicit ComplexNetImpl(const ModelOptions& o) {
    conv1 = register_module("conv1", ComplexNetConv(o.in_channels, 10, 5));
    bn = register_module("bn", ComplexNetBatchNorm(10));
    conv2 = register_module("conv2", ComplexNetConv(10, 20, 5));
    const int64_t m = ((o.input_size - 4) / 2 - 4) / 2;
    fc1 = register_module("fc1", ComplexNetLinear(20 * m * m, 500));
    fc2 = register_module("fc2", ComplexNetLinear(500, o.num_classes));
    // LEMUR's construction-time dummy pass: its only lasting effect is one BN statistics update.
    torch::NoGradGuard no_grad;
    bn(Stage1({torch::full({1, o.in_channels, o.input_size, o.input_size}, 0.1), {}}));
  }

  torch::Tensor forward(torch::Tensor x) override {
    ComplexNetPair z = bn(Stage1({x, {}}));
    z = ComplexNetMaxPool2(ComplexNetRelu(conv2(z)));
    z = {z.re.flatten(1), z.im.flatten(1)};
    z = fc2(ComplexNetRelu(fc1(z)));
    torch::Tensor modulus = torch::sqrt(torch::clamp_min(z.re.square() + z.im.square(), 1e-30));
    return torch::log_softmax(modulus, 1);
  }

 private:
  ComplexNetPair Stage1(const ComplexNetPair& z) {
    return ComplexNetMaxPool2(ComplexNetRelu(conv1(z)));
  }

  ComplexNetConv conv1{nullptr}, conv2{nullptr};
  ComplexNetBatchNorm bn{nullptr};
  ComplexNetLinear fc1{nullptr}, fc2{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("ComplexNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<ComplexNetImpl>(o);
});

}  // namespace quartet::worker::models
