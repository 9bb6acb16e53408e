#include "worker/train/mixup.h"

namespace quartet::worker::train {

namespace F = torch::nn::functional;

MixedBatch Mixup(const torch::Tensor& x, const torch::Tensor& y, double lam,
                 const torch::Tensor& partner) {
  MixedBatch out;
  out.lam = lam;
  out.y_a = y;
  if (lam >= 1.0) {
    out.x = x;
    out.y_b = y;
    return out;
  }
  out.x = x * lam + x.index_select(0, partner) * (1.0 - lam);
  out.y_b = y.index_select(0, partner);
  return out;
}

torch::Tensor MixupLoss(const torch::Tensor& logits, const MixedBatch& batch,
                        double label_smoothing) {
  const auto opts = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing);
  const torch::Tensor l = logits.to(torch::kFloat32);
  torch::Tensor loss = F::cross_entropy(l, batch.y_a, opts);
  if (batch.lam < 1.0) {
    loss = loss * batch.lam + F::cross_entropy(l, batch.y_b, opts) * (1.0 - batch.lam);
  }
  return loss;
}

}  // namespace quartet::worker::train
