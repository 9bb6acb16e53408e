// BayesianNet-1/-2/-3: LEMUR's BayesianNet-N.py (shared/research/families.md section 3.5), one
// family with three Bayes-by-backprop topologies built from the same two layers (convolution and
// linear, both with bias).
//
// Bayes-by-backprop layer: parameters W_mu, W_rho, bias_mu, bias_rho (so the count is twice that of
// the plain layer); mu ~ N(0, 0.1), rho ~ N(-5, 0.1) at init; sigma = softplus(rho). Train-mode
// forward uses the local reparameterisation trick, as LEMUR: mean = op(x, W_mu) + bias_mu,
// var = 1e-16 + op(x^2, sigma_W^2) + sigma_b^2, output = mean + sqrt(var) * eps with eps ~ N(0, 1)
// of the output's shape, drawn on every call.
//
// Topologies (Softplus after every conv and every FC but the last; max pooling):
//   -1: conv 5x5 p2 C->32, pool 3 s2; conv 5x5 p2 32->64, pool 3 s2; conv 5x5 p1 64->128, pool 3
//       s2; flatten 128x2x2; FC 512->1000, FC 1000->1000, FC 1000->classes.
//   -2: conv 11x11 s4 p5 C->64, pool 2; conv 5x5 p2 64->192, pool 2; conv 3x3 p1 192->384; conv
//       3x3 p1 384->256; conv 3x3 p1 256->128, pool 2; flatten 128x1x1; FC 128->classes.
//   -3 (LeNet-5): conv 5x5 C->6, pool 2; conv 5x5 6->16, pool 2; flatten 16x5x5; FC 400->120,
//       FC 120->84, FC 84->classes.
// Params at 3x32x32, 10 classes: 3,565,268 / 4,351,892 / 124,012. Reads no params (LEMUR's only
// prm are lr and momentum, optimiser settings).
//
// Departures from LEMUR:
//  - Eval mode is deterministic: each layer returns its mean (op(x, W_mu) + bias_mu, no noise).
//    LEMUR samples eps in eval too (its layers' `sample` flag defaults to true), so its test-time
//    predictions are stochastic.
//  - LEMUR's flatten is a hard reshape to the 32-px feature size, which breaks at any other input
//    size. Here an adaptive average pool to the 32-px map (2x2 / 1x1 / 5x5) precedes the flatten:
//    the identity at 32 px, no parameters, and the model runs at every size >= its minimum (23 / 29
//    / 16 px, where the last pool still gets a valid window).
//  - LEMUR's dead KL computation (summed, then discarded by the Net's call) is skipped.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr double kBayesianNetMuStd = 0.1;
constexpr double kBayesianNetRhoMean = -5.0;
constexpr double kBayesianNetRhoStd = 0.1;
constexpr double kBayesianNetVarFloor = 1e-16;

// Registers LEMUR's four Bayes-by-backprop tensors on `m`, in LEMUR's order and with its init.
void BayesianNetRegister(torch::nn::Module& m, std::vector<int64_t> weight_shape, int64_t out,
                         torch::Tensor* w_mu, torch::Tensor* w_rho, torch::Tensor* b_mu,
                         torch::Tensor* b_rho) {
  *w_mu = m.register_parameter("W_mu", torch::empty(weight_shape).normal_(0.0, kBayesianNetMuStd));
  *w_rho = m.register_parameter(
      "W_rho", torch::empty(weight_shape).normal_(kBayesianNetRhoMean, kBayesianNetRhoStd));
  *b_mu = m.register_parameter("bias_mu", torch::empty({out}).normal_(0.0, kBayesianNetMuStd));
  *b_rho = m.register_parameter(
      "bias_rho", torch::empty({out}).normal_(kBayesianNetRhoMean, kBayesianNetRhoStd));
}

// mean + sqrt(var) * eps, var computed lazily by `var_fn` (train mode only).
template <typename VarFn>
torch::Tensor BayesianNetSample(const torch::Tensor& mean, VarFn var_fn) {
  torch::Tensor var = var_fn() + kBayesianNetVarFloor;
  return mean + torch::sqrt(var) * RandnLike(mean);
}

