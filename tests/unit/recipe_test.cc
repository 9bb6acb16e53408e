// Recipe resolution: defaults, validation naming the field, and the wire round trip.
#include "common/recipe.h"

#include <cmath>
#include <functional>
#include <vector>

#include "common/error_class.h"
#include "common/spec_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::common {
namespace {

using ::testing::HasSubstr;

TEST(SpecIoTest, EnumValuesLoseTheirEnumsPrefixAndOtherTextStays) {
  EXPECT_EQ(ShortEnumValue("ROUTER_TOP_K"), "TOP_K");
  EXPECT_EQ(ShortEnumValue("HEAD_KIND_SOFT_MOE"), "SOFT_MOE");
  EXPECT_EQ(ShortEnumValue("ARCHITECTURE_HEADS"), "HEADS");
  EXPECT_EQ(ShortEnumValue("0.003"), "0.003");
  EXPECT_EQ(ShortEnumValue("ROUTER_BOGUS"), "ROUTER_BOGUS");
  EXPECT_EQ(EnumValuePrefix(quartet::v1::Router_descriptor()), "ROUTER_");
}

TEST(SpecIoTest, AxisFlagsParseBothKinds) {
  auto categorical = ParseAxisFlag("recipe.router=dense,top-k");
  ASSERT_TRUE(categorical.ok());
  EXPECT_EQ(categorical->path(), "recipe.router");
  EXPECT_EQ(categorical->values_size(), 2);
  auto range = ParseAxisFlag("recipe.learning_rate=log:1e-4:1e-2:8");
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->range().log());
  EXPECT_EQ(range->range().strata(), 8);
  EXPECT_FALSE(ParseAxisFlag("recipe.router").ok());
  EXPECT_FALSE(ParseAxisFlag("recipe.learning_rate=log:1e-4").ok());
}

TEST(RecipeTest, EmptyRecipeGetsThePublishedDefaults) {
  auto r = ResolveRecipe({});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->epochs, 1);
  EXPECT_EQ(r->batch_size, 32);
  EXPECT_DOUBLE_EQ(r->learning_rate, 1e-3);
  EXPECT_DOUBLE_EQ(r->weight_decay, 5e-4);
  EXPECT_DOUBLE_EQ(r->gate_lr_multiplier, 2.0);
  EXPECT_DOUBLE_EQ(r->gate_weight_decay_multiplier, 0.5);
  EXPECT_DOUBLE_EQ(r->label_smoothing, 0.1);
  EXPECT_DOUBLE_EQ(r->mixup_alpha, 0.2);
  EXPECT_DOUBLE_EQ(r->grad_clip_norm, 1.0);
  EXPECT_EQ(r->router, RouterKind::kDense);
  EXPECT_EQ(r->optimizer, OptimizerKind::kAdamW);
  EXPECT_FALSE(r->has_seed);
}

TEST(RecipeTest, ExplicitZeroesAreKept) {
  quartet::v1::TrainingRecipe p;
  p.set_mixup_alpha(0);
  p.set_label_smoothing(0);
  p.set_grad_clip_norm(0);
  p.set_seed(0);
  auto r = ResolveRecipe(p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mixup_alpha, 0);
  EXPECT_EQ(r->label_smoothing, 0);
  EXPECT_EQ(r->grad_clip_norm, 0);
  EXPECT_TRUE(r->has_seed);
}

TEST(RecipeTest, BadValuesNameTheirField) {
  quartet::v1::TrainingRecipe p;
  p.set_learning_rate(std::nan(""));
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.learning_rate"));
  p.Clear();
  p.set_dropout(1.0);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.dropout"));
  p.Clear();
  p.set_top_p(0);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.top_p"));
  p.Clear();
  p.set_eta_min(0.5);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.eta_min"));
}

