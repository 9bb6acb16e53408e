// Mixup on a batch (Zhang et al. 2018): x' = lam x + (1 - lam) x[partner], loss
// lam CE(f(x'), y) + (1 - lam) CE(f(x'), y[partner]).
#ifndef QUARTET_WORKER_TRAIN_MIXUP_H_
#define QUARTET_WORKER_TRAIN_MIXUP_H_

#include <torch/torch.h>

namespace quartet::worker::train {

struct MixedBatch {
  torch::Tensor x;    // mixed inputs
  torch::Tensor y_a;  // labels of x
  torch::Tensor y_b;  // labels of the partners
  double lam = 1.0;
};

// Mixes `x` with x[partner] (partner: a permutation of the batch, int64 on x's device). lam >= 1
// returns the batch unchanged (y_b = y_a).
MixedBatch Mixup(const torch::Tensor& x, const torch::Tensor& y, double lam,
                 const torch::Tensor& partner);

// lam CE(logits, y_a) + (1 - lam) CE(logits, y_b), both with label smoothing, mean over the batch.
torch::Tensor MixupLoss(const torch::Tensor& logits, const MixedBatch& batch,
                        double label_smoothing);

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_MIXUP_H_