class BayesianNetConvImpl : public torch::nn::Module {
 public:
  BayesianNetConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding)
      : stride_(stride), padding_(padding) {
    BayesianNetRegister(*this, {out, in, kernel, kernel}, out, &w_mu_, &w_rho_, &b_mu_, &b_rho_);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor mean = torch::conv2d(x, w_mu_, b_mu_, stride_, padding_);
    if (!is_training()) return mean;
    return BayesianNetSample(mean, [&] {
      return torch::conv2d(x * x, torch::softplus(w_rho_).square(),
                           torch::softplus(b_rho_).square(), stride_, padding_);
    });
  }

 private:
  int64_t stride_, padding_;
  torch::Tensor w_mu_, w_rho_, b_mu_, b_rho_;
};
TORCH_MODULE(BayesianNetConv);

class BayesianNetLinearImpl : public torch::nn::Module {
 public:
  BayesianNetLinearImpl(int64_t in, int64_t out) {
    BayesianNetRegister(*this, {out, in}, out, &w_mu_, &w_rho_, &b_mu_, &b_rho_);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor mean = torch::linear(x, w_mu_, b_mu_);
    if (!is_training()) return mean;
    return BayesianNetSample(mean, [&] {
      return torch::linear(x * x, torch::softplus(w_rho_).square(),
                           torch::softplus(b_rho_).square());
    });
  }

 private:
  torch::Tensor w_mu_, w_rho_, b_mu_, b_rho_;
};
TORCH_MODULE(BayesianNetLinear);

class BayesianNetImpl : public ClassifierImpl {
 public:
  BayesianNetImpl(const ModelOptions& o, int variant) {
    using torch::nn::MaxPool2d;
    using torch::nn::MaxPool2dOptions;
    using torch::nn::Softplus;
    const int64_t c = o.in_channels, k = o.num_classes;
    torch::nn::Sequential& f = features;
    torch::nn::Sequential& h = classifier;
    switch (variant) {
      case 1:
        f->push_back(BayesianNetConv(c, 32, 5, 1, 2));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(3).stride(2)));
        f->push_back(BayesianNetConv(32, 64, 5, 1, 2));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(3).stride(2)));
        f->push_back(BayesianNetConv(64, 128, 5, 1, 1));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(3).stride(2)));
        map_size_ = 2;
        h->push_back(BayesianNetLinear(128 * 2 * 2, 1000));
        h->push_back(Softplus());
        h->push_back(BayesianNetLinear(1000, 1000));
        h->push_back(Softplus());
        h->push_back(BayesianNetLinear(1000, k));
        break;
      case 2:
        f->push_back(BayesianNetConv(c, 64, 11, 4, 5));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(2)));
        f->push_back(BayesianNetConv(64, 192, 5, 1, 2));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(2)));
        f->push_back(BayesianNetConv(192, 384, 3, 1, 1));
        f->push_back(Softplus());
        f->push_back(BayesianNetConv(384, 256, 3, 1, 1));
        f->push_back(Softplus());
        f->push_back(BayesianNetConv(256, 128, 3, 1, 1));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(2)));
        map_size_ = 1;
        h->push_back(BayesianNetLinear(128, k));
        break;
      default:  // 3
        f->push_back(BayesianNetConv(c, 6, 5, 1, 0));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(2)));
        f->push_back(BayesianNetConv(6, 16, 5, 1, 0));
        f->push_back(Softplus());
        f->push_back(MaxPool2d(MaxPool2dOptions(2)));
        map_size_ = 5;
        h->push_back(BayesianNetLinear(16 * 5 * 5, 120));
        h->push_back(Softplus());
        h->push_back(BayesianNetLinear(120, 84));
        h->push_back(Softplus());
        h->push_back(BayesianNetLinear(84, k));
        break;
    }
    register_module("features", features);
    register_module("classifier", classifier);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features->forward(x);
    if (x.size(2) != map_size_ || x.size(3) != map_size_) {
      x = torch::adaptive_avg_pool2d(x, {map_size_, map_size_});
    }
    return classifier->forward(x.flatten(1));
  }

 private:
  int64_t map_size_ = 1;
  torch::nn::Sequential features, classifier;
};

}  // namespace

QUARTET_REGISTER_MODEL("BayesianNet-1", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<BayesianNetImpl>(o, 1);
});
QUARTET_REGISTER_MODEL("BayesianNet-2", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<BayesianNetImpl>(o, 2);
});
QUARTET_REGISTER_MODEL("BayesianNet-3", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<BayesianNetImpl>(o, 3);
});

}  // namespace quartet::worker::models
