// ARCHITECTURE_HEADS: one backbone family from the zoo plus a classifier head (the heads study,
// shared/research/moe.md sections 0.2, 2 and 3). The head kinds and their formulas are documented
// on quartet.v1.HeadKind; in short, with D the backbone's feature width, H = head_hidden (default
// D) and E experts:
//   DENSE           Linear(D, H), ReLU, Dropout, Linear(H, C) on the pooled features.
//   SOFT_MOE        E experts Linear(D, H/E), ReLU, Dropout, Linear(H/E, C), all run, mixed by
//                   softmax(Linear(Dropout(h)) dropped out / T); + w_kl * KL(u || mean_x p(x)).
//   SPARSE_MOE      the same experts; noisy top-k gate on per-sample z-scored logits (noise
//                   N(0,1) * (softplus(W_noise h) + floor), training only); only the chosen experts
//                   run, weighted by softmax over the chosen logits / T; + w_imp * CV^2(sum_x p) +
//                   w_load * CV^2(load), load = Shazeer's smooth estimator sum_x P(x, e) while the
//                   noise is on, and sum_x p(x) without it.
//   HARD_MOE        SPARSE_MOE with k = 1.
//   SLOTS_SOFT_MOE  Puigcerver's Soft MoE over the backbone map's h*w tokens (per image): E experts
//                   of S slots, MLP D -> H/(2E) -> D each (so its parameters match DENSE's),
//                   tokens pooled, then Linear(D, C). Routing statistics: the share of each
//                   expert's slots in the combine weights, averaged over tokens. No balance loss.
// Backbones that implement models::FeatureBackbone (ResNet) give their feature map; any other
// family is built with D outputs instead of C and its output is the (1x1) feature map, which
// SLOTS_SOFT_MOE refuses (it needs spatial tokens).
//
// Not thread-safe (torch::nn::Module).
#ifndef QUARTET_WORKER_MOE_HEADS_H_
#define QUARTET_WORKER_MOE_HEADS_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "worker/models/classifier.h"
#include "worker/moe/moe4.h"

namespace quartet::worker::moe {

struct HeadOptions {
  common::HeadKind kind = common::HeadKind::kDense;
  // Feature width D and classes C.
  int64_t in_features = 512;
  int64_t num_classes = 10;
  // H; 0 means in_features.
  int64_t hidden = 0;
  int64_t experts = 8;
  // SPARSE_MOE only (HARD_MOE uses 1).
  int64_t top_k = 2;
  double dropout = 0.1;
  double temperature = 1.0;
  double kl_weight = 0.05;
  double importance_weight = 0.2;
  double load_weight = 0.2;
  double noise_floor = 0.3;
  int64_t slots_per_expert = 2;
};

// A classifier head over a feature map (B, D, h, w). Forward's balance_loss is weighted.
class HeadImpl : public torch::nn::Module {
 public:
  virtual MoEOutput Forward(const torch::Tensor& features) = 0;
  // Router parameters (empty for DENSE); the rest of the head's parameters are "experts".
  virtual std::vector<torch::Tensor> RouterParameters() { return {}; }
  virtual int64_t num_experts() const = 0;
  // Sparse heads: run every expert on every sample with zero weight where not chosen (same eval
  // outputs, no data-dependent shapes; see moe::Network::SetExportMode). No-op for the others.
  virtual void SetDenseDispatch(bool /*on*/) {}
};

// INVALID_ARGUMENT for options out of range. Seeds nothing: call under the caller's seed.
absl::StatusOr<std::shared_ptr<HeadImpl>> MakeHead(const HeadOptions& options);

struct HeadsOptions {
  // The backbone's family (or variant) name.
  std::string backbone;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
  int64_t input_size = 32;
  // The backbone's own dropout (ModelOptions::dropout), unused by backbones served by features.
  double backbone_dropout = 0.2;
  bool small_input_stem = true;
  uint64_t seed = 0;
  HeadOptions head;
  // Feature width D for backbones without a feature map (their output width).
  int64_t fallback_features = 512;
};

class HeadsNetImpl : public torch::nn::Module {
 public:
  HeadsNetImpl(const HeadsOptions& options, models::ClassifierPtr backbone,
               std::shared_ptr<HeadImpl> head);

  // Errors: NOT_FOUND / INVALID_ARGUMENT from the zoo; INVALID_ARGUMENT for bad head options or
  // SLOTS_SOFT_MOE over a backbone without spatial tokens.
  static absl::StatusOr<std::shared_ptr<HeadsNetImpl>> Build(const HeadsOptions& options);

  MoEOutput Forward(const torch::Tensor& x);
  torch::Tensor forward(torch::Tensor x) { return Forward(x).logits; }
  // The backbone's feature map (B, D, h, w).
  torch::Tensor Features(const torch::Tensor& x);

  const models::ClassifierPtr& backbone() const { return backbone_; }
  const std::shared_ptr<HeadImpl>& head() const { return head_; }
  const HeadsOptions& options() const { return options_; }

 private:
  HeadsOptions options_;
  models::ClassifierPtr backbone_;
  std::shared_ptr<HeadImpl> head_;
  // Whether the backbone gives a feature map (else its output is the pooled feature).
  bool has_features_ = false;
  // The data has 1 channel and the backbone needs 3.
  bool replicate_ = false;
};
TORCH_MODULE(HeadsNet);

}  // namespace quartet::worker::moe

#endif  // QUARTET_WORKER_MOE_HEADS_H_
