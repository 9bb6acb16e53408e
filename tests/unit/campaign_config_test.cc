// ResolveCampaign's bounds on client text: names counted in characters, NUL bytes and control
// characters refused, long input echoed short, and one network per pool.
#include "coordinator/core/campaign_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/input_bounds.h"
#include "gmock/gmock.h"

namespace quartet::coordinator {
namespace {

using quartet::v1::CampaignConfig;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

CampaignConfig Config() {
  CampaignConfig c;
  c.set_name("bounds");
  for (const char* f : {"AirNet", "BagNet", "ResNet"}) c.add_pool(f);
  c.set_k(2);
  c.set_budget(1);
  c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  return c;
}

void ExpectInvalid(const CampaignConfig& c, absl::string_view field) {
  auto r = ResolveCampaign(c);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), StartsWith(absl::StrCat(field, ": ")));
}

TEST(CampaignConfigBounds, AcceptsTheBaseConfig) { EXPECT_TRUE(ResolveCampaign(Config()).ok()); }

TEST(CampaignConfigBounds, TwoVariantsOfOneNetworkAreRefusedNamingBoth) {
  CampaignConfig c = Config();
  c.add_pool("DPN68");
  c.add_pool("DPN131");
  auto r = ResolveCampaign(c);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              AllOf(StartsWith("pool: "), HasSubstr("DPN68"), HasSubstr("DPN131"),
                    HasSubstr("same network")));

  c = Config();
  c.add_pool("SqueezeNet-1");
  c.add_pool("SqueezeNet-2");
  ExpectInvalid(c, "pool");

  // DPN107 is a different network and may sit beside DPN68.
  c = Config();
  c.add_pool("DPN68");
  c.add_pool("DPN107");
  EXPECT_TRUE(ResolveCampaign(c).ok());
}

TEST(CampaignConfigBounds, NameIsCountedInCharactersInCheckAndMessage) {
  CampaignConfig c = Config();
  std::string name;
  for (size_t i = 0; i < common::kMaxNameChars; ++i) name += "\xC3\xA9";
  c.set_name(name);
  EXPECT_TRUE(ResolveCampaign(c).ok());
  c.set_name(name + "e");
  auto r = ResolveCampaign(c);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("201 characters"));
}

TEST(CampaignConfigBounds, NulBytesAndControlCharactersAreRefused) {
  CampaignConfig c = Config();
  c.set_name(std::string("bad\0name", 8));
  ExpectInvalid(c, "name");
  c = Config();
  c.set_name("two\nlines");
  ExpectInvalid(c, "name");
  c = Config();
  c.mutable_data()->set_data_dir(std::string("/data\0/x", 8));
  ExpectInvalid(c, "data.data_dir");
  c = Config();
  c.mutable_data()->set_data_dir(std::string(common::kMaxPathBytes + 1, 'd'));
  ExpectInvalid(c, "data.data_dir");
  c = Config();
  c.add_pool(std::string("ResNet\0", 7));
  ExpectInvalid(c, "pool");
}

TEST(CampaignConfigBounds, AnEightMegabyteFamilyNameIsEchoedShort) {
  CampaignConfig c = Config();
  c.add_pool(std::string(8 << 20, 'Z'));
  auto r = ResolveCampaign(c);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(r.status().message().size(), 300u);
  EXPECT_THAT(std::string(r.status().message()),
              AllOf(StartsWith("pool: "), Not(HasSubstr(std::string(65, 'Z')))));
}

TEST(CampaignConfigBounds, OverlongNameListsAreRefused) {
  CampaignConfig c = Config();
  for (int i = 0; i < 1001; ++i) c.add_exclude("AirNet");
  ExpectInvalid(c, "exclude");
}

}  // namespace
}  // namespace quartet::coordinator

