// The training recipe: schedule, mixup, and the LibTorch trainer end to end on synthetic data,
// including the out-of-memory fallback, numeric failure, time budget and stop requests.
#include <cmath>
#include <random>
#include <thread>

#include "common/error_class.h"
#include "gtest/gtest.h"
#include "worker/train/mixup.h"
#include "worker/train/schedule.h"
#include "worker/train/torch_trainer.h"

namespace quartet::worker::train {
namespace {

TEST(ScheduleTest, WarmupThenCosineMatchTheFormulaAtSampledSteps) {
  const int64_t total = 1000, warmup = 50;
  const double start = 0.1, floor = 1e-3;
  for (int64_t step : {0, 1, 25, 49}) {
    EXPECT_NEAR(LearningRateFactor(step, total, warmup, start, floor),
                start + (1 - start) * step / 50.0, 1e-12)
        << step;
  }
  for (int64_t step : {50, 51, 300, 524, 900, 999}) {
    const double t = (step - 50) / 949.0;
    EXPECT_NEAR(LearningRateFactor(step, total, warmup, start, floor),
                floor + (1 - floor) * (1 + std::cos(M_PI * t)) / 2, 1e-12)
        << step;
  }
  EXPECT_NEAR(LearningRateFactor(50, total, warmup, start, floor), 1.0, 1e-12);
  EXPECT_NEAR(LearningRateFactor(999, total, warmup, start, floor), floor, 1e-12);
  EXPECT_NEAR(LearningRateFactor(5000, total, warmup, start, floor), floor, 1e-12);
  // No warm-up: starts at the peak.
  EXPECT_NEAR(LearningRateFactor(0, 10, 0, start, floor), 1.0, 1e-12);
}

TEST(MixupTest, LambdaIsBetaDistributedAndDegeneratesAtZeroAlpha) {
  std::mt19937_64 rng(1);
  double sum = 0, sum_sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double l = SampleMixupLambda(0.4, rng);
    ASSERT_GE(l, 0.0);
    ASSERT_LE(l, 1.0);
    sum += l;
    sum_sq += l * l;
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.01);
  EXPECT_NEAR(var, 1.0 / (4 * (2 * 0.4 + 1)), 0.01);  // Beta(a, a) variance 1 / (4 (2a + 1))
  EXPECT_EQ(SampleMixupLambda(0.0, rng), 1.0);
  for (int i = 0; i < 200; ++i) {
    const double l = SampleMixupLambda(1e-9, rng);
    EXPECT_TRUE(l < 1e-6 || l > 1 - 1e-6) << l;
  }
}

// With alpha -> 0 the loss and the gradients of a mixup step equal plain training's.
TEST(MixupTest, VanishingAlphaEqualsPlainTraining) {
  torch::manual_seed(5);
  torch::nn::Sequential net(torch::nn::Linear(12, 16), torch::nn::ReLU(), torch::nn::Linear(16, 4));
  torch::Tensor x = torch::randn({8, 12});
  torch::Tensor y = torch::randint(0, 4, {8}, torch::kLong);
  auto grads = [&](const MixedBatch& b) {
    net->zero_grad();
    torch::Tensor loss = MixupLoss(net->forward(b.x), b, 0.1);
    loss.backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad().clone());
    return std::make_pair(loss.item<double>(), g);
  };
  auto plain = grads(Mixup(x, y, 1.0, torch::Tensor()));
  std::mt19937_64 rng(9);
  for (int i = 0; i < 10; ++i) {
    const double lam = SampleMixupLambda(1e-9, rng);
    auto mixed = grads(Mixup(x, y, lam, torch::randperm(8, torch::kLong)));
    EXPECT_NEAR(mixed.first, plain.first, 1e-5) << "lambda " << lam;
    for (size_t j = 0; j < plain.second.size(); ++j) {
      EXPECT_TRUE(torch::allclose(mixed.second[j], plain.second[j], 1e-4, 1e-6));
    }
  }
  // And a real mix is different.
  auto real = grads(Mixup(x, y, 0.6, torch::randperm(8, torch::kLong)));
  EXPECT_GT(std::abs(real.first - plain.first), 1e-4);
}

