#include "worker/moe/dynamoe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace quartet::worker::moe {
namespace {

namespace F = torch::nn::functional;

constexpr double kPi = 3.14159265358979323846;
// Largest E_l a capacity-fair rescaling may produce (the recipe's bound on E_max).
constexpr int kMaxLayerExperts = 64;

torch::nn::Sequential ConvBnRelu(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Sequential(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)),
      torch::nn::BatchNorm2d(out), torch::nn::ReLU());
}

// Token experts: D -> H -> D, GELU (a 1x1-convolution MLP on each position).
torch::nn::Sequential TokenExpert(int64_t width, int64_t hidden) {
  return torch::nn::Sequential(torch::nn::Linear(width, hidden), torch::nn::GELU(),
                               torch::nn::Linear(hidden, width));
}

// Sample experts: conv3x3-ReLU-conv3x3 D -> D on the whole map.
torch::nn::Sequential SampleExpert(int64_t width) {
  return torch::nn::Sequential(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(width, width, 3).padding(1)), torch::nn::ReLU(),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(width, width, 3).padding(1)));
}

int64_t CountOf(const std::vector<torch::Tensor>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}

// Broadcasts per-row weights (n) against rows of shape (n, ...).
torch::Tensor RowWeights(const torch::Tensor& w, const torch::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = w.size(0);
  return w.reshape(shape);
}

// The capacity-fair rescaling: E_l proportional to raw_l with sum `target`. Layers the scaling
// would push past kMaxLayerExperts are held there and the rest is shared among the others (water
// filling; target <= L * kMaxLayerExperts always holds). Largest remainders round up (ties to the
// larger raw value, then to the earlier layer); every E_l >= 1.
std::vector<int> RescaleToTotal(const std::vector<double>& raw, int target) {
  const int n = static_cast<int>(raw.size());
  std::vector<bool> capped(n, false);
  std::vector<double> scaled(n, kMaxLayerExperts);
  for (bool changed = true; changed;) {
    changed = false;
    double free_target = target, free_sum = 0;
    int free_layers = 0;
    for (int l = 0; l < n; ++l) {
      if (capped[l]) {
        free_target -= kMaxLayerExperts;
      } else {
        free_sum += raw[l];
        ++free_layers;
      }
    }
    for (int l = 0; l < n; ++l) {
      if (capped[l]) continue;
      scaled[l] = free_sum > 0 ? raw[l] * free_target / free_sum : free_target / free_layers;
      if (scaled[l] > kMaxLayerExperts) capped[l] = changed = true;
    }
  }
  std::vector<int> out(n);
  int assigned = 0;
  for (int l = 0; l < n; ++l) {
    scaled[l] = capped[l] ? kMaxLayerExperts : scaled[l];
    out[l] = static_cast<int>(std::floor(scaled[l]));
    assigned += out[l];
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const double ra = scaled[a] - out[a], rb = scaled[b] - out[b];
    if (std::abs(ra - rb) > 1e-9) return ra > rb;
    return raw[a] > raw[b] + 1e-12;
  });
  for (int i = 0; assigned < target && i < n; ++i, ++assigned) out[order[i]]++;
  // Raise zeros to 1 by taking from the largest layers, keeping the total.
  for (int l = 0; l < n; ++l) {
    while (out[l] < 1) {
      const int donor = static_cast<int>(std::max_element(out.begin(), out.end()) - out.begin());
      if (out[donor] <= 1) break;
      out[donor]--;
      out[l]++;
    }
  }
  return out;
}

}  // namespace

double ScheduleShape(common::ExpertSchedule schedule, double t, int wave_cycles) {
  switch (schedule) {
    case common::ExpertSchedule::kUniform:
      return 0.5;
    case common::ExpertSchedule::kDescending:
      return 1.0 - t;
    case common::ExpertSchedule::kAscending:
      return t;
    case common::ExpertSchedule::kPyramid:
      return 1.0 - std::abs(2.0 * t - 1.0);
    case common::ExpertSchedule::kWave:
      return (1.0 + std::sin(2.0 * kPi * wave_cycles * t - kPi / 2.0)) / 2.0;
    case common::ExpertSchedule::kHourglass:
      return std::abs(2.0 * t - 1.0);
  }
  return 0.5;
}

