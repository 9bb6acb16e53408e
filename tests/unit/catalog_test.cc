#include "common/catalog.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/log_escape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CatalogTest, DefaultPoolIsTheTwentyNineCanonicalFamiliesInAsciiOrder) {
  const FamilyCatalog& catalog = FamilyCatalog::Get();
  std::vector<std::string> pool = catalog.DefaultPool();
  ASSERT_EQ(pool.size(), 29u);
  EXPECT_EQ(pool.front(), "AirNet");
  EXPECT_EQ(pool.back(), "VisionTransformer");
  EXPECT_TRUE(std::is_sorted(pool.begin(), pool.end()));
  for (size_t i = 0; i < catalog.size(); ++i)
    EXPECT_EQ(catalog.families()[i].id, static_cast<int>(i));
}

TEST(CatalogTest, HoldsAllThirtyFourLemurModelsOnce) {
  std::vector<std::string> names = FamilyCatalog::Get().AllVariantNames();
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(names.size(), 34u);
  EXPECT_EQ(unique.size(), 34u);
  for (const char* n :
       {"SqueezeNet-2", "DPN107", "DPN68", "DPN131", "BayesianNet-3", "InceptionV3-2"}) {
    EXPECT_TRUE(unique.count(n)) << n;
  }
}

TEST(CatalogTest, ResolvesFamiliesToTheirDefaultVariantAndVariantsToThemselves) {
  const FamilyCatalog& catalog = FamilyCatalog::Get();
  auto squeeze = catalog.Resolve("SqueezeNet");
  ASSERT_TRUE(squeeze.ok());
  EXPECT_EQ(squeeze->family->name, "SqueezeNet");
  EXPECT_EQ(squeeze->variant->name, "SqueezeNet-2");
  auto dpn = catalog.Resolve("DPN131");
  ASSERT_TRUE(dpn.ok());
  EXPECT_EQ(dpn->family->name, "DPN");
}

TEST(CatalogTest, UnknownNameIsNotFoundWithHints) {
  auto r = FamilyCatalog::Get().Resolve("ResNett");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("ResNett"));
  EXPECT_THAT(r.status().message(), HasSubstr("ResNet"));
}

TEST(CatalogTest, LongUnknownNamesGetNoHintsAndAreEchoedShortAndEscaped) {
  const FamilyCatalog& catalog = FamilyCatalog::Get();
  // 64 bytes: the longest name catalog.cc still computes hints for.
  const std::string at_limit(64, 'R');
  EXPECT_THAT(catalog.Resolve(at_limit).status().message(), HasSubstr("closest:"));

  const std::string huge = "ResNet\n[info] forged" + std::string(8 << 20, 'x');
  auto r = catalog.Resolve(huge);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  const std::string message(r.status().message());
  EXPECT_THAT(message, Not(HasSubstr("closest:")));
  EXPECT_THAT(message, HasSubstr("ResNet\\n[info] forged"));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("[", huge.size() - kMaxEchoBytes, " more bytes]")));
  EXPECT_LT(message.size(), 200u);
}

TEST(CatalogTest, OnlyAlexNetAndInceptionAreNotNativeAt32) {
  for (const FamilyInfo& f : FamilyCatalog::Get().families()) {
    const bool expect_native = f.name != "AlexNet" && f.name != "InceptionV3";
    EXPECT_EQ(f.default_variant().native_32, expect_native) << f.name;
    EXPECT_EQ(f.default_variant().min_input_size <= 32, expect_native) << f.name;
  }
}

}  // namespace
}  // namespace quartet::common
