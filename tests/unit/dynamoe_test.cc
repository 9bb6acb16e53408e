// ARCHITECTURE_DYNAMOE: the documented E_l of every schedule, capacity-fair totals,
// ROUTER_DYNAMIC's active counts (between 1 and k_max, more for flatter gates), sparse dispatch
// against the dense computation restricted to the active experts, parameter groups and active
// parameters, gradient variance against a brute-force computation, per-step gradient norms, and the
// trainer end to end.
#include "worker/moe/dynamoe.h"

#include <numeric>

#include "gtest/gtest.h"
#include "worker/moe/network.h"
#include "worker/train/analysis.h"
#include "worker/train/layer_metrics.h"
#include "worker/train/torch_trainer.h"

namespace quartet::worker {
namespace {

using common::ExpertSchedule;
using moe::ScheduleExperts;

int Sum(const std::vector<int>& v) { return std::accumulate(v.begin(), v.end(), 0); }

TEST(DynaMoEScheduleTest, EveryScheduleGivesItsDocumentedExpertCounts) {
  // L = 5, E_min = 1, E_max = 9: t = 0, 1/4, 1/2, 3/4, 1.
  struct Case {
    ExpertSchedule schedule;
    int cycles;
    std::vector<int> want;
  };
  for (const Case& c : {
           Case{ExpertSchedule::kUniform, 1, {5, 5, 5, 5, 5}},
           Case{ExpertSchedule::kDescending, 1, {9, 7, 5, 3, 1}},
           Case{ExpertSchedule::kAscending, 1, {1, 3, 5, 7, 9}},
           Case{ExpertSchedule::kPyramid, 1, {1, 5, 9, 5, 1}},
           Case{ExpertSchedule::kHourglass, 1, {9, 5, 1, 5, 9}},
           Case{ExpertSchedule::kWave, 1, {1, 5, 9, 5, 1}},
           Case{ExpertSchedule::kWave, 2, {1, 9, 1, 9, 1}},
       }) {
    EXPECT_EQ(ScheduleExperts(c.schedule, 5, 1, 9, c.cycles, false), c.want)
        << common::ScheduleName(c.schedule) << " c=" << c.cycles;
  }
  // One layer: t = 0.
  EXPECT_EQ(ScheduleExperts(ExpertSchedule::kDescending, 1, 2, 8, 1, false), std::vector<int>{8});
  EXPECT_EQ(ScheduleExperts(ExpertSchedule::kDescending, 4, 2, 8, 1, false),
            (std::vector<int>{8, 6, 4, 2}));
}

TEST(DynaMoEScheduleTest, CapacityFairSchedulesHaveEqualTotalsAndKeepTheirShape) {
  for (int layers : {1, 2, 3, 4, 5, 6, 8, 12}) {
    for (auto [lo, hi] : {std::pair{1, 9}, std::pair{2, 8}, std::pair{4, 4}, std::pair{1, 64}}) {
      const int target = static_cast<int>(std::lround(layers * (lo + hi) / 2.0));
      for (auto s :
           {ExpertSchedule::kUniform, ExpertSchedule::kDescending, ExpertSchedule::kAscending,
            ExpertSchedule::kPyramid, ExpertSchedule::kWave, ExpertSchedule::kHourglass}) {
        for (int cycles : {1, 2}) {
          const std::vector<int> e = ScheduleExperts(s, layers, lo, hi, cycles, true);
          ASSERT_EQ(static_cast<int>(e.size()), layers);
          EXPECT_EQ(Sum(e), target) << common::ScheduleName(s) << " L=" << layers << " [" << lo
                                    << ", " << hi << "] c=" << cycles;
          for (int x : e) EXPECT_GE(x, 1);
        }
      }
    }
  }
  // Shapes survive the rescaling (L = 5, [1, 9]: raw pyramid 1,5,9,5,1 sums to 21, scaled to 25).
  EXPECT_EQ(ScheduleExperts(ExpertSchedule::kPyramid, 5, 1, 9, 1, true),
            (std::vector<int>{1, 6, 11, 6, 1}));
  const std::vector<int> desc = ScheduleExperts(ExpertSchedule::kDescending, 6, 2, 8, 1, true);
  EXPECT_TRUE(std::is_sorted(desc.rbegin(), desc.rend()));
  EXPECT_GT(desc.front(), desc.back());
}

TEST(DynaMoERouterTest, DynamicActivatesBetweenOneAndKMaxAndMoreForFlatterGates) {
  const auto cumulative = common::DynamicThreshold::kCumulativeMass;
  const torch::Tensor peaked = torch::tensor({{0.90, 0.04, 0.03, 0.03}});
  const torch::Tensor flatter = torch::tensor({{0.30, 0.26, 0.24, 0.20}});
  const torch::Tensor uniform = torch::full({1, 4}, 0.25);
  auto count = [](const torch::Tensor& p, double q, common::DynamicThreshold rule, int k_max) {
    return moe::DynamicActiveCount(p, q, rule, k_max).item<int64_t>();
  };
  EXPECT_EQ(count(peaked, 50, cumulative, 0), 1);
  EXPECT_EQ(count(flatter, 50, cumulative, 0), 2);
  EXPECT_EQ(count(flatter, 80, cumulative, 0), 3);
  EXPECT_EQ(count(flatter, 80, cumulative, 2), 2);  // clipped to k_max
  EXPECT_EQ(count(uniform, 90, cumulative, 0), 4);
  // The literal per-token percentile keeps the same count for distinct probabilities; only ties
  // (a uniform gate) add experts.
  const auto percentile = common::DynamicThreshold::kTokenPercentile;
  EXPECT_EQ(count(peaked, 50, percentile, 0), 2);
  EXPECT_EQ(count(flatter, 50, percentile, 0), 2);
  EXPECT_EQ(count(uniform, 50, percentile, 0), 4);
  EXPECT_EQ(count(uniform, 50, percentile, 3), 3);

  torch::manual_seed(1);
  for (double temperature : {0.1, 1.0, 10.0}) {
    const torch::Tensor logits = torch::randn({500, 8}) / temperature;
    for (auto rule : {cumulative, percentile}) {
      for (int k_max : {0, 1, 3}) {
        moe::TokenRouterOptions o;
        o.kind = common::RouterKind::kDynamic;
        o.threshold = rule;
        o.max_active = k_max;
        const moe::TokenRouting r = moe::RouteTokens(logits, o);
        const torch::Tensor n = r.active.sum(1);
        EXPECT_GE(n.min().item<int64_t>(), 1);
        EXPECT_LE(n.max().item<int64_t>(), k_max > 0 ? k_max : 8);
        EXPECT_TRUE(torch::allclose(r.weights.sum(1), torch::ones({500}), 1e-5, 1e-5));
        EXPECT_EQ(r.weights.masked_select(r.active.logical_not()).abs().sum().item<double>(), 0);
        // The kept experts are the most probable ones.
        const torch::Tensor kept_min =
            std::get<0>(r.probs.masked_fill(r.active.logical_not(), 2.0).min(1));
        const torch::Tensor dropped_max = std::get<0>(r.probs.masked_fill(r.active, -1.0).max(1));
        EXPECT_TRUE(kept_min.ge(dropped_max).all().item<bool>());
      }
    }
  }
  // Flatter gates (higher temperature) activate more experts on average.
  moe::TokenRouterOptions o;
  const torch::Tensor base = torch::randn({2000, 8});
  const double sharp =
      moe::RouteTokens(base * 4, o).active.sum(1).to(torch::kDouble).mean().item<double>();
  const double flat =
      moe::RouteTokens(base / 4, o).active.sum(1).to(torch::kDouble).mean().item<double>();
  EXPECT_LT(sharp + 1.0, flat);
}

TEST(DynaMoERouterTest, TopKAndDenseActivateFixedCounts) {
  torch::manual_seed(2);
  const torch::Tensor logits = torch::randn({64, 6});
  moe::TokenRouterOptions o;
  o.kind = common::RouterKind::kTopK;
  o.top_k = 2;
  EXPECT_TRUE(moe::RouteTokens(logits, o).active.sum(1).eq(2).all().item<bool>());
  o.top_k = 9;  // clipped to E
  EXPECT_TRUE(moe::RouteTokens(logits, o).active.sum(1).eq(6).all().item<bool>());
  o.kind = common::RouterKind::kDense;
  const moe::TokenRouting d = moe::RouteTokens(logits, o);
  EXPECT_TRUE(d.active.all().item<bool>());
  EXPECT_TRUE(torch::allclose(d.weights, d.probs));
}

// An expert that counts the rows it ran on.
torch::nn::Sequential CountingExpert(int64_t width, int64_t* rows) {
  return torch::nn::Sequential(torch::nn::Linear(width, 2 * width), torch::nn::GELU(),
                               torch::nn::Linear(2 * width, width),
                               torch::nn::Functional([rows](torch::Tensor x) {
                                 *rows += x.size(0);
                                 return x;
                               }));
}

TEST(DynaMoEDispatchTest, SparseEqualsDenseRestrictedToTheActiveExpertsAndRunsOnlyThose) {
  torch::manual_seed(3);
  constexpr int64_t kWidth = 8, kExperts = 5, kTokens = 300;
  std::vector<int64_t> rows(kExperts, 0);
  std::vector<torch::nn::Sequential> experts;
  for (int e = 0; e < kExperts; ++e) experts.push_back(CountingExpert(kWidth, &rows[e]));
  const torch::Tensor x = torch::randn({kTokens, kWidth}, torch::requires_grad());
  for (auto kind : {common::RouterKind::kDynamic, common::RouterKind::kTopK}) {
    moe::TokenRouterOptions o;
    o.kind = kind;
    const moe::TokenRouting r = moe::RouteTokens(torch::randn({kTokens, kExperts}), o);
    std::fill(rows.begin(), rows.end(), 0);
    const torch::Tensor sparse = moe::DispatchSparse(x, r, experts);
    for (int e = 0; e < kExperts; ++e) {
      EXPECT_EQ(rows[e], r.active.select(1, e).sum().item<int64_t>()) << "expert " << e;
    }
    const torch::Tensor dense = moe::DispatchDense(x, r, experts);
    EXPECT_TRUE(torch::allclose(sparse, dense, 1e-5, 1e-6));
    // Gradients agree too.
    const torch::Tensor gs = torch::autograd::grad({sparse.pow(2).sum()}, {x})[0];
    const torch::Tensor gd = torch::autograd::grad({dense.pow(2).sum()}, {x})[0];
    EXPECT_TRUE(torch::allclose(gs, gd, 1e-5, 1e-6));
  }
}

moe::DynaMoEOptions SmallOptions(common::RouterKind router, bool token_routing = true) {
  moe::DynaMoEOptions o;
  o.in_channels = 1;
  o.num_classes = 10;
  o.width = 8;
  o.expert_hidden = 12;
  o.layer_experts = {4, 3, 2};
  o.token_routing = token_routing;
  o.router.kind = router;
  o.balance = common::BalanceLossKind::kSwitch;
  return o;
}

TEST(DynaMoENetTest, ForwardRoutesEveryLayerAndCountsActiveParameters) {
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({6, 1, 28, 28});
  for (bool tokens : {true, false}) {
    for (auto router :
         {common::RouterKind::kDynamic, common::RouterKind::kTopK, common::RouterKind::kDense}) {
      moe::DynaMoENet net(SmallOptions(router, tokens));
      net->train();
      const moe::MoEOutput out = net->Forward(x);
      EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{6, 10}));
      ASSERT_EQ(out.layers.size(), 3u);
      // 28 px: 14 x 14 tokens for layer 0, halved at layer L / 2 = 1.
      const std::vector<int64_t> tokens_per_layer =
          tokens ? std::vector<int64_t>{6 * 196, 6 * 49, 6 * 49} : std::vector<int64_t>{6, 6, 6};
      for (size_t l = 0; l < 3; ++l) {
        EXPECT_EQ(out.layers[l].probs.size(0), tokens_per_layer[l]);
        EXPECT_EQ(out.layers[l].probs.size(1), net->options().layer_experts[l]);
      }
      EXPECT_EQ(out.probs.sizes(), (std::vector<int64_t>{6, 4}));
      EXPECT_GT(out.balance_loss.item<double>(), 0.0);
      out.logits.sum().backward();
      // Dense routing uses every parameter on every token.
      const double total = static_cast<double>(models::CountParameters(*net));
      const double all = net->ActiveParametersPerToken({4, 3, 2});
      EXPECT_DOUBLE_EQ(all, total);
      EXPECT_LT(net->ActiveParametersPerToken({1, 1, 1}), total);
    }
  }
}

