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
