// What the trainer and the analyses drive: one candidate's network, whatever its architecture
// (MoE4, HEADS or DYNAMOE), behind one interface. BuildNetwork() makes it from the resolved recipe.
//
// Not thread-safe (wraps a torch::nn::Module).
#ifndef QUARTET_WORKER_MOE_NETWORK_H_
#define QUARTET_WORKER_MOE_NETWORK_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "worker/moe/moe4.h"

namespace quartet::worker::moe {

// A named set of parameters: an optimiser group, a gradient-variance group.
struct ParameterGroup {
  std::string name;
  std::vector<torch::Tensor> parameters;
  // Whether it is a router (gets the recipe's gate learning-rate and weight-decay multipliers).
  bool gate = false;
};

class Network {
 public:
  virtual ~Network() = default;

  // One forward pass. balance_loss is the auxiliary loss to add to the task loss, weights applied
  // (MoE4: recipe.balance_loss_weight x its balance loss; heads: their own weighted terms; 0 for
  // networks without one). probs/active describe the routing (a dense head: one expert, always).
  virtual MoEOutput Forward(const torch::Tensor& x) = 0;
  // loss.backward() for a loss computed from the last Forward() (MoE4's deferred expert passes
  // included).
  virtual void Backward(const torch::Tensor& loss) { loss.backward(); }
  // The module, for train()/eval(), to(), parameters() and buffers().
  virtual torch::nn::Module& module() = 0;
  // Disjoint groups that together hold every trainable parameter, in a fixed order.
  virtual std::vector<ParameterGroup> ParameterGroups() = 0;
  // Called after every optimiser step (MoE4 clamps its gate temperature).
  virtual void AfterStep() {}
  // The gate temperature as used (1 where there is no learnable one).
  virtual double GateTemperature() { return 1.0; }
  // Whether expert load is the mean gate probability (dense routing) rather than the fraction of
  // samples an expert ran on.
  virtual bool DenseLoad() const = 0;
  // "MOE4 dense", "HEADS ResNet + SPARSE_MOE", "DYNAMOE DESCENDING dynamic [8,6,4,2]".
  virtual std::string Describe() const = 0;
  // Layer-wise MoE networks: parameters one token uses on average given each layer's mean active
  // experts, and E_l per layer. 0 and empty for the others.
  virtual double ActiveParametersPerToken(const std::vector<double>& /*mean_active*/) const {
    return 0;
  }
  virtual std::vector<int> LayerExperts() const { return {}; }
  // Random generators of the network's own, beyond LibTorch's default one (shared handles, in a
  // fixed order); a checkpoint saves their states. Empty where the network draws from the default.
  virtual std::vector<at::Generator> Generators() const { return {}; }
  // Export mode: routers that run experts on per-sample subsets run every expert on every sample
  // instead, weighted by the routing weights (zero where not chosen). Eval outputs stay the same up
  // to floating-point summation order; shapes no longer depend on the data, so a trace of the
  // forward pass holds for every input. Off after BuildNetwork.
  virtual void SetExportMode(bool /*on*/) {}
};

struct NetworkOptions {
  // The combination's families: MoE4 experts, or the 1 backbone of HEADS.
  std::vector<std::string> families;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
  int64_t input_size = 32;
  uint64_t seed = 0;
  // MoE4's expert-parallel CPU path (MoE4Options::parallel_experts).
  bool parallel_experts = false;
};

// Builds the recipe's architecture. INVALID_ARGUMENT for a combination that does not fit it (HEADS
// needs exactly 1 family, MoE4 2 to 8, DYNAMOE none) or bad head settings; NOT_FOUND /
// INVALID_ARGUMENT from the zoo. The caller classifies errors as BUILD.
absl::StatusOr<std::unique_ptr<Network>> BuildNetwork(const common::Recipe& recipe,
                                                      const NetworkOptions& options);

}  // namespace quartet::worker::moe

#endif  // QUARTET_WORKER_MOE_NETWORK_H_