quartet::v1::CandidateSpec SmallSpec() {
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(1);
  for (const char* f : {"ICNet", "DPN107"}) spec.mutable_combination()->add_families(f);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit(256);
  spec.mutable_data()->set_test_limit(128);
  auto* r = spec.mutable_recipe();
  r->set_batch_size(16);
  r->set_learning_rate(3e-3);
  r->set_seed(4);
  return spec;
}

std::unique_ptr<TorchTrainer> MakeTrainer(TorchTrainer::Options o = {}) {
  o.progress_every_steps = 4;
  auto t = TorchTrainer::Create(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(*t);
}

TEST(TrainerTest, TrainsAboveChanceAndReportsEveryMetric) {
  auto trainer = MakeTrainer();
  quartet::v1::CandidateSpec spec = SmallSpec();
  spec.mutable_recipe()->set_epochs(2);
  std::vector<quartet::v1::MetricPoint> points;
  int progress_calls = 0;
  TrainCallbacks cb;
  cb.on_metrics = [&](const std::vector<quartet::v1::MetricPoint>& p) {
    points.insert(points.end(), p.begin(), p.end());
  };
  cb.on_progress = [&](const TrainProgress&) { ++progress_calls; };
  auto result = trainer->Train(spec, cb);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->test_accuracy(), 0.2);  // 10 classes: chance is 0.1
  ASSERT_EQ(result->epochs_size(), 2);
  const auto& e = result->epochs(1);
  EXPECT_EQ(e.expert_load_size(), 2);
  EXPECT_NEAR(e.expert_load(0) + e.expert_load(1), 1.0, 1e-6);
  EXPECT_GE(e.gate_temperature(), 0.5);
  EXPECT_LE(e.gate_temperature(), 5.0);
  EXPECT_GT(e.samples_per_second(), 0);
  EXPECT_GT(e.peak_memory_bytes(), 0);
  EXPECT_NEAR(e.mean_active_experts(), 2.0, 1e-9);  // dense
  EXPECT_EQ(result->micro_batch_size(), 16);
  EXPECT_EQ(result->input_size(), 32);
  EXPECT_GT(result->parameter_count(), 50538 + 15466);
  // The learning rate at the last step follows the schedule: 16 steps, 5% warm-up = 1 step.
  EXPECT_NEAR(e.learning_rate(), 3e-3 * LearningRateFactor(31, 32, 2, 0.1, 1e-6 / 3e-3), 1e-12);
  EXPECT_GT(progress_calls, 0);
  int test_accuracy_points = 0;
  for (const auto& p : points) test_accuracy_points += p.name() == "test_accuracy";
  EXPECT_EQ(test_accuracy_points, 2);
}

