#include "worker/train/analysis.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace quartet::worker::train::analysis {
namespace {

namespace F = torch::nn::functional;

at::Generator CpuGenerator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

torch::Tensor Randn(const torch::Tensor& like, at::Generator& gen) {
  return torch::randn(like.sizes(), gen, torch::TensorOptions().dtype(like.scalar_type()))
      .to(like.device());
}

// a + alpha * b, elementwise over the lists.
TensorList Axpy(const TensorList& a, double alpha, const TensorList& b) {
  TensorList out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i] + alpha * b[i]);
  return out;
}

// Sets params to values (no autograd record).
void Assign(const TensorList& params, const TensorList& values) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(values[i]);
}

TensorList Clone(const TensorList& params) {
  torch::NoGradGuard no_grad;
  TensorList out;
  for (const auto& p : params) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

Batches MakeBatches(const torch::Tensor& x, const torch::Tensor& y, int64_t batch_size) {
  Batches b;
  b.samples = x.size(0);
  for (int64_t i = 0; i < b.samples; i += batch_size) {
    const int64_t n = std::min(batch_size, b.samples - i);
    b.x.push_back(x.narrow(0, i, n));
    b.y.push_back(y.narrow(0, i, n));
  }
  return b;
}

double Dot(const TensorList& a, const TensorList& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += (a[i].to(torch::kDouble) * b[i].to(torch::kDouble)).sum().item<double>();
  }
  return s;
}

double Norm(const TensorList& a) { return std::sqrt(Dot(a, a)); }

TensorList Normalized(const TensorList& a) {
  const double n = Norm(a);
  TensorList out;
  for (const auto& t : a) out.push_back(t / (n + 1e-6));
  return out;
}

LossAccuracy EvaluateLoss(const LogitsFn& logits, const Batches& data) {
  torch::NoGradGuard no_grad;
  double loss = 0, correct = 0;
  for (size_t b = 0; b < data.x.size(); ++b) {
    const torch::Tensor z = logits(data.x[b]);
    loss += F::cross_entropy(z, data.y[b], F::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    correct += z.argmax(1).eq(data.y[b]).sum().item<double>();
  }
  const double n = static_cast<double>(std::max<int64_t>(1, data.samples));
  return {loss / n, correct / n};
}

TensorList HessianVectorProduct(const LogitsFn& logits, const Batches& data,
                                const TensorList& params, const TensorList& v) {
  TensorList hv;
  for (const auto& p : params) hv.push_back(torch::zeros_like(p));
  for (size_t b = 0; b < data.x.size(); ++b) {
    const double weight = static_cast<double>(data.x[b].size(0)) / data.samples;
    const torch::Tensor loss = F::cross_entropy(logits(data.x[b]), data.y[b]);
    const TensorList grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                                   /*create_graph=*/true, /*allow_unused=*/true);
    TensorList g, p, w;
    std::vector<size_t> index;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined() || !grads[i].requires_grad()) continue;
      g.push_back(grads[i]);
      p.push_back(params[i]);
      w.push_back(v[i]);
      index.push_back(i);
    }
    if (g.empty()) continue;
    const TensorList hvb = torch::autograd::grad(g, p, w, /*retain_graph=*/false,
                                                 /*create_graph=*/false, /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < hvb.size(); ++j) {
      if (hvb[j].defined()) hv[index[j]].add_(hvb[j], weight);
    }
  }
  return hv;
}

CachedHvp::CachedHvp(const LogitsFn& logits, const Batches& data, const TensorList& params) {
  for (const auto& p : params) shapes_.push_back(torch::zeros_like(p));
  for (size_t b = 0; b < data.x.size(); ++b) {
    Batch batch;
    batch.weight = static_cast<double>(data.x[b].size(0)) / data.samples;
    const torch::Tensor loss = F::cross_entropy(logits(data.x[b]), data.y[b]);
    const TensorList grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                                   /*create_graph=*/true, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined() || !grads[i].requires_grad()) continue;
      batch.grads.push_back(grads[i]);
      batch.params.push_back(params[i]);
      batch.index.push_back(i);
    }
    if (!batch.grads.empty()) batches_.push_back(std::move(batch));
  }
}