std::vector<int> ScheduleExperts(common::ExpertSchedule schedule, int layers, int min_experts,
                                 int max_experts, int wave_cycles, bool capacity_fair) {
  std::vector<double> raw(layers);
  for (int l = 0; l < layers; ++l) {
    const double t = layers > 1 ? static_cast<double>(l) / (layers - 1) : 0.0;
    raw[l] = min_experts + (max_experts - min_experts) * ScheduleShape(schedule, t, wave_cycles);
  }
  if (capacity_fair) {
    const int target = static_cast<int>(std::lround(layers * (min_experts + max_experts) / 2.0));
    return RescaleToTotal(raw, target);
  }
  std::vector<int> out(layers);
  for (int l = 0; l < layers; ++l) out[l] = std::max(1, static_cast<int>(std::lround(raw[l])));
  return out;
}

namespace {

// ROUTER_DYNAMIC's count per token from its probabilities sorted in descending order (N, E).
torch::Tensor ActiveCountFromSorted(const torch::Tensor& sorted, double percentile,
                                    common::DynamicThreshold rule, int k_max) {
  torch::NoGradGuard no_grad;
  const int64_t e = sorted.size(1);
  const int64_t cap = k_max > 0 ? std::min<int64_t>(k_max, e) : e;
  torch::Tensor count;
  if (rule == common::DynamicThreshold::kCumulativeMass) {
    // Mass before each expert; the expert that crosses q / 100 is kept.
    const torch::Tensor before = sorted.cumsum(1) - sorted;
    count = before.lt(percentile / 100.0).sum(1);
  } else {
    // The q-th percentile by linear interpolation between the ascending order statistics lo and
    // hi, which sit at descending columns e - 1 - lo and e - 1 - hi.
    const double position = percentile / 100.0 * static_cast<double>(e - 1);
    const int64_t lo = static_cast<int64_t>(std::floor(position));
    const int64_t hi = std::min<int64_t>(lo + 1, e - 1);
    const torch::Tensor a = sorted.select(1, e - 1 - lo), b = sorted.select(1, e - 1 - hi);
    const torch::Tensor tau = (a + (position - static_cast<double>(lo)) * (b - a)).unsqueeze(1);
    count = sorted.ge(tau).sum(1);
  }
  return count.clamp(1, cap).to(torch::kLong);
}

}  // namespace

torch::Tensor DynamicActiveCount(const torch::Tensor& probs, double percentile,
                                 common::DynamicThreshold rule, int k_max) {
  torch::NoGradGuard no_grad;
  return ActiveCountFromSorted(std::get<0>(probs.sort(1, /*descending=*/true)), percentile, rule,
                               k_max);
}

TokenRouting RouteTokens(const torch::Tensor& logits, const TokenRouterOptions& options) {
  TokenRouting r;
  r.probs = torch::softmax(logits.to(torch::kFloat32), 1);
  const int64_t n = r.probs.size(0), e = r.probs.size(1);
  if (options.kind == common::RouterKind::kDense) {
    r.active = torch::ones({n, e}, r.probs.options().dtype(torch::kBool));
    r.weights = r.probs;
    return r;
  }
  {
    torch::NoGradGuard no_grad;
    // One sort serves the dynamic count and the choice of the most probable experts.
    const auto [sorted, order] = r.probs.sort(1, /*descending=*/true);
    const torch::Tensor count = options.kind == common::RouterKind::kTopK
                                    ? torch::full({n}, std::min<int64_t>(options.top_k, e),
                                                  r.probs.options().dtype(torch::kLong))
                                    : ActiveCountFromSorted(sorted, options.percentile,
                                                            options.threshold, options.max_active);
    const torch::Tensor keep_sorted =
        torch::arange(e, count.options()).unsqueeze(0).lt(count.unsqueeze(1));
    r.active =
        torch::zeros({n, e}, r.probs.options().dtype(torch::kBool)).scatter(1, order, keep_sorted);
  }
  const torch::Tensor kept = r.probs * r.active.to(r.probs.scalar_type());
  r.weights = kept / kept.sum(1, /*keepdim=*/true).clamp_min(1e-12);
  return r;
}