TEST(DynaMoENetTest, NetworkGroupsCoverEveryParameterOnceAndRefuseFamilies) {
  common::Recipe recipe;
  recipe.architecture = common::ArchitectureKind::kDynaMoE;
  recipe.router = common::RouterKind::kDynamic;
  recipe.dynamoe_schedule = ExpertSchedule::kDescending;
  recipe.dynamoe_width = 8;
  moe::NetworkOptions no;
  no.in_channels = 1;
  auto net = moe::BuildNetwork(recipe, no);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ((*net)->Describe(), "DYNAMOE DESCENDING dynamic [8,6,4,2]");
  std::vector<std::string> names;
  int64_t grouped = 0;
  for (const auto& g : (*net)->ParameterGroups()) {
    names.push_back(g.name);
    for (const auto& p : g.parameters) grouped += p.numel();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"shared", "experts", "router"}));
  EXPECT_EQ(grouped, models::CountParameters((*net)->module()));
  no.families = {"ResNet"};
  EXPECT_EQ(moe::BuildNetwork(recipe, no).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DynaMoENetTest, GradientVarianceMatchesABruteForceComputation) {
  torch::manual_seed(5);
  moe::DynaMoENet net(SmallOptions(common::RouterKind::kDynamic));
  net->eval();  // fixed weights and batch-independent outputs: a deterministic reference
  const torch::Tensor x = torch::randn({16, 1, 12, 12});
  const torch::Tensor y = torch::randint(0, 10, {16});
  std::vector<torch::Tensor> router;
  for (auto& layer : net->layers()) {
    for (const auto& p : layer->RouterParameters()) router.push_back(p);
  }
  auto grads = [&](int k) {
    torch::nn::functional::cross_entropy(net->Forward(x.narrow(0, 4 * k, 4)).logits,
                                         y.narrow(0, 4 * k, 4))
        .backward();
  };
  const auto v = train::analysis::MinibatchGradientVariance({{"router", router}}, 4, grads);
  std::vector<torch::Tensor> flat;
  for (int k = 0; k < 4; ++k) {
    for (auto& p : router) p.mutable_grad() = torch::Tensor();
    grads(k);
    std::vector<torch::Tensor> g;
    for (const auto& p : router) g.push_back(p.grad().flatten().to(torch::kDouble));
    flat.push_back(torch::cat(g));
  }
  const torch::Tensor all = torch::stack(flat);
  const double expected = (all - all.mean(0)).pow(2).sum().item<double>() / 3;
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0].name, "router");
  EXPECT_NEAR(v[0].variance, expected, 1e-6 * expected);
}