TensorList CachedHvp::operator()(const TensorList& v) const {
  TensorList hv;
  for (const auto& z : shapes_) hv.push_back(torch::zeros_like(z));
  for (const Batch& batch : batches_) {
    TensorList w;
    for (size_t i : batch.index) w.push_back(v[i]);
    const TensorList hvb = torch::autograd::grad(batch.grads, batch.params, w,
                                                 /*retain_graph=*/true,
                                                 /*create_graph=*/false, /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < hvb.size(); ++j) {
      if (hvb[j].defined()) hv[batch.index[j]].add_(hvb[j], batch.weight);
    }
  }
  return hv;
}

Eigenpairs TopEigenvalues(const HvpFn& hvp, const TensorList& like,
                          const PowerIterationOptions& options) {
  Eigenpairs out;
  at::Generator gen = CpuGenerator(options.seed);
  for (int k = 0; k < options.top_k; ++k) {
    TensorList v;
    for (const auto& p : like) v.push_back(Randn(p, gen));
    v = Normalized(v);
    double eigenvalue = 0;
    bool have = false;
    int iterations = options.max_iterations;
    for (int it = 0; it < options.max_iterations; ++it) {
      for (const TensorList& u : out.eigenvectors) v = Axpy(v, -Dot(v, u), u);
      v = Normalized(v);
      const TensorList hv = hvp(v);
      ++out.hvp_count;
      const double value = Dot(hv, v);
      v = Normalized(hv);
      if (have &&
          std::abs(value - eigenvalue) / (std::abs(eigenvalue) + 1e-6) < options.tolerance) {
        eigenvalue = value;
        iterations = it + 1;
        break;
      }
      eigenvalue = value;
      have = true;
    }
    out.eigenvalues.push_back(eigenvalue);
    out.iterations.push_back(iterations);
    out.eigenvectors.push_back(v);
  }
  return out;
}

std::vector<TensorList> RademacherProbes(const TensorList& like, int samples, uint64_t seed) {
  at::Generator gen = CpuGenerator(seed);
  std::vector<TensorList> probes;
  for (int s = 0; s < samples; ++s) {
    TensorList v;
    for (const auto& p : like) {
      v.push_back((torch::randint(0, 2, p.sizes(), gen, torch::TensorOptions().dtype(torch::kLong))
                           .to(p.scalar_type()) *
                       2 -
                   1)
                      .to(p.device()));
    }
    probes.push_back(std::move(v));
  }
  return probes;
}

TraceEstimate HutchinsonTrace(const HvpFn& hvp, const TensorList& like, int samples,
                              uint64_t seed) {
  TraceEstimate out;
  at::Generator gen = CpuGenerator(seed);
  for (int s = 0; s < samples; ++s) {
    // One probe at a time (RademacherProbes draws the same sequence).
    TensorList v;
    for (const auto& p : like) {
      v.push_back((torch::randint(0, 2, p.sizes(), gen, torch::TensorOptions().dtype(torch::kLong))
                           .to(p.scalar_type()) *
                       2 -
                   1)
                      .to(p.device()));
    }
    out.samples.push_back(Dot(hvp(v), v));
  }
  if (samples == 0) return out;
  double mean = 0;
  for (double x : out.samples) mean += x;
  mean /= samples;
  double var = 0;
  for (double x : out.samples) var += (x - mean) * (x - mean);
  var = samples > 1 ? var / (samples - 1) : 0;
  out.trace = mean;
  out.standard_error = std::sqrt(var / samples);
  return out;
}

TensorList FilterNormalizedDirection(const TensorList& params, uint64_t seed) {
  torch::NoGradGuard no_grad;
  at::Generator gen = CpuGenerator(seed);
  TensorList out;
  for (const auto& p : params) {
    if (p.dim() < 2) {
      out.push_back(torch::zeros_like(p));
      continue;
    }
    torch::Tensor d = Randn(p, gen);
    std::vector<int64_t> shape(p.dim(), 1);
    shape[0] = p.size(0);
    const torch::Tensor pn = p.detach().flatten(1).norm(2, 1).view(shape);
    const torch::Tensor dn = d.flatten(1).norm(2, 1).view(shape);
    out.push_back(d * pn / (dn + 1e-10));
  }
  return out;
}

std::vector<double> Linspace(double lo, double hi, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(n == 1 ? lo : lo + (hi - lo) * i / (n - 1));
  return out;
}

