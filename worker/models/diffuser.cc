// Diffuser: LEMUR's Diffuser.py (shared/research/families.md section 3.11), a small CNN classifier
// trained on diffusion-noised inputs; not a generative diffusion model.
//
// Schedule: 100 steps, beta = linspace(1e-5, 0.01, 100), alpha_bar = cumprod(1 - beta).
// Training forward: per sample t ~ U{0..99}, x <- sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps
// with eps ~ N(0, 1), as LEMUR. Eval forward: t = 0 and no noise (deterministic, as LEMUR).
// Network: time embedding Linear(1->64), ReLU, Linear(64->64) of t as a float; encoder conv 3x3
// p1 +b (C->64), ReLU, conv 3x3 p1 +b (64->64), ReLU; add the time embedding broadcast over H x W;
// GAP; FC(64->classes). No down-sampling. Default PyTorch initialisation. The embedding is added
// after the GAP instead of before it (the same function: the mean of x + c is mean(x) + c).
// The time embedding is registered first, as in LEMUR (it is also the first thing forward
// computes), so parameters().front() is its first Linear's weight.
// Params read: none (LEMUR's prm has only lr and momentum).
// Params at 3x32x32, 10 classes: 43,658.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

constexpr int64_t kDiffuserHidden = 64;
constexpr int64_t kDiffuserTimesteps = 100;
constexpr double kDiffuserBetaStart = 1e-5;
constexpr double kDiffuserBetaEnd = 0.01;

class DiffuserImpl : public ClassifierImpl {
 public:
  explicit DiffuserImpl(const ModelOptions& o) {
    time_fc1 = register_module("time_fc1", torch::nn::Linear(1, kDiffuserHidden));
    time_fc2 = register_module("time_fc2", torch::nn::Linear(kDiffuserHidden, kDiffuserHidden));
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, kDiffuserHidden, 3).padding(1)));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(
                     torch::nn::Conv2dOptions(kDiffuserHidden, kDiffuserHidden, 3).padding(1)));
    fc = register_module("fc", torch::nn::Linear(kDiffuserHidden, o.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    const int64_t batch = x.size(0);
    torch::Tensor t;
    if (is_training()) {
      t = RandInt(kDiffuserTimesteps, {batch}, x.options().dtype(torch::kLong));
      // The schedule is 100 floats, rebuilt on x's device (LEMUR keeps it as a plain tensor).
      torch::Tensor beta =
          torch::linspace(kDiffuserBetaStart, kDiffuserBetaEnd, kDiffuserTimesteps, x.options());
      torch::Tensor alpha_t = torch::cumprod(1.0 - beta, 0).index_select(0, t).view({-1, 1, 1, 1});
      x = torch::sqrt(alpha_t) * x + torch::sqrt(1.0 - alpha_t) * RandnLike(x);
    } else {
      t = torch::zeros({batch}, x.options());
    }
    torch::Tensor t_emb = time_fc2(torch::relu(time_fc1(t.to(x.scalar_type()).unsqueeze(-1))));
    x = torch::relu(conv1(x));
    x = torch::relu(conv2(x));
    // LEMUR adds the embedding to every pixel and then averages; averaging first and adding after
    // is the same function without the full-resolution add.
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1) + t_emb;
    return fc(x);
  }

 private:
  torch::nn::Linear time_fc1{nullptr}, time_fc2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("Diffuser", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<DiffuserImpl>(o);
});

}  // namespace quartet::worker::models