TEST(DynaMoENetTest, GradientNormTallyRecordsMeanStdAndCvPerGroup) {
  torch::Tensor a = torch::zeros({2}, torch::requires_grad());
  torch::Tensor b = torch::zeros({1}, torch::requires_grad());
  train::GradientNormTally tally({{"a", {a}, false}, {"b", {b}, true}});
  for (double scale : {1.0, 3.0}) {
    a.mutable_grad() = torch::tensor({3.0f, 4.0f}) * scale;  // ||.|| = 5, 15
    b.mutable_grad() = torch::tensor({12.0f}) * scale;       // 12, 36; all: 13, 39
    tally.Record();
  }
  google::protobuf::RepeatedPtrField<quartet::v1::GradientNormStats> out;
  tally.FillAndReset(&out);
  ASSERT_EQ(out.size(), 3);
  EXPECT_EQ(out[0].group(), "a");
  EXPECT_EQ(out[0].steps(), 2);
  EXPECT_NEAR(out[0].mean(), 10.0, 1e-5);
  EXPECT_NEAR(out[0].std(), 5.0, 1e-4);
  EXPECT_NEAR(out[0].cv(), 0.5, 1e-5);
  EXPECT_EQ(out[2].group(), "all");
  EXPECT_NEAR(out[2].mean(), 26.0, 1e-4);
  google::protobuf::RepeatedPtrField<quartet::v1::GradientNormStats> next;
  tally.FillAndReset(&next);
  EXPECT_EQ(next.size(), 0);  // reset: no steps since
}

