// The MoE4: whole-network experts from the family zoo mixed by a small convolutional gating
// network (shared/design/ARCHITECTURE.md "Training").
//
// Gate: conv3x3 s2 -> 64, BN, ReLU, conv3x3 s2 -> 128, BN, ReLU, global average pool, MLP
// 128-64-E with dropout 0.1. Its logits are divided by a learnable temperature (init 2.0, used
// clamped to [0.5, 5]); in training, Gaussian noise (std 0.1) is added to the tempered logits.
// p = softmax.
//
// Routers:
//   DENSE  every expert runs on every sample; y = sum_e p_e * f_e(x).
//   TOP_K  each sample runs only its k most probable experts: the samples routed to an expert are
//          gathered, the expert runs on that sub-batch, its output is scattered back weighted by
//          p renormalised over the chosen experts.
//   TOP_P  each sample runs the smallest set of most probable experts whose probability reaches p
//          (the expert that crosses p included), between 1 and max_active experts, weighted by p
//          renormalised over the set.
// Balance loss (on the live gate output, so it has a gradient): importance CV^2 for DENSE
// (CV^2 of sum_x p(x)), Switch-style for TOP_K/TOP_P (E * sum_e f_e * P_e, f = fraction of
// assignments, P = mean probability).
//
// Expert-parallel execution (MoE4Options::parallel_experts, for CPU, used when the intra-op threads
// are 2 to E + 1): the gate and the experts run concurrently on the intra-op thread team, each
// single-threaded inside, longest first by their measured times (dynamic list scheduling). Their
// backward passes run concurrently too: in training, each expert's output enters the mixture as a
// detached leaf, and Backward() first back-propagates the loss to the leaves and the gate, then
// each expert's output with its leaf's gradient. On a few cores this beats running each expert on
// all threads, whose kernels scale poorly at small batches. Every expert and the gate draw their
// random numbers (dropout, stochastic depth, noise) from their own generators
// (models::ScopedGenerator), so a seeded run gives the same result whatever the schedule.
//
// Not thread-safe (a torch::nn::Module).
#ifndef QUARTET_WORKER_MOE_MOE4_H_
#define QUARTET_WORKER_MOE_MOE4_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "worker/models/classifier.h"

namespace quartet::worker::moe {

class GateImpl : public torch::nn::Module {
 public:
  GateImpl(int64_t in_channels, int64_t num_experts, double noise_std = 0.1,
           double initial_temperature = 2.0);

  // Logits after temperature and (in training) noise: (B, E).
  torch::Tensor forward(torch::Tensor x);
  // The temperature as used (clamped to [kMinTemperature, kMaxTemperature]).
  torch::Tensor Temperature() const;
  // Clamps the raw parameter into the range in place (after optimiser steps), so it stays where
  // it receives gradient.
  void ClampTemperature();

  static constexpr double kMinTemperature = 0.5;
  static constexpr double kMaxTemperature = 5.0;

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::Tensor temperature;
  // Dropout before fc2 (training only).
  double dropout = 0.1;

 private:
  double noise_std_;
};
TORCH_MODULE(Gate);

struct RouterOptions {
  common::RouterKind kind = common::RouterKind::kDense;
  int top_k = 2;
  double top_p = 0.5;
  // Upper bound on experts per sample for TOP_P; 0 means all.
  int max_active = 0;
};

// One forward pass.
// One MoE layer's routing of its tokens (ARCHITECTURE_DYNAMOE).
struct LayerRoute {
  torch::Tensor probs;   // (N, E_l) gate probabilities
  torch::Tensor active;  // (N, E_l) bool: experts that ran on each token
};

struct MoEOutput {
  torch::Tensor logits;        // (B, classes)
  torch::Tensor probs;         // (B, E) gate probabilities
  torch::Tensor active;        // (B, E) experts that ran on each sample (bool, or a share)
  torch::Tensor balance_loss;  // scalar, differentiable w.r.t. the gate
  // Per-layer routing of layer-wise MoE networks; empty otherwise.
  std::vector<LayerRoute> layers;
};

// Routing statistics of one or more batches, accumulated on the host.
struct RoutingStats {
  std::vector<double> prob_sum;    // per expert, sum of p over samples
  std::vector<double> assign_sum;  // per expert, samples it ran on
  double entropy_sum = 0;          // sum over samples of -sum p log p
  double active_sum = 0;           // sum over samples of experts that ran
  // active_histogram[n - 1]: samples that ran n experts (whole counts only).
  std::vector<double> active_histogram;
  int64_t samples = 0;