namespace quartet::coordinator {
namespace {

quartet::v1::ParameterAxis Categorical(const std::string& path, std::vector<std::string> values) {
  quartet::v1::ParameterAxis a;
  a.set_path(path);
  for (auto& v : values) a.add_values(v);
  return a;
}

quartet::v1::ParameterAxis Continuous(const std::string& path, double lo, double hi, bool log,
                                      int strata = 0) {
  quartet::v1::ParameterAxis a;
  a.set_path(path);
  a.mutable_range()->set_lo(lo);
  a.mutable_range()->set_hi(hi);
  a.mutable_range()->set_log(log);
  a.mutable_range()->set_strata(strata);
  return a;
}

TEST(CampaignConfigAxes, ValuesAreCanonicalisedAndTheSpaceMultiplies) {
  CampaignConfig c = Config();
  *c.add_axes() = Categorical("recipe.router", {"dense", "top-k", "ROUTER_TOP_P"});
  *c.add_axes() = Categorical("recipe.learning_rate", {"1e-3", "0.003"});
  *c.add_axes() = Continuous("recipe.weight_decay", 1e-5, 1e-2, true);
  *c.add_axes() = Categorical("recipe.augment", {"TRUE", "false"});
  c.set_budget(3 * 3 * 2 * 8 * 2);  // the whole space: C(3, 2) combinations x levels
  auto r = ResolveCampaign(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->config.axes(0).values(),
              ::testing::ElementsAre("ROUTER_DENSE", "ROUTER_TOP_K", "ROUTER_TOP_P"));
  EXPECT_THAT(r->config.axes(1).values(), ::testing::ElementsAre("0.001", "0.003"));
  EXPECT_EQ(r->config.axes(2).range().strata(), 8);
  EXPECT_THAT(r->config.axes(3).values(), ::testing::ElementsAre("true", "false"));
  auto space = SpaceOf(*r);
  ASSERT_TRUE(space.ok());
  EXPECT_EQ(space->size(), 3u * 3 * 2 * 8 * 2);
  c.set_budget(c.budget() + 1);
  ExpectInvalid(c, "budget");
}

TEST(CampaignConfigAxes, BadAxesAreRefusedNamingTheAxis) {
  struct Case {
    quartet::v1::ParameterAxis axis;
    const char* says;
  };
  const Case cases[] = {
      {Categorical("recipe.no_such_field", {"1"}), "no field 'no_such_field'"},
      {Categorical("attempt", {"1"}), "under recipe or data"},
      {Categorical("recipe", {"1"}), "under recipe or data"},
      {Categorical("recipe.router", {"dense", "bogus"}), "not a value of Router"},
      {Categorical("recipe.router", {"unspecified"}), "not a value of Router"},
      {Categorical("recipe.learning_rate", {"fast"}), "not a finite number"},
      {Categorical("recipe.epochs", {"1.5"}), "not an integer"},
      {Categorical("recipe.label_smoothing", {"0.1", "1.5"}), "value 1.5: recipe.label_smoothing"},
      {Categorical("recipe.top_k", {"2", "3"}), "value 3: recipe.top_k"},  // k = 2
      {Categorical("recipe.learning_rate", {}), "empty axis"},
      {Categorical("recipe.learning_rate", {"0.001", "1e-3"}), "listed twice"},
      {Continuous("recipe.learning_rate", 0.1, 0.01, false), "lo < hi"},
      {Continuous("recipe.learning_rate", 0.0, 0.01, true), "log scale needs lo > 0"},
      {Continuous("recipe.router", 1, 2, false), "needs a number field"},
      {Continuous("recipe.learning_rate", 1e-4, 1e-2, false, 5000), "strata"},
      {Continuous("recipe.dropout", 0.0, 1.5, false), "value 1.5: recipe.dropout"},
  };
  for (const Case& tc : cases) {
    CampaignConfig c = Config();
    c.mutable_recipe()->set_router(quartet::v1::ROUTER_TOP_K);
    *c.add_axes() = tc.axis;
    auto r = ResolveCampaign(c);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << tc.says;
    EXPECT_THAT(
        std::string(r.status().message()),
        AllOf(StartsWith(absl::StrCat("axes[0] (", tc.axis.path(), "): ")), HasSubstr(tc.says)))
        << r.status();
  }
  CampaignConfig both = Config();
  *both.add_axes() = Categorical("recipe.learning_rate", {"0.1"});
  both.mutable_axes(0)->mutable_range()->set_hi(1);
  EXPECT_THAT(std::string(ResolveCampaign(both).status().message()), HasSubstr("not both"));
  CampaignConfig twice = Config();
  *twice.add_axes() = Categorical("recipe.learning_rate", {"0.1"});
  *twice.add_axes() = Categorical("recipe.learning_rate", {"0.2"});
  EXPECT_THAT(std::string(ResolveCampaign(twice).status().message()),
              HasSubstr("axes[1] (recipe.learning_rate): a second axis"));
  CampaignConfig huge = Config();
  for (int i = 0; i < 7; ++i) {
    *huge.add_axes() =
        Continuous(absl::StrCat("recipe.", i % 2 ? "eta_min" : "momentum"), 0.1, 0.2, false, 1024);
  }
  EXPECT_EQ(ResolveCampaign(huge).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CampaignConfigAxes, SpaceOverTwoToTheSixtyThreeIsRefused) {
  CampaignConfig c = Config();
  const char* paths[] = {
      "recipe.momentum",           "recipe.label_smoothing", "recipe.mixup_alpha",
      "recipe.grad_clip_norm",     "recipe.dropout",         "recipe.top_p",
      "recipe.warmup_start_factor"};
  for (const char* p : paths) *c.add_axes() = Continuous(p, 0.1, 0.2, false, 1024);
  auto r = ResolveCampaign(c);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("2^63"));
}

TEST(CampaignConfigAxes, BackboneAndFamilyFreeCampaigns) {
  CampaignConfig backbone = Config();
  backbone.clear_pool();
  backbone.add_pool("ResNet");
  backbone.set_k(1);
  *backbone.add_axes() = Categorical("recipe.learning_rate", {"0.001", "0.01"});
  auto r = ResolveCampaign(backbone);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(SpaceOf(*r)->size(), 2u);

  CampaignConfig axes_only = Config();
  axes_only.clear_pool();
  axes_only.set_k(0);
  axes_only.set_without_families(true);
  ExpectInvalid(axes_only, "axes");
  *axes_only.add_axes() = Categorical("recipe.learning_rate", {"0.001", "0.01", "0.1"});
  auto free = ResolveCampaign(axes_only);
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_EQ(SpaceOf(*free)->size(), 3u);
  axes_only.add_pool("ResNet");
  ExpectInvalid(axes_only, "without_families");
}

TEST(CampaignConfigAxes, DynaMoECampaignsTakeNoFamiliesAndCrossScheduleAndRouter) {
  CampaignConfig c = Config();
  c.clear_pool();
  c.set_k(0);
  c.set_without_families(true);
  c.mutable_recipe()->set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
  *c.add_axes() =
      Categorical("recipe.dynamoe_schedule", {"uniform", "descending", "EXPERT_SCHEDULE_WAVE"});
  *c.add_axes() = Categorical("recipe.router", {"dynamic", "top-k", "dense"});
  auto r = ResolveCampaign(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(SpaceOf(*r)->size(), 9u);
  EXPECT_EQ(r->config.axes(0).values(1), "EXPERT_SCHEDULE_DESCENDING");
  EXPECT_EQ(r->config.axes(1).values(0), "ROUTER_DYNAMIC");
  // TOP_P is MoE4's router; DYNAMOE refuses it, naming the axis.
  CampaignConfig top_p = c;
  *top_p.mutable_axes(1) = Categorical("recipe.router", {"dynamic", "top-p"});
  auto refused = ResolveCampaign(top_p);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("recipe.router"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("ROUTER_DYNAMIC"));
  // With a family axis it is refused, naming the architecture.
  CampaignConfig with_pool = Config();
  with_pool.mutable_recipe()->set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
  ExpectInvalid(with_pool, "recipe.architecture");
}

}  // namespace
}  // namespace quartet::coordinator
