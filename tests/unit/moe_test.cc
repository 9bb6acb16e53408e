// The MoE4: gate temperature, routers, balance losses, and any 4 families combining.
#include <algorithm>
#include <atomic>
#include <map>
#include <numeric>

#include "common/catalog.h"
#include "coordinator/space/sampler.h"
#include "coordinator/space/space.h"
#include "gtest/gtest.h"
#include "worker/moe/moe4.h"

namespace quartet::worker::moe {
namespace {

// A linear classifier over the mean pixel that counts the samples it ran on.
class CountingExpertImpl : public models::ClassifierImpl {
 public:
  explicit CountingExpertImpl(int64_t channels, int64_t classes) {
    fc = register_module("fc", torch::nn::Linear(channels, classes));
  }
  torch::Tensor forward(torch::Tensor x) override {
    samples += x.size(0);
    calls++;
    return fc(x.mean({2, 3}));
  }
  torch::nn::Linear fc{nullptr};
  int64_t samples = 0, calls = 0;
};

struct Fixture {
  std::vector<std::shared_ptr<CountingExpertImpl>> experts;
  std::shared_ptr<MoE4Impl> moe;
};

Fixture MakeMoe(RouterOptions router, int64_t num_experts = 4) {
  torch::manual_seed(1);
  Fixture f;
  std::vector<models::ClassifierPtr> as_classifiers;
  for (int64_t i = 0; i < num_experts; ++i) {
    f.experts.push_back(std::make_shared<CountingExpertImpl>(3, 10));
    as_classifiers.push_back(f.experts.back());
  }
  MoE4Options o;
  o.in_channels = 3;
  o.num_classes = 10;
  o.router = router;
  f.moe = std::make_shared<MoE4Impl>(o, as_classifiers);
  return f;
}

TEST(GateTest, TemperatureStartsAtTwoReceivesGradientAndStaysInItsClamp) {
  Gate gate(3, 4);
  EXPECT_DOUBLE_EQ(gate->Temperature().item<double>(), 2.0);
  torch::Tensor x = torch::randn({8, 3, 16, 16});
  torch::Tensor logits = gate->forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{8, 4}));
  (logits.softmax(1).select(1, 0).sum()).backward();
  ASSERT_TRUE(gate->temperature.grad().defined());
  EXPECT_NE(gate->temperature.grad().item<double>(), 0.0);

  // Big steps in both directions: the parameter is clamped back, the effective value stays in
  // range.
  torch::optim::SGD opt(gate->parameters(), torch::optim::SGDOptions(1000.0));
  for (double direction : {1.0, -1.0}) {
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad();
      (gate->temperature * direction).backward();
      opt.step();
      gate->ClampTemperature();
      const double t = gate->temperature.item<double>();
      EXPECT_GE(t, GateImpl::kMinTemperature);
      EXPECT_LE(t, GateImpl::kMaxTemperature);
    }
  }
  // At the clamp boundary the parameter still receives gradient (clamp passes it at the edge).
  opt.zero_grad();
  gate->forward(x).softmax(1).select(1, 1).sum().backward();
  EXPECT_TRUE(gate->temperature.grad().defined());
}

TEST(GateTest, NoiseOnlyInTraining) {
  Gate gate(3, 4);
  torch::Tensor x = torch::randn({4, 3, 8, 8});
  gate->eval();
  EXPECT_TRUE(torch::equal(gate->forward(x), gate->forward(x)));
  gate->train();
  gate->dropout = 0;  // isolate the noise from dropout
  torch::manual_seed(3);
  torch::Tensor a = gate->forward(x);
  torch::manual_seed(4);
  torch::Tensor b = gate->forward(x);
  EXPECT_FALSE(torch::allclose(a, b));
}

TEST(RouterTest, DenseRunsEveryExpertOnEverySample) {
  Fixture f = MakeMoe({common::RouterKind::kDense});
  torch::Tensor x = torch::randn({6, 3, 8, 8});
  MoEOutput out = f.moe->Forward(x);
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{6, 10}));
  for (const auto& e : f.experts) EXPECT_EQ(e->samples, 6);
  EXPECT_TRUE(out.active.all().item<bool>());
}

TEST(RouterTest, TopKRunsExactlyKExpertsAndEqualsTheDenseMixRestrictedToThem) {
  for (int k : {1, 2, 3}) {
    Fixture f = MakeMoe({common::RouterKind::kTopK, k});
    f.moe->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor x = torch::randn({16, 3, 8, 8});
    MoEOutput out = f.moe->Forward(x);
    int64_t ran = 0;
    for (const auto& e : f.experts) ran += e->samples;
    EXPECT_EQ(ran, 16 * k) << "k=" << k;
    EXPECT_TRUE((out.active.sum(1) == k).all().item<bool>());
    // Reference: every expert on the full batch, mixed with p renormalised over the top k.
    torch::Tensor p = out.probs;
    torch::Tensor idx = std::get<1>(p.topk(k, 1));
    torch::Tensor mask = torch::zeros_like(p).scatter(1, idx, 1.0);
    torch::Tensor w = p * mask / (p * mask).sum(1, true);
    std::vector<torch::Tensor> full;
    for (const auto& e : f.experts) full.push_back(e->forward(x));
    torch::Tensor ref = (w.unsqueeze(2) * torch::stack(full, 1)).sum(1);
    EXPECT_TRUE(torch::allclose(out.logits, ref, 1e-5, 1e-6)) << "k=" << k;
  }
}

