// Per-epoch metrics of layer-wise MoE networks and of gradient noise, kept out of the trainer:
// each layer's routing on the test split (LayerRouting) and per-step gradient norms by parameter
// group (GradientNormStats, shared/research/moe.md section 9 (C)).
//
// Not thread-safe.
#ifndef QUARTET_WORKER_TRAIN_LAYER_METRICS_H_
#define QUARTET_WORKER_TRAIN_LAYER_METRICS_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "quartet/v1/spec.pb.h"
#include "worker/moe/moe4.h"
#include "worker/moe/network.h"

namespace quartet::worker::train {

// Routing statistics of every MoE layer over an evaluation.
class LayerRoutingTally {
 public:
  void Reset() { layers_.clear(); }
  void Add(const std::vector<moe::LayerRoute>& layers);
  bool empty() const { return layers_.empty(); }
  // Mean active experts per token, per layer.
  std::vector<double> MeanActive() const;
  // One LayerRouting per layer; dense: load is the mean probability.
  void Fill(bool dense, google::protobuf::RepeatedPtrField<quartet::v1::LayerRouting>* out) const;

 private:
  std::vector<moe::RoutingStats> layers_;
};

// Global gradient norms per optimiser step, by parameter group and over all of them ("all").
class GradientNormTally {
 public:
  explicit GradientNormTally(const std::vector<moe::ParameterGroup>& groups);
  // Records the current gradients (call after backward, before clipping).
  void Record();
  // Appends this epoch's statistics and starts the next epoch.
  void FillAndReset(google::protobuf::RepeatedPtrField<quartet::v1::GradientNormStats>* out);

 private:
  struct Group {
    std::string name;
    std::vector<torch::Tensor> parameters;
    int steps = 0;
    double sum = 0, sum_squares = 0;
  };
  static void Add(Group& g, double squared_norm);
  std::vector<Group> groups_;
};

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_LAYER_METRICS_H_