torch::Tensor DispatchSparse(const torch::Tensor& x, const TokenRouting& routing,
                             const std::vector<torch::nn::Sequential>& experts) {
  torch::Tensor out = torch::zeros_like(x);
  for (size_t e = 0; e < experts.size(); ++e) {
    const torch::Tensor idx =
        routing.active.select(1, static_cast<int64_t>(e)).nonzero().squeeze(1);
    if (idx.numel() == 0) continue;
    torch::nn::Sequential expert = experts[e];  // a holder copy: forward() is not const
    const torch::Tensor y = expert->forward(x.index_select(0, idx));
    const torch::Tensor w = routing.weights.select(1, static_cast<int64_t>(e)).index_select(0, idx);
    out.index_add_(0, idx, y * RowWeights(w.to(y.scalar_type()), y));
  }
  return out;
}

torch::Tensor DispatchDense(const torch::Tensor& x, const TokenRouting& routing,
                            const std::vector<torch::nn::Sequential>& experts) {
  torch::Tensor out = torch::zeros_like(x);
  for (size_t e = 0; e < experts.size(); ++e) {
    torch::nn::Sequential expert = experts[e];
    const torch::Tensor y = expert->forward(x);
    const torch::Tensor w = routing.weights.select(1, static_cast<int64_t>(e));
    out.add_(y * RowWeights(w.to(y.scalar_type()), y));
  }
  return out;
}

torch::Tensor LayerBalanceLoss(common::BalanceLossKind kind, const TokenRouting& routing) {
  const torch::Tensor& p = routing.probs;
  switch (kind) {
    case common::BalanceLossKind::kNone:
      return torch::zeros({}, p.options());
    case common::BalanceLossKind::kSwitch: {
      const torch::Tensor a = routing.active.to(p.scalar_type());
      const torch::Tensor f = a.sum(0) / a.sum().clamp_min(1);
      return static_cast<double>(p.size(1)) * (f * p.mean(0)).sum();
    }
    case common::BalanceLossKind::kImportanceCv2:
      return CvSquared(p.sum(0));
  }
  return torch::zeros({}, p.options());
}

// ---- the network ------------------------------------------------------------------------------

DynaMoELayerImpl::DynaMoELayerImpl(const DynaMoEOptions& options, int experts) : options_(options) {
  norm_ = register_module("norm", torch::nn::BatchNorm2d(options.width));
  gate_ = register_module("gate", torch::nn::Linear(options.width, experts));
  for (int e = 0; e < experts; ++e) {
    experts_.push_back(register_module(absl::StrCat("expert", e),
                                       options.token_routing
                                           ? TokenExpert(options.width, options.expert_hidden)
                                           : SampleExpert(options.width)));
  }
}

DynaMoELayerImpl::Output DynaMoELayerImpl::Forward(const torch::Tensor& x) {
  const torch::Tensor h = norm_->forward(x);
  const int64_t b = x.size(0), d = x.size(1), hh = x.size(2), ww = x.size(3);
  // Routed units: positions (N = B h w rows of D) or whole samples.
  const torch::Tensor units =
      options_.token_routing ? h.permute({0, 2, 3, 1}).reshape({b * hh * ww, d}) : h;
  const torch::Tensor gate_in = options_.token_routing ? units : h.mean({2, 3});
  TokenRouting routing = RouteTokens(gate_->forward(gate_in), options_.router);
  torch::Tensor y = options_.dense_execution ? DispatchDense(units, routing, experts_)
                                             : DispatchSparse(units, routing, experts_);
  if (options_.token_routing) y = y.view({b, hh, ww, d}).permute({0, 3, 1, 2});
  Output out;
  out.y = x + y;
  out.balance_loss = LayerBalanceLoss(options_.balance, routing);
  out.route = {routing.probs, routing.active};
  return out;
}

std::vector<torch::Tensor> DynaMoELayerImpl::ExpertParameters() const {
  std::vector<torch::Tensor> out;
  for (auto& e : experts_) {
    for (const auto& p : e->parameters()) out.push_back(p);
  }
  return out;
}

int64_t DynaMoELayerImpl::ExpertParameterCount() const {
  return experts_.empty() ? 0 : CountOf(experts_.front()->parameters());
}

int64_t DynaMoELayerImpl::GateParameterCount() const { return CountOf(gate_->parameters()); }