TEST(RouterTest, TopPUsesTheSmallestSetReachingPWithinItsBounds) {
  for (double p_mass : {0.3, 0.6, 0.9}) {
    for (int max_active : {0, 2}) {
      Fixture f = MakeMoe({common::RouterKind::kTopP, 2, p_mass, max_active});
      f.moe->eval();
      torch::NoGradGuard no_grad;
      torch::Tensor x = torch::randn({32, 3, 8, 8}) * 3;
      MoEOutput out = f.moe->Forward(x);
      auto probs = out.probs.accessor<float, 2>();
      auto active = out.active.accessor<bool, 2>();
      const int limit = max_active > 0 ? max_active : 4;
      for (int64_t i = 0; i < 32; ++i) {
        std::vector<std::pair<float, bool>> row;
        for (int e = 0; e < 4; ++e) row.push_back({probs[i][e], active[i][e]});
        std::sort(row.begin(), row.end(), [](auto a, auto b) { return a.first > b.first; });
        int n = 0;
        double mass = 0;
        for (const auto& [pr, on] : row) {
          if (on) {
            ++n;
            mass += pr;
          }
        }
        ASSERT_GE(n, 1);
        ASSERT_LE(n, limit);
        // The active set is a prefix of the sorted experts.
        for (int j = 0; j < 4; ++j) EXPECT_EQ(row[j].second, j < n) << "sample " << i;
        // It reaches p unless capped, and without its last member it would not.
        if (n < limit) EXPECT_GE(mass + 1e-6, p_mass);
        EXPECT_LT(mass - row[n - 1].first, p_mass + 1e-6);
      }
    }
  }
}

TEST(RouterTest, BalanceLossesHaveGradientOnTheGate) {
  for (auto kind :
       {common::RouterKind::kDense, common::RouterKind::kTopK, common::RouterKind::kTopP}) {
    Fixture f = MakeMoe({kind, 2, 0.5});
    torch::Tensor x = torch::randn({16, 3, 8, 8});
    MoEOutput out = f.moe->Forward(x);
    ASSERT_TRUE(out.balance_loss.requires_grad());
    out.balance_loss.backward();
    torch::Tensor g = f.moe->gate()->fc2->weight.grad();
    ASSERT_TRUE(g.defined());
    EXPECT_GT(g.abs().sum().item<double>(), 0.0);
  }
}

TEST(RoutingStatsTest, LoadCvAndEntropy) {
  MoEOutput out;
  out.probs = torch::tensor({{1.0f, 0.0f}, {1.0f, 0.0f}});
  out.active = torch::tensor({{true, false}, {true, false}});
  RoutingStats s;
  s.Add(out);
  EXPECT_NEAR(s.Load(false)[0], 1.0, 1e-9);
  EXPECT_NEAR(s.LoadCv(false), 1.0, 1e-9);  // max CV for E = 2: sqrt(E - 1)
  EXPECT_NEAR(s.NormalizedEntropy(), 0.0, 1e-6);
  EXPECT_NEAR(s.MeanActive(), 1.0, 1e-9);
  RoutingStats even;
  out.probs = torch::tensor({{0.5f, 0.5f}});
  out.active = torch::tensor({{true, true}});
  even.Add(out);
  EXPECT_NEAR(even.LoadCv(true), 0.0, 1e-9);
  EXPECT_NEAR(even.NormalizedEntropy(), 1.0, 1e-6);
}

// ---- Expert-parallel execution ----

// One MoE4 training step's outcome: logits and every parameter's gradient, in parameter order.
struct StepResult {
  torch::Tensor logits;
  std::vector<torch::Tensor> grads;
  bool ran_parallel = false;
};

// Two forward/backward steps (so the second is scheduled by measured times) of a MoE4 whose four
// experts all draw random numbers in training: dropout (SqueezeNet, MobileNetV3), noise and
// timesteps (Diffuser), weight sampling (BayesianNet).
StepResult TrainSteps(bool parallel, int threads, common::RouterKind router) {
  const int saved_threads = at::get_num_threads();
  torch::set_num_threads(threads);
  MoE4Options o;
  o.experts = {"SqueezeNet", "MobileNetV3", "Diffuser", "BayesianNet"};
  o.input_size = 32;
  o.dropout = 0.5;
  o.seed = 7;
  o.router.kind = router;
  o.router.top_k = 2;
  o.parallel_experts = parallel;
  std::shared_ptr<MoE4Impl> moe = MoE4Impl::Build(o).value();
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({8, 3, 32, 32});
  const torch::Tensor y = torch::randint(10, {8});
  StepResult r;
  for (int step = 0; step < 2; ++step) {
    moe->zero_grad();
    MoEOutput out = moe->Forward(x);
    r.ran_parallel = moe->ran_parallel();
    moe->Backward(torch::nn::functional::cross_entropy(out.logits, y) + 0.1 * out.balance_loss);
    r.logits = out.logits.detach().clone();
  }
  for (const auto& p : moe->parameters()) {
    r.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  }
  torch::set_num_threads(saved_threads);
  return r;
}

