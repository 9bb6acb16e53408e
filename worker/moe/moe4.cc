#include "worker/moe/moe4.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::moe {

namespace F = torch::nn::functional;

// ---- Gate ----------------------------------------------------------------------------------

GateImpl::GateImpl(int64_t in_channels, int64_t num_experts, double noise_std,
                   double initial_temperature)
    : noise_std_(noise_std) {
  conv1 = register_module(
      "conv1",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, 64, 3).stride(2).padding(1)));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(64));
  conv2 = register_module(
      "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 128, 3).stride(2).padding(1)));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(128));
  fc1 = register_module("fc1", torch::nn::Linear(128, 64));
  fc2 = register_module("fc2", torch::nn::Linear(64, num_experts));
  temperature = register_parameter("temperature", torch::full({}, initial_temperature));
}

torch::Tensor GateImpl::Temperature() const {
  return temperature.clamp(kMinTemperature, kMaxTemperature);
}

void GateImpl::ClampTemperature() {
  torch::NoGradGuard no_grad;
  temperature.clamp_(kMinTemperature, kMaxTemperature);
}

torch::Tensor GateImpl::forward(torch::Tensor x) {
  x = torch::relu(bn1(conv1(x)));
  x = torch::relu(bn2(conv2(x)));
  x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({1, 1})).flatten(1);
  torch::Tensor z = fc2(models::Dropout(torch::relu(fc1(x)), dropout, is_training()));
  z = z / Temperature().to(z.dtype());
  if (is_training() && noise_std_ > 0) z = z + models::RandnLike(z) * noise_std_;
  return z;
}

// ---- Routing statistics
// --------------------------------------------------------------------------

void RoutingStats::Add(const torch::Tensor& probs, const torch::Tensor& active) {
  torch::NoGradGuard no_grad;
  torch::Tensor p = probs.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor a = active.detach().to(torch::kCPU, torch::kDouble);
  const int64_t e = p.size(1);
  if (prob_sum.empty()) {
    prob_sum.assign(e, 0.0);
    assign_sum.assign(e, 0.0);
    active_histogram.assign(e, 0.0);
  }
  if (active.scalar_type() == torch::kBool) {
    const torch::Tensor counts =
        a.sum(1).to(torch::kLong).clamp(1, e).sub(1).bincount(torch::Tensor(), e);
    for (int64_t i = 0; i < e; ++i) active_histogram[i] += counts[i].item<double>();
  }
  torch::Tensor ps = p.sum(0), as = a.sum(0);
  for (int64_t i = 0; i < e; ++i) {
    prob_sum[i] += ps[i].item<double>();
    assign_sum[i] += as[i].item<double>();
  }
  entropy_sum += (-(p * (p + 1e-12).log()).sum(1)).sum().item<double>();
  active_sum += a.sum().item<double>();
  samples += p.size(0);
}

std::vector<double> RoutingStats::Load(bool dense) const {
  const std::vector<double>& v = dense ? prob_sum : assign_sum;
  double total = 0;
  for (double x : v) total += x;
  std::vector<double> out(v.size(), 0.0);
  for (size_t i = 0; i < v.size() && total > 0; ++i) out[i] = v[i] / total;
  return out;
}

double RoutingStats::LoadCv(bool dense) const {
  std::vector<double> load = Load(dense);
  if (load.empty()) return 0;
  double mean = 0, var = 0;
  for (double x : load) mean += x;
  mean /= load.size();
  for (double x : load) var += (x - mean) * (x - mean);
  var /= load.size();
  return mean > 0 ? std::sqrt(var) / mean : 0;
}

double RoutingStats::NormalizedEntropy() const {
  if (samples == 0 || prob_sum.size() < 2) return 0;
  return entropy_sum / samples / std::log(static_cast<double>(prob_sum.size()));
}

double RoutingStats::MeanActive() const { return samples ? active_sum / samples : 0; }

std::vector<double> RoutingStats::ActiveShares() const {
  double total = 0;
  for (double x : active_histogram) total += x;
  std::vector<double> out(active_histogram.size(), 0.0);
  for (size_t i = 0; i < out.size() && total > 0; ++i) out[i] = active_histogram[i] / total;
  return out;
}