DynaMoENetImpl::DynaMoENetImpl(const DynaMoEOptions& options) : options_(options) {
  const int layers = static_cast<int>(options.layer_experts.size());
  stem_ = register_module("stem", ConvBnRelu(options.in_channels, options.width, 2));
  for (int l = 0; l < layers; ++l) {
    const int64_t stride = layers >= 2 && l == layers / 2 ? 2 : 1;
    stages_.push_back(register_module(absl::StrCat("stage", l),
                                      ConvBnRelu(options.width, options.width, stride)));
    layers_.push_back(
        register_module(absl::StrCat("moe", l), DynaMoELayer(options, options.layer_experts[l])));
  }
  dropout_ = register_module("dropout", torch::nn::Dropout(options.dropout));
  classifier_ =
      register_module("classifier", torch::nn::Linear(options.width, options.num_classes));
}

MoEOutput DynaMoENetImpl::Forward(const torch::Tensor& x) {
  torch::Tensor h = stem_->forward(x);
  MoEOutput out;
  torch::Tensor balance = torch::zeros({}, h.options().dtype(torch::kFloat32));
  for (size_t l = 0; l < layers_.size(); ++l) {
    h = stages_[l]->forward(h);
    DynaMoELayerImpl::Output o = layers_[l]->Forward(h);
    h = o.y;
    balance = balance + o.balance_loss;
    out.layers.push_back(std::move(o.route));
  }
  out.logits = classifier_->forward(dropout_->forward(h.mean({2, 3})));
  out.balance_loss = balance / static_cast<double>(std::max<size_t>(1, layers_.size()));
  // Per-sample view of layer 0: its tokens' mean probabilities and active shares.
  const LayerRoute& first = out.layers.front();
  const int64_t b = x.size(0), e = first.probs.size(1);
  out.probs = first.probs.detach().view({b, -1, e}).mean(1);
  out.active = first.active.to(torch::kFloat32).view({b, -1, e}).mean(1);
  return out;
}

std::vector<torch::Tensor> DynaMoENetImpl::SharedParameters() {
  std::vector<torch::Tensor> routed;
  for (auto& layer : layers_) {
    for (const auto& p : layer->RouterParameters()) routed.push_back(p);
    for (const auto& p : layer->ExpertParameters()) routed.push_back(p);
  }
  std::vector<torch::Tensor> out;
  for (const auto& p : parameters()) {
    bool in_routed = false;
    for (const auto& r : routed) in_routed = in_routed || r.is_same(p);
    if (!in_routed) out.push_back(p);
  }
  return out;
}

double DynaMoENetImpl::ActiveParametersPerToken(const std::vector<double>& mean_active) const {
  double total = 0;
  int64_t routed = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const int64_t expert = layers_[l]->ExpertParameterCount();
    const int64_t gate = layers_[l]->GateParameterCount();
    routed += gate + expert * layers_[l]->num_experts();
    const double active = l < mean_active.size() ? mean_active[l] : layers_[l]->num_experts();
    total += gate + active * expert;
  }
  return total + static_cast<double>(models::CountParameters(*this) - routed);
}

absl::StatusOr<DynaMoEOptions> DynaMoEOptionsFrom(const common::Recipe& recipe, int64_t in_channels,
                                                  int64_t num_classes) {
  if (recipe.router == common::RouterKind::kTopP) {
    return absl::InvalidArgumentError(
        "recipe.router: ARCHITECTURE_DYNAMOE takes ROUTER_DYNAMIC, ROUTER_TOP_K or ROUTER_DENSE");
  }
  DynaMoEOptions o;
  o.in_channels = in_channels;
  o.num_classes = num_classes;
  o.width = recipe.dynamoe_width;
  o.expert_hidden = recipe.dynamoe_expert_hidden;
  o.layer_experts = ScheduleExperts(recipe.dynamoe_schedule, recipe.dynamoe_layers,
                                    recipe.dynamoe_min_experts, recipe.dynamoe_max_experts,
                                    recipe.dynamoe_wave_cycles, recipe.dynamoe_capacity_fair);
  o.token_routing = recipe.dynamoe_token_routing;
  o.router.kind = recipe.router;
  o.router.top_k = recipe.top_k;
  o.router.percentile = recipe.dynamoe_percentile;
  o.router.threshold = recipe.dynamoe_threshold;
  o.router.max_active = recipe.dynamoe_max_active;
  o.balance = recipe.dynamoe_balance;
  o.dropout = recipe.dropout;
  return o;
}

}  // namespace quartet::worker::moe