  void Add(const MoEOutput& out) { Add(out.probs, out.active); }
  // probs (N, E); active (N, E), bool or shares.
  void Add(const torch::Tensor& probs, const torch::Tensor& active);
  // Shares of active_histogram.
  std::vector<double> ActiveShares() const;
  // Fractions of routed samples per expert (DENSE: mean probability).
  std::vector<double> Load(bool dense) const;
  // Coefficient of variation (population std / mean) of Load().
  double LoadCv(bool dense) const;
  // Mean per-sample routing entropy / log(E), in [0, 1].
  double NormalizedEntropy() const;
  double MeanActive() const;
};

struct MoE4Options {
  // Model (family or variant) names of the experts.
  std::vector<std::string> experts;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
  int64_t input_size = 32;
  double dropout = 0.2;
  uint64_t seed = 0;
  RouterOptions router;
  // Run the gate and the experts concurrently (CPU only; see the header comment). Training code
  // must then call Backward(loss) instead of loss.backward().
  bool parallel_experts = false;
};

class MoE4Impl : public torch::nn::Module {
 public:
  // Mixes the given experts (tests pass their own); Build() makes them from the zoo.
  MoE4Impl(const MoE4Options& options, std::vector<models::ClassifierPtr> experts);

  // INVALID_ARGUMENT for fewer than 2 experts or bad router options; NOT_FOUND / INVALID_ARGUMENT
  // from the zoo for unknown families or sizes below a family's minimum.
  static absl::StatusOr<std::shared_ptr<MoE4Impl>> Build(const MoE4Options& options);

  MoEOutput Forward(const torch::Tensor& x);
  torch::Tensor forward(torch::Tensor x) { return Forward(x).logits; }
  // loss.backward() for a loss computed from the last Forward(), including the experts' deferred
  // backward passes when they run in parallel. Use it in place of loss.backward().
  void Backward(const torch::Tensor& loss);

  int64_t num_experts() const { return static_cast<int64_t>(experts_.size()); }
  const std::vector<models::ClassifierPtr>& experts() const { return experts_; }
  Gate& gate() { return gate_; }
  const MoE4Options& options() const { return options_; }
  // Parameters of the experts (the gate's are gate()->parameters()).
  std::vector<torch::Tensor> ExpertParameters() const;
  // Whether the last Forward() ran its tasks concurrently.
  bool ran_parallel() const { return ran_parallel_; }
  // The experts' generators, then the gate's (shared handles: checkpoints save and restore their
  // states).
  const std::vector<at::Generator>& generators() const { return generators_; }
  // TOP_K / TOP_P: run every expert on every sample, weighted by the routing weights (zero where
  // an expert is not chosen), instead of each expert on its own samples. Same outputs in eval
  // mode, and no data-dependent shapes (TorchScript export traces it).
  void set_dense_dispatch(bool on) { dense_dispatch_ = on; }

 private:
  // Runs the expert on x with its generator; in parallel training, returns a detached leaf and
  // keeps the real output for Backward().
  torch::Tensor RunExpert(size_t e, const torch::Tensor& x);
  torch::Tensor RunGate(const torch::Tensor& x);
  // Sparse routing: runs each expert on the samples in `active` (B, E) and mixes with `weights`.
  torch::Tensor MixSparse(const torch::Tensor& x, const torch::Tensor& active,
                          const torch::Tensor& weights);
  // Runs task(i) for each i in `tasks`, concurrently when parallel, longest first by `cost_ms`
  // (updated with each task's wall time).
  void RunTasks(const std::vector<size_t>& tasks, std::vector<double>* cost_ms,
                const std::function<void(size_t)>& task);
  bool Parallel() const;

  // An expert output whose backward pass is deferred to Backward().
  struct Deferred {
    torch::Tensor output;  // with the expert's graph
    torch::Tensor leaf;    // what the mixture used
  };

  MoE4Options options_;
  std::vector<models::ClassifierPtr> experts_;
  // Experts that need 3 channels when the data has 1.
  std::vector<bool> replicate_;
  Gate gate_{nullptr};
  // One generator per expert, then the gate's.
  std::vector<at::Generator> generators_;
  // Measured forward and backward wall times per task (experts, then the gate), in ms.
  std::vector<double> forward_ms_, backward_ms_;
  std::vector<Deferred> deferred_;  // indexed by expert; undefined outputs where none
  bool ran_parallel_ = false;
  bool dense_dispatch_ = false;
};
TORCH_MODULE(MoE4);

// CV^2 of a vector (population variance / mean^2, 0 for one element).
torch::Tensor CvSquared(const torch::Tensor& v);

}  // namespace quartet::worker::moe

#endif  // QUARTET_WORKER_MOE_MOE4_H_
