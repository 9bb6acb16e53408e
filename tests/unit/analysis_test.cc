// HEADS architecture and post-training analyses: the head kinds (shapes, parameter parity, sparse
// routing runs only the chosen experts), the Hessian machinery against an explicit Hessian built by
// double backward column by column, Hutchinson's trace within its standard error, filter-normalised
// directions, gradient variance, and the trainer end to end with every analysis on.
// AnalysisReference.Dump writes a tiny model and its numbers for
// tests/python/analysis_reference.py.
#include "worker/train/analysis.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/error_class.h"
#include "gtest/gtest.h"
#include "worker/models/registry.h"
#include "worker/moe/heads.h"
#include "worker/moe/network.h"
#include "worker/train/torch_trainer.h"

namespace quartet::worker {
namespace {

using train::analysis::TensorList;
namespace an = train::analysis;

moe::HeadOptions SmallHead(common::HeadKind kind) {
  moe::HeadOptions o;
  o.kind = kind;
  o.in_features = 16;
  o.num_classes = 5;
  o.experts = 4;
  o.top_k = 2;
  return o;
}

TEST(HeadsTest, EveryKindMapsFeaturesToClassesAtAboutTheSameParameterCount) {
  torch::manual_seed(0);
  std::map<common::HeadKind, int64_t> params;
  for (auto kind :
       {common::HeadKind::kDense, common::HeadKind::kSoftMoE, common::HeadKind::kSparseMoE,
        common::HeadKind::kHardMoE, common::HeadKind::kSlotsSoftMoE}) {
    moe::HeadOptions o = SmallHead(kind);
    o.in_features = 512;
    o.num_classes = 10;
    o.experts = 8;
    auto head = moe::MakeHead(o);
    ASSERT_TRUE(head.ok()) << head.status();
    (*head)->train();
    moe::MoEOutput out = (*head)->Forward(torch::randn({6, 512, 4, 4}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{6, 10})) << common::HeadName(kind);
    EXPECT_EQ(out.probs.size(0), 6);
    EXPECT_NEAR(out.probs.sum(1).mean().item<double>(), 1.0, 1e-5) << common::HeadName(kind);
    EXPECT_TRUE(std::isfinite(out.balance_loss.item<double>()));
    params[kind] = models::CountParameters(**head);
  }
  // The study's capacity match: about 0.27 M each, within 5%.
  const double dense = static_cast<double>(params[common::HeadKind::kDense]);
  EXPECT_NEAR(dense, 267786, 1);
  for (const auto& [kind, n] : params) EXPECT_NEAR(n / dense, 1.0, 0.05) << common::HeadName(kind);
}

TEST(HeadsTest, SparseHeadRunsOnlyTheChosenExpertsAndHardUsesOne) {
  torch::manual_seed(1);
  for (auto kind : {common::HeadKind::kSparseMoE, common::HeadKind::kHardMoE}) {
    auto head = moe::MakeHead(SmallHead(kind));
    ASSERT_TRUE(head.ok());
    (*head)->train();
    const torch::Tensor f = torch::randn({32, 16, 1, 1});
    moe::MoEOutput out = (*head)->Forward(f);
    const int64_t k = kind == common::HeadKind::kHardMoE ? 1 : 2;
    EXPECT_TRUE(out.active.sum(1).eq(k).all().item<bool>());
    // Unchosen experts get exactly zero probability.
    EXPECT_TRUE(out.probs.masked_select(out.active.logical_not()).eq(0).all().item<bool>());
    // The balance loss has a gradient into the router.
    out.balance_loss.backward();
    bool router_grad = false;
    for (const auto& p : (*head)->RouterParameters()) {
      router_grad = router_grad || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
    }
    EXPECT_TRUE(router_grad) << common::HeadName(kind);
  }
}

TEST(HeadsTest, HeadsNetworkNeedsOneFamilyAndSlotsNeedASpatialMap) {
  common::Recipe recipe;
  recipe.architecture = common::ArchitectureKind::kHeads;
  moe::NetworkOptions no;
  no.families = {"ICNet", "DPN107"};
  no.input_size = 32;
  auto two = moe::BuildNetwork(recipe, no);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(two.status().message().find("exactly 1 family"), absl::string_view::npos);

  no.families = {"DPN107"};
  recipe.head = common::HeadKind::kSlotsSoftMoE;
  auto slots = moe::BuildNetwork(recipe, no);
  ASSERT_FALSE(slots.ok());
  EXPECT_NE(slots.status().message().find("spatial"), absl::string_view::npos);

  // ResNet serves its feature map: with the small-input stem, 4x4 tokens at 32 px.
  no.families = {"ResNet"};
  no.in_channels = 1;
  auto resnet = moe::BuildNetwork(recipe, no);
  ASSERT_TRUE(resnet.ok()) << resnet.status();
  (*resnet)->module().eval();
  torch::NoGradGuard no_grad;
  moe::MoEOutput out = (*resnet)->Forward(torch::randn({2, 1, 32, 32}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(out.probs.size(1), 8);
  std::vector<std::string> groups;
  for (const auto& g : (*resnet)->ParameterGroups()) groups.push_back(g.name);
  EXPECT_EQ(absl::StrJoin(groups, ","), "backbone,head,router");
  EXPECT_EQ((*resnet)->Describe(), "HEADS ResNet + SLOTS_SOFT_MOE");
}

// A tiny double-precision model: a soft MoE head of 2 experts over 4 features, 3 classes.
struct Tiny {
  std::shared_ptr<moe::HeadImpl> head;
  TensorList params;
  std::vector<std::string> names;
  torch::Tensor x, y;
  an::LogitsFn logits;
};

Tiny MakeTiny(uint64_t seed = 3) {
  torch::manual_seed(seed);
  moe::HeadOptions o;
  o.kind = common::HeadKind::kSoftMoE;
  o.in_features = 4;
  o.num_classes = 3;
  o.hidden = 4;
  o.experts = 2;
  Tiny t;
  t.head = *moe::MakeHead(o);
  t.head->to(torch::kDouble);
  t.head->eval();
  for (const auto& np : t.head->named_parameters()) {
    t.names.push_back(np.key());
    t.params.push_back(np.value());
  }
  t.x = torch::randn({20, 4, 1, 1}, torch::kDouble);
  t.y = torch::randint(0, 3, {20}, torch::kLong);
  auto head = t.head;
  t.logits = [head](const torch::Tensor& x) { return head->Forward(x).logits; };
  return t;
}

// The explicit Hessian, one column per unit vector, each by double backward of the full loss.
torch::Tensor ExplicitHessian(const Tiny& t) {
  const torch::Tensor loss = torch::nn::functional::cross_entropy(t.logits(t.x), t.y);
  const TensorList grads = torch::autograd::grad({loss}, t.params, {}, true, true);
  torch::Tensor flat = torch::cat([&] {
    TensorList f;
    for (const auto& g : grads) f.push_back(g.flatten());
    return f;
  }());
  const int64_t n = flat.size(0);
  torch::Tensor h = torch::zeros({n, n}, torch::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    const TensorList col = torch::autograd::grad({flat[i]}, t.params, {}, true, false, true);
    TensorList f;
    for (size_t j = 0; j < col.size(); ++j) {
      f.push_back(col[j].defined() ? col[j].flatten()
                                   : torch::zeros({t.params[j].numel()}, torch::kDouble));
    }
    h.select(1, i).copy_(torch::cat(f));
  }
  return h;
}

torch::Tensor Flatten(const TensorList& v) {
  TensorList f;
  for (const auto& t : v) f.push_back(t.flatten());
  return torch::cat(f);
}

TEST(AnalysisTest, CachedHvpEqualsTheExplicitHessianOverRepeatedProducts) {
  Tiny t = MakeTiny();
  const torch::Tensor h = ExplicitHessian(t);
  const an::CachedHvp cached(t.logits, an::MakeBatches(t.x, t.y, 7), t.params);
  torch::manual_seed(11);
  for (int round = 0; round < 3; ++round) {  // the kept graphs serve every product
    TensorList v;
    for (const auto& p : t.params) v.push_back(torch::randn_like(p));
    const torch::Tensor expected = torch::matmul(h, Flatten(v));
    EXPECT_LT((Flatten(cached(v)) - expected).abs().max().item<double>(), 1e-10) << round;
  }
}

TEST(AnalysisTest, HessianVectorProductEqualsTheExplicitHessian) {
  Tiny t = MakeTiny();
  const torch::Tensor h = ExplicitHessian(t);
  EXPECT_LT((h - h.t()).abs().max().item<double>(), 1e-10);
  torch::manual_seed(9);
  TensorList v;
  for (const auto& p : t.params) v.push_back(torch::randn_like(p));
  // Batched (weighted by batch size) and whole-set products agree with H v.
  for (int64_t batch : {20, 7}) {
    const TensorList hv =
        an::HessianVectorProduct(t.logits, an::MakeBatches(t.x, t.y, batch), t.params, v);
    const torch::Tensor expected = torch::matmul(h, Flatten(v));
    if (batch == 20) {
      EXPECT_LT((Flatten(hv) - expected).abs().max().item<double>(), 1e-10);
    } else {
      // Batches of 7, 7, 6: the size-weighted mean of batch Hessians is the full Hessian.
      EXPECT_LT((Flatten(hv) - expected).abs().max().item<double>(), 1e-10);
    }
  }
}

TEST(AnalysisTest, PowerIterationFindsTheExplicitTopEigenvalues) {
  Tiny t = MakeTiny();
  const torch::Tensor h = ExplicitHessian(t);
  const torch::Tensor evals = std::get<0>(torch::linalg_eigh(h));
  // Largest |λ| first.
  const torch::Tensor by_magnitude = evals.index_select(0, std::get<1>(evals.abs().sort(0, true)));
  const an::Batches data = an::MakeBatches(t.x, t.y, 20);
  an::PowerIterationOptions po;
  po.top_k = 3;
  po.max_iterations = 1000;
  po.tolerance = 1e-10;
  po.seed = 1;
  const an::Eigenpairs eig = an::TopEigenvalues(
      [&](const TensorList& v) { return an::HessianVectorProduct(t.logits, data, t.params, v); },
      t.params, po);
  ASSERT_EQ(eig.eigenvalues.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const double expected = by_magnitude[i].item<double>();
    EXPECT_NEAR(eig.eigenvalues[i], expected, 1e-5 * std::abs(by_magnitude[0].item<double>()))
        << "eigenvalue " << i;
    // And the vector is an eigenvector: ||Hv - λv|| small.
    const torch::Tensor v = Flatten(eig.eigenvectors[i]);
    EXPECT_LT((torch::matmul(h, v) - expected * v).norm().item<double>(),
              1e-3 * std::abs(by_magnitude[0].item<double>()));
  }
}

TEST(AnalysisTest, HutchinsonTraceIsWithinItsStatedError) {
  Tiny t = MakeTiny();
  const double trace = ExplicitHessian(t).trace().item<double>();
  const an::Batches data = an::MakeBatches(t.x, t.y, 20);
  const an::TraceEstimate est = an::HutchinsonTrace(
      [&](const TensorList& v) { return an::HessianVectorProduct(t.logits, data, t.params, v); },
      t.params, 400, 5);
  EXPECT_EQ(est.samples.size(), 400u);
  EXPECT_GT(est.standard_error, 0);
  EXPECT_LT(std::abs(est.trace - trace), 4 * est.standard_error)
      << "estimate " << est.trace << " +- " << est.standard_error << ", exact " << trace;
  // The probes are the ones RademacherProbes gives, and v'Hv of each is the recorded sample.
  const auto probes = an::RademacherProbes(t.params, 3, 5);
  const torch::Tensor h = ExplicitHessian(t);
  for (int i = 0; i < 3; ++i) {
    const torch::Tensor v = Flatten(probes[i]);
    EXPECT_TRUE(v.abs().eq(1).all().item<bool>());
    EXPECT_NEAR(est.samples[i], torch::dot(v, torch::matmul(h, v)).item<double>(), 1e-9);
  }
}

TEST(AnalysisTest, FilterNormalizedDirectionsMatchFilterNormsAndSkipBiases) {
  Tiny t = MakeTiny();
  const TensorList d = an::FilterNormalizedDirection(t.params, 7);
  for (size_t i = 0; i < d.size(); ++i) {
    if (t.params[i].dim() < 2) {
      EXPECT_EQ(d[i].abs().sum().item<double>(), 0) << t.names[i];
      continue;
    }
    const torch::Tensor pn = t.params[i].detach().flatten(1).norm(2, 1);
    const torch::Tensor dn = d[i].flatten(1).norm(2, 1);
    EXPECT_LT((pn - dn).abs().max().item<double>(), 1e-8) << t.names[i];
  }
  // Same seed, same direction; the sweep restores the parameters and passes through the minimum.
  EXPECT_TRUE(torch::equal(Flatten(d), Flatten(an::FilterNormalizedDirection(t.params, 7))));
  const torch::Tensor before = Flatten(t.params).clone();
  const an::Batches data = an::MakeBatches(t.x, t.y, 8);
  const an::Curve c = an::SweepDirection(t.logits, data, t.params, d, an::Linspace(-1, 1, 5));
  EXPECT_TRUE(torch::equal(before, Flatten(t.params)));
  EXPECT_NEAR(c.losses[2], an::EvaluateLoss(t.logits, data).loss, 1e-12);
  const auto grid = an::SweepPlane(t.logits, data, t.params, d, d, an::Linspace(-1, 1, 3));
  ASSERT_EQ(grid.size(), 9u);
  EXPECT_NEAR(grid[4], c.losses[2], 1e-12);
  EXPECT_NEAR(grid[0], an::SweepDirection(t.logits, data, t.params, d, {-2}).losses[0], 1e-12);
}

TEST(AnalysisTest, GradientVarianceIsZeroForOneBatchAndMatchesTheFormula) {
  Tiny t = MakeTiny();
  std::vector<an::NamedParameters> groups = {{"head", t.params}};
  auto grad_of = [&](const torch::Tensor& x, const torch::Tensor& y) {
    torch::nn::functional::cross_entropy(t.logits(x), y).backward();
  };
  auto same = an::MinibatchGradientVariance(groups, 4, [&](int) { grad_of(t.x, t.y); });
  ASSERT_EQ(same.size(), 2u);  // the group and "all"
  EXPECT_EQ(same[1].name, "all");
  EXPECT_LT(same[0].variance, 1e-20);
  EXPECT_GT(same[0].mean_gradient_norm_squared, 0);
  // Four different batches: V = sum_k ||g_k - mean||^2 / 3, computed here directly.
  std::vector<torch::Tensor> g;
  for (int k = 0; k < 4; ++k) {
    for (auto& p : t.params) p.mutable_grad() = torch::Tensor();
    grad_of(t.x.narrow(0, 5 * k, 5), t.y.narrow(0, 5 * k, 5));
    TensorList gl;
    for (const auto& p : t.params) gl.push_back(p.grad().clone());
    g.push_back(Flatten(gl));
  }
  const torch::Tensor all = torch::stack(g);
  const torch::Tensor mean = all.mean(0);
  const double expected = (all - mean).pow(2).sum().item<double>() / 3;
  auto diff = an::MinibatchGradientVariance(
      groups, 4, [&](int k) { grad_of(t.x.narrow(0, 5 * k, 5), t.y.narrow(0, 5 * k, 5)); });
  EXPECT_NEAR(diff[0].variance, expected, 1e-10 * expected);
  EXPECT_NEAR(diff[0].mean_gradient_norm_squared, mean.pow(2).sum().item<double>(), 1e-12);
  EXPECT_EQ(diff[0].parameter_count, Flatten(t.params).numel());
}

TEST(AnalysisTest, LatencyIsPositiveAndCountsBatches) {
  Tiny t = MakeTiny();
  int calls = 0;
  an::LatencyOptions lo;
  lo.warmup_batches = 2;
  lo.timed_batches = 5;
  lo.synchronize = [&] { ++calls; };
  const an::Latency l = an::MeasureLatency(t.logits, t.x, lo);
  EXPECT_EQ(calls, 10);  // before and after each timed batch
  EXPECT_GT(l.mean_ms, 0);
  EXPECT_GT(l.images_per_second, 0);
  EXPECT_GE(l.median_ms, 0);
}

// Writes the tiny model, its data, a vector, the C++ results and the probes as JSON to
// $QUARTET_ANALYSIS_DUMP for tests/python/analysis_reference.py; skipped without it.
TEST(AnalysisReference, Dump) {
  const char* path = std::getenv("QUARTET_ANALYSIS_DUMP");
  if (path == nullptr) GTEST_SKIP() << "QUARTET_ANALYSIS_DUMP not set";
  Tiny t = MakeTiny();
  auto list = [](const torch::Tensor& x) {
    const torch::Tensor f = x.detach().flatten().to(torch::kDouble).contiguous();
    std::ostringstream o;
    o.precision(17);
    o << "[";
    for (int64_t i = 0; i < f.numel(); ++i) o << (i ? "," : "") << f[i].item<double>();
    o << "]";
    return o.str();
  };
  auto shape = [](const torch::Tensor& x) {
    return absl::StrCat("[", absl::StrJoin(x.sizes(), ","), "]");
  };
  const an::Batches data = an::MakeBatches(t.x, t.y, 8);
  an::HvpFn hvp = [&](const TensorList& v) {
    return an::HessianVectorProduct(t.logits, data, t.params, v);
  };
  torch::manual_seed(11);
  TensorList v;
  for (const auto& p : t.params) v.push_back(torch::randn_like(p));
  an::PowerIterationOptions po;
  po.top_k = 3;
  po.max_iterations = 1000;
  po.tolerance = 1e-10;
  const an::Eigenpairs eig = an::TopEigenvalues(hvp, t.params, po);
  const an::TraceEstimate tr = an::HutchinsonTrace(hvp, t.params, 10, 2);
  const auto probes = an::RademacherProbes(t.params, 10, 2);
  std::ofstream out(path);
  out.precision(17);
  out << "{\"params\":[";
  for (size_t i = 0; i < t.params.size(); ++i) {
    out << (i ? "," : "") << "{\"name\":\"" << t.names[i] << "\",\"shape\":" << shape(t.params[i])
        << ",\"values\":" << list(t.params[i]) << "}";
  }
  out << "],\"x\":" << list(t.x) << ",\"x_shape\":" << shape(t.x) << ",\"y\":" << list(t.y)
      << ",\"batch_size\":8,\"v\":" << list(Flatten(v)) << ",\"hv\":" << list(Flatten(hvp(v)))
      << ",\"loss\":" << an::EvaluateLoss(t.logits, data).loss
      << ",\"eigenvalues\":" << list(torch::tensor(eig.eigenvalues, torch::kDouble))
      << ",\"trace_samples\":" << list(torch::tensor(tr.samples, torch::kDouble))
      << ",\"probes\":[";
  for (size_t i = 0; i < probes.size(); ++i) out << (i ? "," : "") << list(Flatten(probes[i]));
  out << "]}\n";
  ASSERT_TRUE(out.good());
}

quartet::v1::CandidateSpec HeadsSpec(quartet::v1::HeadKind head) {
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(1);
  spec.mutable_combination()->add_families("DPN107");
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit(128);
  spec.mutable_data()->set_test_limit(64);
  auto* r = spec.mutable_recipe();
  r->set_architecture(quartet::v1::ARCHITECTURE_HEADS);
  r->set_head(head);
  r->set_head_hidden(64);
  r->set_batch_size(16);
  r->set_learning_rate(3e-3);
  r->set_seed(4);
  return spec;
}

TEST(HeadsTrainerTest, TrainsEveryHeadAndRunsEveryAnalysis) {
  auto trainer = train::TorchTrainer::Create({});
  ASSERT_TRUE(trainer.ok());
  quartet::v1::CandidateSpec spec = HeadsSpec(quartet::v1::HEAD_KIND_SPARSE_MOE);
  auto* a = spec.mutable_recipe()->mutable_analyses();
  a->set_hessian(true);
  a->set_curvature_sweep(true);
  a->set_loss_surface(true);
  a->set_efficiency(true);
  a->set_gradient_variance(true);
  a->set_train_samples(32);
  a->set_test_samples(16);
  a->set_batch_size(16);
  a->set_hessian_top_k(2);
  a->set_hessian_max_iterations(5);
  a->set_hutchinson_samples(3);
  a->set_curvature_points(5);
  a->set_surface_directions(2);
  a->set_surface_points(3);
  a->set_surface_points_2d(3);
  a->set_latency_batches(2);
  a->set_latency_warmup_batches(1);
  a->set_latency_batch_size(8);
  a->set_gradient_variance_batches(3);
  std::vector<quartet::v1::MetricPoint> points;
  train::TrainCallbacks cb;
  cb.on_metrics = [&](const std::vector<quartet::v1::MetricPoint>& p) {
    points.insert(points.end(), p.begin(), p.end());
  };
  auto result = (*trainer)->Train(spec, cb);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->architecture(), "HEADS DPN107 + SPARSE_MOE");
  EXPECT_EQ(result->epochs(0).expert_load_size(), 8);
  EXPECT_NEAR(result->epochs(0).mean_active_experts(), 2.0, 1e-9);
  EXPECT_EQ(result->class_expert().classes(), 10);
  EXPECT_EQ(result->class_expert().experts(), 8);
  EXPECT_EQ(result->class_expert().probability_size(), 80);
  const quartet::v1::Analyses& an = result->analyses();
  ASSERT_EQ(an.hessian_size(), 2);
  EXPECT_EQ(an.hessian(0).subset(), "train");
  EXPECT_EQ(an.hessian(0).samples(), 32);
  EXPECT_EQ(an.hessian(1).samples(), 16);
  EXPECT_EQ(an.hessian(0).eigenvalues_size(), 2);
  EXPECT_EQ(an.hessian(0).parameter_count(), result->parameter_count());
  EXPECT_EQ(an.hessian(0).trace_samples(), 3);
  EXPECT_EQ(an.curvature_sweep().losses_size(), 5);
  EXPECT_EQ(an.surface_1d_size(), 2);
  EXPECT_EQ(an.surface_2d().losses_size(), 9);
  EXPECT_GT(an.efficiency().latency_ms_mean(), 0);
  EXPECT_EQ(an.efficiency().parameter_count(), result->parameter_count());
  // Groups backbone, head, router and "all", once per epoch.
  ASSERT_EQ(an.gradient_variance_size(), 4);
  EXPECT_EQ(an.gradient_variance(0).group(), "backbone");
  EXPECT_GT(an.gradient_variance(3).variance(), 0);
  int streamed = 0;
  for (const auto& p : points) {
    streamed += p.name() == "analysis/hessian/train/eigenvalue/0" ||
                p.name() == "analysis/efficiency/latency_ms" ||
                p.name() == "grad_variance/router/variance";
  }
  EXPECT_EQ(streamed, 3);

  // Every other head trains; two families is a BUILD error.
  for (auto head : {quartet::v1::HEAD_KIND_DENSE, quartet::v1::HEAD_KIND_SOFT_MOE,
                    quartet::v1::HEAD_KIND_HARD_MOE}) {
    auto r = (*trainer)->Train(HeadsSpec(head), {});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->has_analyses());
  }
  spec = HeadsSpec(quartet::v1::HEAD_KIND_DENSE);
  spec.mutable_combination()->add_families("ICNet");
  auto bad = (*trainer)->Train(spec, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(common::ErrorClassOf(bad.status()), quartet::v1::ERROR_CLASS_BUILD);
  EXPECT_NE(bad.status().message().find("exactly 1 family"), absl::string_view::npos);
}

}  // namespace
}  // namespace quartet::worker