Curve SweepDirection(const LogitsFn& logits, const Batches& data, const TensorList& params,
                     const TensorList& direction, const std::vector<double>& alphas) {
  const TensorList base = Clone(params);
  Curve c;
  c.alphas = alphas;
  try {
    for (double a : alphas) {
      Assign(params, Axpy(base, a, direction));
      const LossAccuracy la = EvaluateLoss(logits, data);
      c.losses.push_back(la.loss);
      c.accuracies.push_back(la.accuracy);
    }
  } catch (...) {
    Assign(params, base);
    throw;
  }
  Assign(params, base);
  return c;
}

std::vector<double> SweepPlane(const LogitsFn& logits, const Batches& data,
                               const TensorList& params, const TensorList& d1, const TensorList& d2,
                               const std::vector<double>& alphas) {
  const TensorList base = Clone(params);
  std::vector<double> losses;
  try {
    for (double a : alphas) {
      const TensorList row = Axpy(base, a, d1);
      for (double b : alphas) {
        Assign(params, Axpy(row, b, d2));
        losses.push_back(EvaluateLoss(logits, data).loss);
      }
    }
  } catch (...) {
    Assign(params, base);
    throw;
  }
  Assign(params, base);
  return losses;
}

std::vector<GroupGradientVariance> MinibatchGradientVariance(
    const std::vector<NamedParameters>& groups, int batches,
    const std::function<void(int)>& compute_gradients) {
  std::vector<NamedParameters> all_groups = groups;
  NamedParameters all{"all", {}};
  for (const auto& g : groups)
    all.parameters.insert(all.parameters.end(), g.parameters.begin(), g.parameters.end());
  all_groups.push_back(all);
  auto zero = [&] {
    torch::NoGradGuard no_grad;
    for (const auto& p : all.parameters) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  };
  // Welford over vectors: mean and the summed squared deviations per group.
  std::vector<torch::Tensor> mean(all_groups.size());
  std::vector<double> m2(all_groups.size(), 0.0);
  for (int k = 0; k < batches; ++k) {
    zero();
    compute_gradients(k);
    torch::NoGradGuard no_grad;
    for (size_t gi = 0; gi < all_groups.size(); ++gi) {
      TensorList flat;
      for (const auto& p : all_groups[gi].parameters) {
        flat.push_back(p.grad().defined()
                           ? p.grad().detach().flatten().to(torch::kDouble)
                           : torch::zeros({p.numel()}, p.options().dtype(torch::kDouble)));
      }
      const torch::Tensor g = flat.empty() ? torch::zeros({0}, torch::kDouble) : torch::cat(flat);
      if (!mean[gi].defined()) mean[gi] = torch::zeros_like(g);
      const torch::Tensor delta = g - mean[gi];
      mean[gi] += delta / static_cast<double>(k + 1);
      m2[gi] += (delta * (g - mean[gi])).sum().item<double>();
    }
  }
  zero();
  std::vector<GroupGradientVariance> out;
  for (size_t gi = 0; gi < all_groups.size(); ++gi) {
    GroupGradientVariance v;
    v.name = all_groups[gi].name;
    for (const auto& p : all_groups[gi].parameters) v.parameter_count += p.numel();
    v.variance = batches > 1 ? m2[gi] / (batches - 1) : 0;
    v.mean_gradient_norm_squared = mean[gi].defined() ? mean[gi].pow(2).sum().item<double>() : 0;
    v.relative_variance =
        v.mean_gradient_norm_squared > 0 ? v.variance / v.mean_gradient_norm_squared : 0;
    out.push_back(v);
  }
  return out;
}

Latency MeasureLatency(const LogitsFn& logits, const torch::Tensor& batch,
                       const LatencyOptions& options) {
  torch::NoGradGuard no_grad;
  for (int i = 0; i < options.warmup_batches; ++i) logits(batch);
  std::vector<double> ms;
  for (int i = 0; i < options.timed_batches; ++i) {
    if (options.synchronize) options.synchronize();
    const auto start = std::chrono::steady_clock::now();
    logits(batch);
    if (options.synchronize) options.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  Latency l;
  if (ms.empty()) return l;
  for (double x : ms) l.mean_ms += x;
  l.mean_ms /= ms.size();
  for (double x : ms) l.std_ms += (x - l.mean_ms) * (x - l.mean_ms);
  l.std_ms = std::sqrt(l.std_ms / ms.size());
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  l.median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  l.images_per_second = l.mean_ms > 0 ? batch.size(0) * 1000.0 / l.mean_ms : 0;
  return l;
}

}  // namespace quartet::worker::train::analysis
