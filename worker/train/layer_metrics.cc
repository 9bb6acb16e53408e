#include "worker/train/layer_metrics.h"

#include <algorithm>
#include <cmath>

namespace quartet::worker::train {

void LayerRoutingTally::Add(const std::vector<moe::LayerRoute>& layers) {
  if (layers_.size() < layers.size()) layers_.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) layers_[l].Add(layers[l].probs, layers[l].active);
}

std::vector<double> LayerRoutingTally::MeanActive() const {
  std::vector<double> out;
  for (const auto& s : layers_) out.push_back(s.MeanActive());
  return out;
}

void LayerRoutingTally::Fill(
    bool dense, google::protobuf::RepeatedPtrField<quartet::v1::LayerRouting>* out) const {
  for (size_t l = 0; l < layers_.size(); ++l) {
    const moe::RoutingStats& s = layers_[l];
    quartet::v1::LayerRouting* r = out->Add();
    r->set_layer(static_cast<int32_t>(l));
    r->set_experts(static_cast<int32_t>(s.prob_sum.size()));
    for (double x : s.Load(dense)) r->add_expert_load(x);
    r->set_load_cv(s.LoadCv(dense));
    r->set_mean_active_experts(s.MeanActive());
    for (double x : s.ActiveShares()) r->add_active_histogram(x);
    r->set_routing_entropy(s.NormalizedEntropy());
    r->set_tokens(s.samples);
  }
}

GradientNormTally::GradientNormTally(const std::vector<moe::ParameterGroup>& groups) {
  Group all{"all", {}};
  for (const auto& g : groups) {
    if (g.parameters.empty()) continue;
    groups_.push_back({g.name, g.parameters});
    all.parameters.insert(all.parameters.end(), g.parameters.begin(), g.parameters.end());
  }
  groups_.push_back(std::move(all));
}

void GradientNormTally::Record() {
  torch::NoGradGuard no_grad;
  // Squared norms summed on the device, then one host read for every group together.
  std::vector<torch::Tensor> squares;  // of the groups with gradients
  std::vector<size_t> with_gradients;
  for (size_t i = 0; i + 1 < groups_.size(); ++i) {
    torch::Tensor acc;
    for (const auto& p : groups_[i].parameters) {
      if (!p.grad().defined()) continue;
      const torch::Tensor s = p.grad().to(torch::kFloat32).pow(2).sum();
      acc = acc.defined() ? acc + s : s;
    }
    if (!acc.defined()) continue;
    squares.push_back(acc);
    with_gradients.push_back(i);
  }
  std::vector<double> sq(groups_.size() - 1, 0.0);
  if (!squares.empty()) {
    const torch::Tensor host = torch::stack(squares).to(torch::kCPU, torch::kDouble);
    for (size_t k = 0; k < with_gradients.size(); ++k) {
      sq[with_gradients[k]] = host[static_cast<int64_t>(k)].item<double>();
    }
  }
  double total = 0;
  for (size_t i = 0; i + 1 < groups_.size(); ++i) {
    total += sq[i];
    Add(groups_[i], sq[i]);
  }
  Add(groups_.back(), total);
}

void GradientNormTally::Add(Group& g, double squared_norm) {
  g.steps++;
  g.sum += std::sqrt(squared_norm);
  g.sum_squares += squared_norm;
}

void GradientNormTally::FillAndReset(
    google::protobuf::RepeatedPtrField<quartet::v1::GradientNormStats>* out) {
  for (Group& g : groups_) {
    if (g.steps == 0) continue;
    quartet::v1::GradientNormStats* s = out->Add();
    const double mean = g.sum / g.steps;
    const double std = std::sqrt(std::max(0.0, g.sum_squares / g.steps - mean * mean));
    s->set_group(g.name);
    s->set_steps(g.steps);
    s->set_mean(mean);
    s->set_std(std);
    s->set_cv(mean > 0 ? std / mean : 0);
    g.steps = 0;
    g.sum = g.sum_squares = 0;
  }
}

}  // namespace quartet::worker::train