quartet::v1::CandidateSpec DynaMoESpec(quartet::v1::Router router) {
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(1);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit(96);
  spec.mutable_data()->set_test_limit(48);
  auto* r = spec.mutable_recipe();
  r->set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
  r->set_router(router);
  r->set_dynamoe_schedule(quartet::v1::EXPERT_SCHEDULE_DESCENDING);
  r->set_dynamoe_layers(3);
  r->set_dynamoe_width(8);
  r->set_dynamoe_expert_hidden(8);
  r->set_dynamoe_balance(quartet::v1::BALANCE_LOSS_SWITCH);
  r->set_batch_size(16);
  r->set_epochs(2);
  r->set_seed(6);
  return spec;
}

TEST(DynaMoETrainerTest, TrainsAndReportsLayersGradientNormsAndActiveParameters) {
  auto trainer = train::TorchTrainer::Create({});
  ASSERT_TRUE(trainer.ok());
  std::vector<quartet::v1::MetricPoint> points;
  train::TrainCallbacks cb;
  cb.on_metrics = [&](const std::vector<quartet::v1::MetricPoint>& p) {
    points.insert(points.end(), p.begin(), p.end());
  };
  auto result = (*trainer)->Train(DynaMoESpec(quartet::v1::ROUTER_DYNAMIC), cb);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->architecture(), "DYNAMOE DESCENDING dynamic [8,5,2]");
  EXPECT_EQ(std::vector<int>(result->layer_experts().begin(), result->layer_experts().end()),
            (std::vector<int>{8, 5, 2}));
  ASSERT_EQ(result->epochs_size(), 2);
  const quartet::v1::EpochMetrics& em = result->epochs(1);
  ASSERT_EQ(em.layers_size(), 3);
  for (const auto& l : em.layers()) {
    EXPECT_EQ(l.active_histogram_size(), l.experts());
    double shares = 0;
    for (double s : l.active_histogram()) shares += s;
    EXPECT_NEAR(shares, 1.0, 1e-9);
    EXPECT_GE(l.mean_active_experts(), 1.0);
    EXPECT_LE(l.mean_active_experts(), l.experts());
    EXPECT_GT(l.tokens(), 0);
  }
  // Groups shared, experts, router and all; every step of the epoch (96 / 16).
  ASSERT_EQ(em.gradient_norms_size(), 4);
  EXPECT_EQ(em.gradient_norms(2).group(), "router");
  EXPECT_EQ(em.gradient_norms(3).group(), "all");
  EXPECT_EQ(em.gradient_norms(3).steps(), 6);
  EXPECT_GT(em.gradient_norms(3).mean(), 0);
  EXPECT_GT(result->active_parameters_per_token(), 0);
  EXPECT_LT(result->active_parameters_per_token(), result->parameter_count());
  int streamed = 0;
  for (const auto& p : points) {
    streamed += p.name() == "layer/2/mean_active_experts" || p.name() == "grad_norm/router/cv";
  }
  EXPECT_EQ(streamed, 4);  // two names, two epochs

  auto dense = (*trainer)->Train(DynaMoESpec(quartet::v1::ROUTER_DENSE), {});
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_DOUBLE_EQ(dense->active_parameters_per_token(),
                   static_cast<double>(dense->parameter_count()));
  quartet::v1::CandidateSpec with_family = DynaMoESpec(quartet::v1::ROUTER_TOP_K);
  with_family.mutable_combination()->add_families("ResNet");
  auto bad = (*trainer)->Train(with_family, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quartet::worker