TEST(RecipeTest, RoundTripsThroughTheWireForm) {
  quartet::v1::TrainingRecipe p;
  p.set_router(quartet::v1::ROUTER_TOP_P);
  p.set_top_p(0.7);
  p.set_optimizer(quartet::v1::OPTIMIZER_SGD);
  p.set_seed(99);
  auto r = ResolveRecipe(p);
  ASSERT_TRUE(r.ok());
  auto again = ResolveRecipe(RecipeToProto(*r));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->router, RouterKind::kTopP);
  EXPECT_DOUBLE_EQ(again->top_p, 0.7);
  EXPECT_EQ(again->optimizer, OptimizerKind::kSgd);
  EXPECT_EQ(again->seed, 99u);
}

TEST(RecipeTest, HeadsAndAnalysesDefaultToTheStudy) {
  auto r = ResolveRecipe({});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->architecture, ArchitectureKind::kMoE4);
  EXPECT_EQ(r->head, HeadKind::kDense);
  EXPECT_EQ(r->head_experts, 8);
  EXPECT_EQ(r->head_top_k, 2);
  EXPECT_DOUBLE_EQ(r->head_dropout, 0.1);
  EXPECT_DOUBLE_EQ(r->head_temperature, 1.0);
  EXPECT_DOUBLE_EQ(r->head_kl_weight, 0.05);
  EXPECT_DOUBLE_EQ(r->head_importance_weight, 0.2);
  EXPECT_DOUBLE_EQ(r->head_load_weight, 0.2);
  EXPECT_DOUBLE_EQ(r->head_noise_floor, 0.3);
  EXPECT_EQ(r->head_slots_per_expert, 2);
  EXPECT_FALSE(r->analyses.hessian);
  EXPECT_FALSE(r->analyses.AnyPostTraining());
  EXPECT_EQ(r->analyses.train_samples, 2000);
  EXPECT_EQ(r->analyses.test_samples, 2000);
  EXPECT_EQ(r->analyses.hessian_top_k, 5);
  EXPECT_EQ(r->analyses.hessian_max_iterations, 100);
  EXPECT_DOUBLE_EQ(r->analyses.hessian_tolerance, 1e-3);
  EXPECT_EQ(r->analyses.hutchinson_samples, 100);
  EXPECT_EQ(r->analyses.curvature_points, 21);
  EXPECT_DOUBLE_EQ(r->analyses.curvature_radius, 0.5);
  EXPECT_EQ(r->analyses.latency_batches, 200);
  EXPECT_EQ(r->analyses.latency_warmup_batches, 30);
  EXPECT_EQ(r->analyses.latency_batch_size, 256);
}

TEST(RecipeTest, BadHeadAndAnalysisValuesNameTheirField) {
  quartet::v1::TrainingRecipe p;
  p.set_head_experts(1);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.head_experts"));
  p.Clear();
  p.set_head(quartet::v1::HEAD_KIND_SPARSE_MOE);
  p.set_head_experts(4);
  p.set_head_top_k(5);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.head_top_k"));
  p.Clear();
  p.set_head_noise_floor(-1);
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()),
              HasSubstr("recipe.head_noise_floor"));
  p.Clear();
  p.set_architecture(static_cast<quartet::v1::Architecture>(9));
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()), HasSubstr("recipe.architecture"));
  p.Clear();
  p.mutable_analyses()->set_hessian_tolerance(std::nan(""));
  EXPECT_THAT(std::string(ResolveRecipe(p).status().message()),
              HasSubstr("recipe.analyses.hessian_tolerance"));
  p.Clear();
  p.mutable_analyses()->set_gradient_variance_batches(1);
  auto bad = ResolveRecipe(p);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("recipe.analyses.gradient_variance_batches"));
}