// ---- MoE4 --------------------------------------------------------------------------------------

torch::Tensor CvSquared(const torch::Tensor& v) {
  if (v.numel() < 2) return torch::zeros({}, v.options());
  const torch::Tensor mean = v.mean();
  return v.var(/*unbiased=*/false) / (mean * mean + 1e-10);
}

MoE4Impl::MoE4Impl(const MoE4Options& options, std::vector<models::ClassifierPtr> experts)
    : options_(options), experts_(std::move(experts)) {
  for (size_t i = 0; i < experts_.size(); ++i) {
    register_module(absl::StrCat("expert", i), experts_[i]);
    bool replicate = false;
    if (options.in_channels == 1 && i < options.experts.size()) {
      auto m = common::FamilyCatalog::Get().Resolve(options.experts[i]);
      replicate = m.ok() && !m->variant->supports_one_channel;
    }
    replicate_.push_back(replicate);
  }
  gate_ = register_module("gate", Gate(options.in_channels, static_cast<int64_t>(experts_.size())));
  // Generators: experts 0..E-1, then the gate; distinct, reproducible streams per position.
  for (size_t i = 0; i <= experts_.size(); ++i) {
    generators_.push_back(at::make_generator<at::CPUGeneratorImpl>(
        options.seed * 0x9E3779B97F4A7C15ULL + (i + 1) * 0xBF58476D1CE4E5B9ULL));
  }
  forward_ms_.assign(experts_.size() + 1, 0.0);
  backward_ms_.assign(experts_.size() + 1, 0.0);
  deferred_.resize(experts_.size());
}

absl::StatusOr<std::shared_ptr<MoE4Impl>> MoE4Impl::Build(const MoE4Options& options) {
  if (options.experts.size() < 2 || options.experts.size() > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("experts: a MoE needs 2 to 8 experts, got ", options.experts.size()));
  }
  const int64_t e = static_cast<int64_t>(options.experts.size());
  if (options.router.kind == common::RouterKind::kTopK &&
      (options.router.top_k < 1 || options.router.top_k > e)) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe.top_k: must be in [1, ", e, "], got ", options.router.top_k));
  }
  if (options.router.kind == common::RouterKind::kTopP &&
      (!(options.router.top_p > 0) || options.router.top_p > 1 || options.router.max_active < 0)) {
    return absl::InvalidArgumentError("recipe.top_p: must be in (0, 1]");
  }
  std::vector<models::ClassifierPtr> experts;
  for (size_t i = 0; i < options.experts.size(); ++i) {
    models::ModelOptions mo;
    auto resolved = common::FamilyCatalog::Get().Resolve(options.experts[i]);
    if (!resolved.ok()) return resolved.status();
    mo.in_channels = options.in_channels == 1 && !resolved->variant->supports_one_channel
                         ? 3
                         : options.in_channels;
    mo.num_classes = options.num_classes;
    mo.input_size = options.input_size;
    mo.dropout = options.dropout;
    // Distinct, reproducible seeds per expert position.
    mo.seed = options.seed * 1000003ULL + 7919ULL * (i + 1);
    auto model = models::BuildModel(options.experts[i], mo);
    if (!model.ok()) return model.status();
    experts.push_back(std::move(*model));
  }
  try {
    torch::manual_seed(options.seed);
    return std::make_shared<MoE4Impl>(options, std::move(experts));
  } catch (const c10::Error& err) {
    return absl::InternalError(absl::StrCat("building the gate: ", err.what_without_backtrace()));
  }
}

std::vector<torch::Tensor> MoE4Impl::ExpertParameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& expert : experts_) {
    for (const auto& p : expert->parameters()) out.push_back(p);
  }
  return out;
}

bool MoE4Impl::Parallel() const {
  // With more threads than tasks, some would idle; the experts then share all threads instead.
  const int threads = at::get_num_threads();
  return options_.parallel_experts && threads > 1 && threads <= num_experts() + 1 &&
         !at::in_parallel_region();
}

