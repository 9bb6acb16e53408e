// ARCHITECTURE_DYNAMOE: a CNN of L stages, each a shared 3x3 convolution followed by a residual
// MoE layer whose E_l experts come from a layer-wise schedule, and per-token routing whose number
// of active experts varies per token (ROUTER_DYNAMIC), against static top-k and dense baselines.
// The schedules, threshold rules and balance losses are documented on quartet.v1.ExpertSchedule,
// DynamicThreshold and BalanceLoss; the design is ours (shared/research/moe.md section 4.5), the
// DynaMoE paper's exact rules could not be read.
//
//   stem      conv3x3 (C_in -> D, stride 2), BN, ReLU
//   stage l   conv3x3 (D -> D, stride 2 at l = L / 2 when L >= 2), BN, ReLU; then
//             x + MoE_l(BN(x))
//   head      global average pool, dropout, Linear(D, classes)
//
// MoE_l with token routing: the tokens are the map's h * w positions (N = B * h * w rows of D);
// gate Linear(D, E_l), p = softmax; experts are MLPs D -> H -> D (1x1 convolutions, GELU). With
// sample routing the gate sees the pooled map and experts are conv3x3-ReLU-conv3x3 blocks D -> D on
// the whole map. Only the experts a token activates run on it: the tokens of each expert are
// gathered, the expert runs on them, and its output is scattered back weighted by the token's
// renormalised gate probability (DispatchSparse). ROUTER_DENSE runs every expert on every token.
//
// Not thread-safe (torch::nn::Module).
#ifndef QUARTET_WORKER_MOE_DYNAMOE_H_
#define QUARTET_WORKER_MOE_DYNAMOE_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "worker/models/registry.h"
#include "worker/moe/moe4.h"

namespace quartet::worker::moe {

// E_l for l = 0..layers-1 (quartet.v1.ExpertSchedule): every value >= 1; with capacity_fair the
// sum is round(layers * (min + max) / 2) for every schedule.
std::vector<int> ScheduleExperts(common::ExpertSchedule schedule, int layers, int min_experts,
                                 int max_experts, int wave_cycles, bool capacity_fair);

// s(t) of a schedule, in [0, 1].
double ScheduleShape(common::ExpertSchedule schedule, double t, int wave_cycles);

struct TokenRouterOptions {
  common::RouterKind kind = common::RouterKind::kDynamic;
  // TOP_K: experts per token (clipped to E).
  int top_k = 2;
  // DYNAMIC: q in (0, 100), the rule, and k_max (0 means E).
  double percentile = 50;
  common::DynamicThreshold threshold = common::DynamicThreshold::kCumulativeMass;
  int max_active = 0;
};

// One layer's routing of N tokens over E experts.
struct TokenRouting {
  torch::Tensor probs;    // (N, E) gate probabilities
  torch::Tensor active;   // (N, E) bool: experts that run on each token
  torch::Tensor weights;  // (N, E) combine weights: p renormalised over the active set, 0 off it
};

// ROUTER_DYNAMIC's active count per token (N,), int64 in [1, k_max], from probabilities (N, E).
torch::Tensor DynamicActiveCount(const torch::Tensor& probs, double percentile,
                                 common::DynamicThreshold rule, int k_max);

// Routing from gate logits (N, E). DENSE: every expert, weights p.
TokenRouting RouteTokens(const torch::Tensor& logits, const TokenRouterOptions& options);

// out[n] = sum over active (n, e) of weights[n, e] * expert_e(x[n]), running each expert only on
// its tokens. Experts map (n, ...) to the same shape.
torch::Tensor DispatchSparse(const torch::Tensor& x, const TokenRouting& routing,
                             const std::vector<torch::nn::Sequential>& experts);
// The same sum computed by running every expert on every token (the reference of tests, and the
// cost model of "every expert dense").
torch::Tensor DispatchDense(const torch::Tensor& x, const TokenRouting& routing,
                            const std::vector<torch::nn::Sequential>& experts);

// The weighted-free balance loss of one layer's routing (0 for kNone).
torch::Tensor LayerBalanceLoss(common::BalanceLossKind kind, const TokenRouting& routing);

struct DynaMoEOptions {
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  int64_t width = 32;
  int64_t expert_hidden = 64;
  // E_l per layer (ScheduleExperts).
  std::vector<int> layer_experts = {4, 4, 4, 4};
  bool token_routing = true;
  TokenRouterOptions router;
  common::BalanceLossKind balance = common::BalanceLossKind::kNone;
  double dropout = 0.2;
  // Run every expert on every token and mask (the dense cost of the same routing); a benchmark
  // switch, not a recipe field.
  bool dense_execution = false;
};

class DynaMoELayerImpl : public torch::nn::Module {
 public:
  DynaMoELayerImpl(const DynaMoEOptions& options, int experts);

  struct Output {
    torch::Tensor y;
    LayerRoute route;
    // Unweighted LayerBalanceLoss.
    torch::Tensor balance_loss;
  };
  Output Forward(const torch::Tensor& x);

  std::vector<torch::Tensor> RouterParameters() const { return gate_->parameters(); }
  std::vector<torch::Tensor> ExpertParameters() const;
  int num_experts() const { return static_cast<int>(experts_.size()); }
  // DynaMoEOptions::dense_execution for this layer (moe::Network::SetExportMode).
  void set_dense_execution(bool on) { options_.dense_execution = on; }
  // Parameters of one expert, and of the gate.
  int64_t ExpertParameterCount() const;
  int64_t GateParameterCount() const;

 private:
  DynaMoEOptions options_;
  torch::nn::BatchNorm2d norm_{nullptr};
  torch::nn::Linear gate_{nullptr};
  std::vector<torch::nn::Sequential> experts_;
};
TORCH_MODULE(DynaMoELayer);

class DynaMoENetImpl : public torch::nn::Module {
 public:
  explicit DynaMoENetImpl(const DynaMoEOptions& options);

  // logits; probs/active: layer 0's routing averaged over each sample's tokens (B, E_0); layers:
  // every layer's per-token routing; balance_loss: the mean of the layers' unweighted losses.
  MoEOutput Forward(const torch::Tensor& x);
  torch::Tensor forward(torch::Tensor x) { return Forward(x).logits; }

  const std::vector<DynaMoELayer>& layers() const { return layers_; }
  const DynaMoEOptions& options() const { return options_; }
  // Every layer's dense_execution (their own options; options() keeps the built value).
  void SetDenseExecution(bool on) {
    for (auto& l : layers_) l->set_dense_execution(on);
  }
  // Parameters outside the MoE layers' gates and experts.
  std::vector<torch::Tensor> SharedParameters();
  // Parameters a token uses on average given each layer's mean active experts.
  double ActiveParametersPerToken(const std::vector<double>& mean_active) const;

 private:
  DynaMoEOptions options_;
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  std::vector<DynaMoELayer> layers_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(DynaMoENet);

// Options from a resolved recipe (ARCHITECTURE_DYNAMOE); INVALID_ARGUMENT for a router it does
// not take.
absl::StatusOr<DynaMoEOptions> DynaMoEOptionsFrom(const common::Recipe& recipe, int64_t in_channels,
                                                  int64_t num_classes);

}  // namespace quartet::worker::moe

#endif  // QUARTET_WORKER_MOE_DYNAMOE_H_