TEST(RecipeTest, HeadsAndAnalysesRoundTrip) {
  quartet::v1::TrainingRecipe p;
  p.set_architecture(quartet::v1::ARCHITECTURE_HEADS);
  p.set_head(quartet::v1::HEAD_KIND_SLOTS_SOFT_MOE);
  p.set_head_experts(4);
  p.set_head_slots_per_expert(3);
  p.set_head_small_input_stem(false);
  p.mutable_analyses()->set_hessian(true);
  p.mutable_analyses()->set_hessian_top_k(2);
  p.mutable_analyses()->set_train_samples(64);
  auto r = ResolveRecipe(p);
  ASSERT_TRUE(r.ok()) << r.status();
  auto again = ResolveRecipe(RecipeToProto(*r));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->architecture, ArchitectureKind::kHeads);
  EXPECT_EQ(again->head, HeadKind::kSlotsSoftMoE);
  EXPECT_EQ(again->head_experts, 4);
  EXPECT_EQ(again->head_slots_per_expert, 3);
  EXPECT_FALSE(again->head_small_input_stem);
  EXPECT_TRUE(again->analyses.hessian);
  EXPECT_EQ(again->analyses.hessian_top_k, 2);
  EXPECT_EQ(again->analyses.train_samples, 64);
  EXPECT_EQ(again->analyses.test_samples, 2000);
  EXPECT_STREQ(HeadName(again->head), "SLOTS_SOFT_MOE");
}

TEST(RecipeTest, DynaMoEDefaultsRoundTripAndBadValuesNameTheirField) {
  quartet::v1::TrainingRecipe p;
  p.set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
  p.set_router(quartet::v1::ROUTER_DYNAMIC);
  auto r = ResolveRecipe(p);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->architecture, ArchitectureKind::kDynaMoE);
  EXPECT_EQ(r->dynamoe_layers, 4);
  EXPECT_EQ(r->dynamoe_min_experts, 2);
  EXPECT_EQ(r->dynamoe_max_experts, 8);
  EXPECT_EQ(r->dynamoe_schedule, ExpertSchedule::kUniform);
  EXPECT_TRUE(r->dynamoe_capacity_fair);
  EXPECT_DOUBLE_EQ(r->dynamoe_percentile, 50);
  EXPECT_EQ(r->dynamoe_threshold, DynamicThreshold::kCumulativeMass);
  EXPECT_EQ(r->dynamoe_balance, BalanceLossKind::kNone);
  EXPECT_TRUE(r->dynamoe_token_routing);

  p.set_dynamoe_schedule(quartet::v1::EXPERT_SCHEDULE_HOURGLASS);
  p.set_dynamoe_balance(quartet::v1::BALANCE_LOSS_IMPORTANCE_CV2);
  p.set_dynamoe_threshold(quartet::v1::DYNAMIC_THRESHOLD_TOKEN_PERCENTILE);
  p.set_dynamoe_layers(6);
  p.set_dynamoe_wave_cycles(2);
  p.set_dynamoe_capacity_fair(false);
  p.set_dynamoe_token_routing(false);
  r = ResolveRecipe(p);
  ASSERT_TRUE(r.ok()) << r.status();
  auto again = ResolveRecipe(RecipeToProto(*r));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->router, RouterKind::kDynamic);
  EXPECT_EQ(again->dynamoe_schedule, ExpertSchedule::kHourglass);
  EXPECT_EQ(again->dynamoe_balance, BalanceLossKind::kImportanceCv2);
  EXPECT_EQ(again->dynamoe_threshold, DynamicThreshold::kTokenPercentile);
  EXPECT_EQ(again->dynamoe_layers, 6);
  EXPECT_EQ(again->dynamoe_wave_cycles, 2);
  EXPECT_FALSE(again->dynamoe_capacity_fair);
  EXPECT_FALSE(again->dynamoe_token_routing);
  EXPECT_STREQ(ScheduleName(again->dynamoe_schedule), "HOURGLASS");
  EXPECT_STREQ(ArchitectureName(again->architecture), "DYNAMOE");

  struct Bad {
    std::function<void(quartet::v1::TrainingRecipe*)> set;
    const char* field;
  };
  for (const Bad& b : std::vector<Bad>{
           {[](auto* q) { q->set_dynamoe_layers(0); }, "recipe.dynamoe_layers"},
           {[](auto* q) { q->set_dynamoe_max_experts(65); }, "recipe.dynamoe_max_experts"},
           {[](auto* q) {
              q->set_dynamoe_min_experts(6);
              q->set_dynamoe_max_experts(4);
            },
            "recipe.dynamoe_min_experts"},
           {[](auto* q) { q->set_dynamoe_percentile(100); }, "recipe.dynamoe_percentile"},
           {[](auto* q) { q->set_dynamoe_percentile(0); }, "recipe.dynamoe_percentile"},
           {[](auto* q) { q->set_dynamoe_schedule(static_cast<quartet::v1::ExpertSchedule>(9)); },
            "recipe.dynamoe_schedule"},
           {[](auto* q) { q->set_router(quartet::v1::ROUTER_TOP_P); }, "recipe.router"},
           {[](auto* q) {
              q->set_architecture(quartet::v1::ARCHITECTURE_MOE4);
              q->set_router(quartet::v1::ROUTER_DYNAMIC);
            },
            "recipe.router"},
       }) {
    quartet::v1::TrainingRecipe q;
    q.set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
    b.set(&q);
    auto bad = ResolveRecipe(q);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << b.field;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(b.field));
  }
}