TEST(TrainerTest, SameSeedSameResult) {
  auto a = MakeTrainer()->Train(SmallSpec(), {});
  auto b = MakeTrainer()->Train(SmallSpec(), {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->test_accuracy(), b->test_accuracy());
  EXPECT_EQ(a->test_loss(), b->test_loss());
}

// The slots of one worker: trainers of one process training at the same time on two threads get,
// bit for bit, the results each gets alone (their shuffles, augmentation, mixup and dropout draw
// from each run's own generator; models are built one at a time).
TEST(TrainerTest, ConcurrentTrainersGetTheResultsEachGetsAlone) {
  TorchTrainer::Options o;
  o.threads = 1;
  quartet::v1::CandidateSpec a = SmallSpec();
  quartet::v1::CandidateSpec b = SmallSpec();
  b.set_candidate_id(2);
  b.mutable_combination()->clear_families();
  for (const char* f : {"AirNet", "ICNet"}) b.mutable_combination()->add_families(f);
  b.mutable_recipe()->set_seed(7);
  b.mutable_recipe()->set_dropout(0.2);
  auto alone_a = MakeTrainer(o)->Train(a, {});
  auto alone_b = MakeTrainer(o)->Train(b, {});
  ASSERT_TRUE(alone_a.ok() && alone_b.ok());
  absl::StatusOr<quartet::v1::Result> together_a, together_b;
  auto trainer_a = MakeTrainer(o), trainer_b = MakeTrainer(o);
  std::thread slot_a([&] { together_a = trainer_a->Train(a, {}); });
  std::thread slot_b([&] { together_b = trainer_b->Train(b, {}); });
  slot_a.join();
  slot_b.join();
  ASSERT_TRUE(together_a.ok() && together_b.ok());
  EXPECT_EQ(together_a->test_loss(), alone_a->test_loss());
  EXPECT_EQ(together_a->epochs(0).train_loss(), alone_a->epochs(0).train_loss());
  EXPECT_EQ(together_b->test_loss(), alone_b->test_loss());
  EXPECT_EQ(together_b->epochs(0).train_loss(), alone_b->epochs(0).train_loss());
  EXPECT_NE(alone_a->test_loss(), alone_b->test_loss());
}

TEST(TrainerTest, TopKAndTopPRoutersTrain) {
  for (auto router : {quartet::v1::ROUTER_TOP_K, quartet::v1::ROUTER_TOP_P}) {
    quartet::v1::CandidateSpec spec = SmallSpec();
    spec.mutable_combination()->add_families("Diffuser");
    spec.mutable_recipe()->set_router(router);
    spec.mutable_recipe()->set_top_k(1);
    auto r = MakeTrainer()->Train(spec, {});
    ASSERT_TRUE(r.ok()) << r.status();
    const double active = r->epochs(0).mean_active_experts();
    if (router == quartet::v1::ROUTER_TOP_K) EXPECT_NEAR(active, 1.0, 1e-9);
    if (router == quartet::v1::ROUTER_TOP_P) {
      EXPECT_GE(active, 1.0);
      EXPECT_LE(active, 3.0);
    }
  }
}

TEST(TrainerTest, OutOfMemoryHalvesTheMicroBatchKeepingTheEffectiveBatch) {
  TorchTrainer::Options o;
  o.inject_oom_micro_batch_limit = 4;
  auto r = MakeTrainer(o)->Train(SmallSpec(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->micro_batch_size(), 4);
  EXPECT_EQ(r->oom_fallbacks(), 2);  // 16 -> 8 -> 4
  EXPECT_GT(r->test_accuracy(), 0.15);
}

TEST(TrainerTest, OutOfMemoryAtAMicroBatchOfOneFailsWithOom) {
  TorchTrainer::Options o;
  o.inject_oom_micro_batch_limit = 0;
  auto r = MakeTrainer(o)->Train(SmallSpec(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(common::ErrorClassOf(r.status()), quartet::v1::ERROR_CLASS_OOM);
}

TEST(TrainerTest, NonFiniteLossFailsWithNumeric) {
  TorchTrainer::Options o;
  o.inject_nan_loss_at_step = 3;
  auto r = MakeTrainer(o)->Train(SmallSpec(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(common::ErrorClassOf(r.status()), quartet::v1::ERROR_CLASS_NUMERIC);
  EXPECT_NE(r.status().message().find("step 3"), absl::string_view::npos) << r.status();
}

TEST(TrainerTest, StopAndTimeBudget) {
  TrainCallbacks cb;
  int polls = 0;
  cb.should_stop = [&] { return ++polls > 3; };
  auto stopped = MakeTrainer()->Train(SmallSpec(), cb);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(common::ErrorClassOf(stopped.status()), quartet::v1::ERROR_CLASS_PREEMPTED);

  quartet::v1::CandidateSpec spec = SmallSpec();
  spec.mutable_recipe()->set_time_budget_seconds(1e-6);
  auto late = MakeTrainer()->Train(spec, {});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(common::ErrorClassOf(late.status()), quartet::v1::ERROR_CLASS_TIMEOUT);
}

TEST(TrainerTest, BadSpecsFailWithBuildOrData) {
  quartet::v1::CandidateSpec spec = SmallSpec();
  spec.mutable_combination()->add_families("NoSuchNet");
  auto r = MakeTrainer()->Train(spec, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(common::ErrorClassOf(r.status()), quartet::v1::ERROR_CLASS_BUILD);

  spec = SmallSpec();
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_CIFAR10);
  spec.mutable_data()->set_data_dir("/nonexistent/cifar");
  r = MakeTrainer()->Train(spec, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(common::ErrorClassOf(r.status()), quartet::v1::ERROR_CLASS_DATA);
  EXPECT_NE(r.status().message().find("/nonexistent/cifar"), absl::string_view::npos);
}

TEST(TrainerTest, RejectsAnUnusableDevice) {
  TorchTrainer::Options o;
  o.device = "tpu:9";
  EXPECT_EQ(TorchTrainer::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  if (!torch::cuda::is_available()) {
    o.device = "cuda:0";
    EXPECT_EQ(TorchTrainer::Create(o).status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace quartet::worker::train