void MoE4Impl::RunTasks(const std::vector<size_t>& tasks, std::vector<double>* cost_ms,
                        const std::function<void(size_t)>& task) {
  std::vector<size_t> order = tasks;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return (*cost_ms)[a] > (*cost_ms)[b]; });
  auto timed = [&](size_t i) {
    const auto start = std::chrono::steady_clock::now();
    task(i);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    double& cost = (*cost_ms)[i];
    cost = cost == 0 ? ms : 0.7 * cost + 0.3 * ms;
  };
  if (!ran_parallel_ || order.size() < 2) {
    for (size_t i : order) timed(i);
    return;
  }
  // Each thread of the team takes the longest task left. Inside a task every kernel must run
  // single-threaded: ATen's and OpenBLAS's see the parallel region, but oneDNN sizes its
  // primitives by omp_get_max_threads() and would wait forever at a barrier for threads the nested
  // region never gets, so the task's own OpenMP thread count is set to 1 (and put back). Grad mode
  // and the like are thread-local, so the caller's state goes with the tasks.
  const at::ThreadLocalState state;
  std::atomic<size_t> next{0};
  struct SingleThreaded {  // omp_set_num_threads(1) for a scope
    int saved = omp_get_max_threads();
    SingleThreaded() { omp_set_num_threads(1); }
    ~SingleThreaded() { omp_set_num_threads(saved); }
  };
  at::parallel_for(0, static_cast<int64_t>(order.size()), 1, [&](int64_t, int64_t) {
    at::ThreadLocalStateGuard guard(state);
    SingleThreaded single_threaded;
    for (size_t k = next++; k < order.size(); k = next++) timed(order[k]);
  });
}

torch::Tensor MoE4Impl::RunGate(const torch::Tensor& x) {
  models::ScopedGenerator scope(&generators_.back());
  return gate_->forward(x);
}

torch::Tensor MoE4Impl::RunExpert(size_t e, const torch::Tensor& x) {
  const torch::Tensor in = replicate_[e] && x.size(1) == 1 ? x.expand({-1, 3, -1, -1}) : x;
  torch::Tensor out;
  {
    models::ScopedGenerator scope(&generators_[e]);
    out = experts_[e]->forward(in);
  }
  if (!ran_parallel_ || !is_training() || !torch::GradMode::is_enabled() || !out.requires_grad()) {
    return out;
  }
  // Backward() runs this expert's backward pass concurrently with the others'.
  Deferred& d = deferred_[e];
  d.output = out;
  d.leaf = out.detach().requires_grad_(true);
  return d.leaf;
}

torch::Tensor MoE4Impl::MixSparse(const torch::Tensor& x, const torch::Tensor& active,
                                  const torch::Tensor& weights) {
  const size_t e_count = experts_.size();
  if (dense_dispatch_) {
    torch::Tensor y;
    for (size_t e = 0; e < e_count; ++e) {
      const torch::Tensor out = RunExpert(e, x);
      const torch::Tensor w = weights.select(1, static_cast<int64_t>(e)).unsqueeze(1);
      y = y.defined() ? y + out * w.to(out.dtype()) : out * w.to(out.dtype());
    }
    return y;
  }
  std::vector<torch::Tensor> rows(e_count), outs(e_count);
  std::vector<size_t> tasks;
  for (size_t e = 0; e < e_count; ++e) {
    rows[e] = active.select(1, static_cast<int64_t>(e)).nonzero().squeeze(1);
    if (rows[e].size(0) > 0) tasks.push_back(e);
  }
  RunTasks(tasks, &forward_ms_, [&](size_t e) {
    torch::Tensor sub = x.index_select(0, rows[e]);
    if (rows[e].size(0) == 1 && is_training()) {
      // BatchNorm cannot train on one sample: run it twice and keep one output.
      outs[e] = RunExpert(e, torch::cat({sub, sub})).narrow(0, 0, 1);
    } else {
      outs[e] = RunExpert(e, sub);
    }
  });
  torch::Tensor y;
  for (size_t e : tasks) {  // in expert order, so the sum is the same whatever the schedule
    torch::Tensor w =
        weights.index_select(0, rows[e]).select(1, static_cast<int64_t>(e)).unsqueeze(1);
    if (!y.defined()) y = torch::zeros({x.size(0), outs[e].size(1)}, outs[e].options());
    y = y.index_add(0, rows[e], outs[e] * w.to(outs[e].dtype()));
  }
  return y;
}