TEST(SpecIoTest, ReadsYamlAndJsonAndNamesUnknownFields) {
  quartet::v1::TrainingRecipe r;
  ASSERT_TRUE(ParseMessage("epochs: 3\nrouter: ROUTER_TOP_K\nlearning_rate: 2e-3\naugment: false\n",
                           TextFormat::kYaml, "x.yaml", &r)
                  .ok());
  EXPECT_EQ(r.epochs(), 3);
  EXPECT_EQ(r.router(), quartet::v1::ROUTER_TOP_K);
  EXPECT_DOUBLE_EQ(r.learning_rate(), 2e-3);
  EXPECT_TRUE(r.has_augment());
  EXPECT_FALSE(r.augment());
  auto bad = ParseMessage("{\"epochz\": 3}", TextFormat::kJson, "x.json", &r);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("x.json"));
  EXPECT_THAT(std::string(bad.message()), HasSubstr("epochz"));
  EXPECT_EQ(ReadMessageFile("/nonexistent/spec.yaml", &r).code(), absl::StatusCode::kNotFound);
}

TEST(SpecIoTest, YamlWithInvalidUtf8IsInvalidArgumentNotACrash) {
  // Found by tests/fuzz/fuzz_campaign_spec: a key or value that is not UTF-8 used to throw out of
  // ParseMessage.
  quartet::v1::TrainingRecipe r;
  for (const char* text : {"epochs\xC9: 3\n", "dropout: \"\xFF\"\n"}) {
    auto s = ParseMessage(text, TextFormat::kYaml, "x.yaml", &r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(s.message()), HasSubstr("x.yaml"));
  }
}

TEST(ErrorClassTest, PayloadWinsOverTheCodeAndRetryabilityFollowsTheClass) {
  absl::Status s = WithErrorClass(absl::AbortedError("nan"), quartet::v1::ERROR_CLASS_NUMERIC);
  EXPECT_EQ(ErrorClassOf(s), quartet::v1::ERROR_CLASS_NUMERIC);
  EXPECT_EQ(ErrorClassOf(absl::ResourceExhaustedError("oom")), quartet::v1::ERROR_CLASS_OOM);
  EXPECT_EQ(ErrorClassOf(absl::CancelledError("stop")), quartet::v1::ERROR_CLASS_PREEMPTED);
  EXPECT_FALSE(IsRetryable(quartet::v1::ERROR_CLASS_NUMERIC));
  EXPECT_TRUE(IsRetryable(quartet::v1::ERROR_CLASS_PREEMPTED));
}

}  // namespace
}  // namespace quartet::common