TEST(ParallelExpertsTest, SameResultAsOneAfterAnotherOnOneThread) {
  for (auto router : {common::RouterKind::kDense, common::RouterKind::kTopK}) {
    SCOPED_TRACE(router == common::RouterKind::kDense ? "dense" : "top-k");
    StepResult parallel = TrainSteps(true, 2, router);
    StepResult serial = TrainSteps(false, 1, router);
    ASSERT_TRUE(parallel.ran_parallel);
    ASSERT_FALSE(serial.ran_parallel);
    // Each task runs single-threaded, as everything does on one thread, and draws from its own
    // generator: a different dropout mask or noise draw would move these far beyond rounding.
    EXPECT_TRUE(torch::allclose(parallel.logits, serial.logits, 1e-4, 1e-5));
    ASSERT_EQ(parallel.grads.size(), serial.grads.size());
    double grad_norm = 0;
    for (size_t i = 0; i < parallel.grads.size(); ++i) {
      EXPECT_TRUE(torch::allclose(parallel.grads[i], serial.grads[i], 1e-3, 1e-5)) << "param " << i;
      grad_norm += parallel.grads[i].abs().sum().item<double>();
    }
    EXPECT_GT(grad_norm, 0.0);
  }
}

TEST(ParallelExpertsTest, SeededRunsAreIdenticalWhateverTheSchedule) {
  StepResult a = TrainSteps(true, 2, common::RouterKind::kDense);
  StepResult b = TrainSteps(true, 2, common::RouterKind::kDense);
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.grads[i], b.grads[i])) << "param " << i;
  }
}

TEST(ParallelExpertsTest, OffWhenThreadsExceedTheTasksOrOnOneThread) {
  EXPECT_FALSE(TrainSteps(true, 1, common::RouterKind::kDense).ran_parallel);
  EXPECT_FALSE(TrainSteps(true, 6, common::RouterKind::kDense).ran_parallel);  // 5 tasks
}

// Any 4 families combine: a seeded sample of 200 combinations of the 29 canonical families, each a
// MoE4 running forward and backward at the largest of its families' minimum input sizes.
class AnyFourCombineTest : public ::testing::TestWithParam<int> {};

std::vector<std::vector<std::string>> SampledCombinations() {
  const auto pool = common::FamilyCatalog::Get().DefaultPool();
  auto space = coordinator::space::Space::Create(static_cast<int>(pool.size()), 4, {}).value();
  auto sampler =
      coordinator::space::CreateSampler(coordinator::space::SamplerKind::kUniform, space, 2026)
          .value();
  std::vector<std::vector<std::string>> out;
  for (int i = 0; i < 200; ++i) {
    std::vector<std::string> names;
    for (int idx : space.Unrank(sampler->Next().value())) names.push_back(pool[idx]);
    out.push_back(names);
  }
  return out;
}

TEST_P(AnyFourCombineTest, RunsForwardAndBackwardAtTheLargestMinimumSize) {
  static const auto* combos = new std::vector<std::vector<std::string>>(SampledCombinations());
  const auto& names = (*combos)[GetParam()];
  int size = 1;
  for (const auto& n : names) {
    size = std::max(size, common::FamilyCatalog::Get().Resolve(n)->variant->min_input_size);
  }
  MoE4Options o;
  o.experts = names;
  o.in_channels = 3;
  o.num_classes = 10;
  o.input_size = size;
  o.seed = GetParam();
  auto moe = MoE4Impl::Build(o);
  ASSERT_TRUE(moe.ok()) << moe.status();
  (*moe)->train();
  torch::Tensor x = torch::randn({2, 3, size, size});
  MoEOutput out = (*moe)->Forward(x);
  ASSERT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 10}));
  ASSERT_TRUE(torch::isfinite(out.logits).all().item<bool>());
  (torch::nn::functional::cross_entropy(out.logits, torch::tensor({3, 5})) + out.balance_loss)
      .backward();
  for (const auto& expert : (*moe)->experts()) {
    EXPECT_TRUE(expert->parameters().front().grad().defined());
  }
  EXPECT_TRUE((*moe)->gate()->fc2->weight.grad().defined());
}

INSTANTIATE_TEST_SUITE_P(Sample, AnyFourCombineTest, ::testing::Range(0, 200));

}  // namespace
}  // namespace quartet::worker::moe