void MoE4Impl::Backward(const torch::Tensor& loss) {
  std::vector<Deferred> deferred(deferred_.size());
  std::swap(deferred, deferred_);
  loss.backward();
  std::vector<size_t> tasks;
  for (size_t e = 0; e < deferred.size(); ++e) {
    if (deferred[e].output.defined() && deferred[e].leaf.grad().defined()) tasks.push_back(e);
  }
  RunTasks(tasks, &backward_ms_, [&](size_t e) {
    torch::autograd::backward({deferred[e].output}, {deferred[e].leaf.grad()});
  });
}

MoEOutput MoE4Impl::Forward(const torch::Tensor& x) {
  MoEOutput out;
  for (Deferred& d : deferred_) d = Deferred{};
  ran_parallel_ = Parallel() && x.device().is_cpu();
  const int64_t e = num_experts();
  const bool dense = options_.router.kind == common::RouterKind::kDense;
  std::vector<torch::Tensor> outs(experts_.size());
  torch::Tensor logits;
  if (dense) {
    // The gate and every expert at once; task E is the gate.
    std::vector<size_t> tasks(experts_.size() + 1);
    for (size_t i = 0; i < tasks.size(); ++i) tasks[i] = i;
    RunTasks(tasks, &forward_ms_, [&](size_t i) {
      if (i == experts_.size()) {
        logits = RunGate(x);
      } else {
        outs[i] = RunExpert(i, x);
      }
    });
  } else {
    logits = RunGate(x);  // sparse routing needs the gate first
  }
  torch::Tensor p = torch::softmax(logits.to(torch::kFloat32), 1);
  out.probs = p;
  switch (options_.router.kind) {
    case common::RouterKind::kDense: {
      torch::Tensor stacked = torch::stack(outs, 1);  // (B, E, C)
      out.logits = (p.unsqueeze(2).to(stacked.dtype()) * stacked).sum(1);
      out.active = torch::ones_like(p, torch::kBool);
      out.balance_loss = CvSquared(p.sum(0));
      return out;
    }
    case common::RouterKind::kTopK: {
      torch::Tensor idx = std::get<1>(p.topk(options_.router.top_k, 1));
      // Integer scalars, not bool ones: a traced bool Scalar matches no ATen overload (export).
      out.active = torch::zeros_like(p, torch::kBool).scatter(1, idx, 1);
      break;
    }
    case common::RouterKind::kTopP: {
      auto [sorted, order] = p.sort(1, /*descending=*/true);
      torch::Tensor before = sorted.cumsum(1) - sorted;  // mass of the more probable experts
      torch::Tensor keep = before < options_.router.top_p;
      const int max_active = options_.router.max_active > 0
                                 ? std::min<int64_t>(options_.router.max_active, e)
                                 : static_cast<int>(e);
      if (max_active < e) keep.narrow(1, max_active, e - max_active).fill_(0);
      keep.select(1, 0).fill_(1);
      out.active = torch::zeros_like(p, torch::kBool).scatter(1, order, keep);
      break;
    }
  }
  torch::Tensor masked = p * out.active.to(p.dtype());
  torch::Tensor weights = masked / masked.sum(1, /*keepdim=*/true).clamp_min(1e-12);
  out.logits = MixSparse(x, out.active, weights);
  // Switch-style: E * sum_e f_e * P_e; f counts assignments (no gradient), P carries it.
  torch::Tensor f = out.active.to(p.dtype()).sum(0) / out.active.sum().to(p.dtype());
  out.balance_loss = static_cast<double>(e) * (f * p.mean(0)).sum();
  return out;
}

}  // namespace quartet::worker::moe
