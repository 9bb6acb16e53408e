#include "coordinator/space/combinatorics.h"

#include <algorithm>
#include <random>
#include <vector>

#include "coordinator/space/coverage_stats.h"
#include "coordinator/space/space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::coordinator::space {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BinomialTest, KnownValues) {
  EXPECT_EQ(Binomial(29, 4), 23751u);
  EXPECT_EQ(Binomial(28, 3), 3276u);
  EXPECT_EQ(Binomial(29, 2), 406u);
  EXPECT_EQ(Binomial(29, 3), 3654u);
  EXPECT_EQ(Binomial(64, 8), 4426165368u);
  EXPECT_EQ(Binomial(5, 0), 1u);
  EXPECT_EQ(Binomial(3, 5), 0u);
  EXPECT_EQ(Binomial(65, 2), 0u);
}

TEST(BinomialTest, CheckedRejectsOutOfRange) {
  EXPECT_EQ(*CheckedBinomial(64, 8), 4426165368u);
  EXPECT_EQ(*CheckedBinomial(4, 6), 0u);
  EXPECT_EQ(CheckedBinomial(65, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckedBinomial(20, 9).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckedBinomial(-1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckedBinomial(5, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RankTest, MatchesItertoolsOrderOverAllFourOfTwentyNine) {
  // Nested loops produce itertools.combinations(range(29), 4) order.
  uint64_t expected = 0;
  for (int a = 0; a < 29; ++a) {
    for (int b = a + 1; b < 29; ++b) {
      for (int c = b + 1; c < 29; ++c) {
        for (int d = c + 1; d < 29; ++d) {
          const int combination[4] = {a, b, c, d};
          ASSERT_EQ(RankUnchecked(combination, 4, 29), expected);
          int out[4];
          UnrankUnchecked(expected, 29, 4, out);
          ASSERT_TRUE(std::equal(out, out + 4, combination)) << expected;
          ++expected;
        }
      }
    }
  }
  EXPECT_EQ(expected, 23751u);
}

TEST(RankTest, SpotChecks) {
  EXPECT_EQ(*Rank({0, 1, 2, 3}, 29), 0u);
  EXPECT_EQ(*Rank({0, 1, 2, 4}, 29), 1u);
  EXPECT_EQ(*Rank({0, 1, 2, 28}, 29), 25u);
  EXPECT_EQ(*Rank({0, 2, 3, 4}, 29), 351u);   // after the C(27, 2) combinations with 0 and 1
  EXPECT_EQ(*Rank({1, 2, 3, 4}, 29), 3276u);  // the first without family 0
  EXPECT_EQ(*Rank({25, 26, 27, 28}, 29), 23750u);
  EXPECT_THAT(*Unrank(3276, 29, 4), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(*Unrank(351, 29, 4), ElementsAre(0, 2, 3, 4));
}

TEST(RankTest, LargestSpaceRoundTripsWithCheckedArithmetic) {
  EXPECT_EQ(*Rank({56, 57, 58, 59, 60, 61, 62, 63}, 64), 4426165367u);
  EXPECT_EQ(*Rank({0, 1, 2, 3, 4, 5, 6, 7}, 64), 0u);
  EXPECT_THAT(*Unrank(4426165367u, 64, 8), ElementsAre(56, 57, 58, 59, 60, 61, 62, 63));
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint64_t> dist(0, Binomial(64, 8) - 1);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t r = dist(rng);
    absl::StatusOr<std::vector<int>> c = Unrank(r, 64, 8);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(std::is_sorted(c->begin(), c->end()));
    ASSERT_EQ(*Rank(*c, 64), r);
  }
  EXPECT_EQ(Unrank(Binomial(64, 8), 64, 8).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(RankTest, RejectsBadInput) {
  EXPECT_EQ(Rank({1, 0}, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({2, 2}, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({0, 5}, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({-1, 3}, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({0, 1, 2}, 65).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({0, 1, 2, 3, 4, 5, 6, 7, 8}, 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rank({0, 1, 2}, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unrank(0, 65, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unrank(0, 20, 9).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unrank(0, 3, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unrank(10, 5, 2).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(PairTripleIndexTest, LexicographicAndSymmetric) {
  int expected = 0;
  for (int a = 0; a < 29; ++a) {
    for (int b = a + 1; b < 29; ++b) {
      ASSERT_EQ(PairIndex(a, b, 29), expected);
      ASSERT_EQ(PairIndex(b, a, 29), expected);
      ++expected;
    }
  }
  EXPECT_EQ(expected, 406);
  expected = 0;
  for (int a = 0; a < 29; ++a) {
    for (int b = a + 1; b < 29; ++b) {
      for (int c = b + 1; c < 29; ++c) {
        ASSERT_EQ(TripleIndex(a, b, c, 29), expected);
        ASSERT_EQ(TripleIndex(c, a, b, 29), expected);
        ++expected;
      }
    }
  }
  EXPECT_EQ(expected, 3654);
}

// ---------------------------------------------------------------------------------------------

TEST(SpaceTest, WithoutRequiredFamiliesRanksArePlainLexicographic) {
  absl::StatusOr<Space> space = Space::Create(29, 4, {});
  ASSERT_TRUE(space.ok());
  EXPECT_EQ(space->size(), 23751u);
  EXPECT_THAT(space->Unrank(3276), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(*space->Rank({1, 2, 3, 4}), 3276u);
}

TEST(SpaceTest, RequiredFamiliesAreInEveryCombination) {
  absl::StatusOr<Space> space = Space::Create(8, 4, {5, 1});
  ASSERT_TRUE(space.ok());
  EXPECT_THAT(space->required(), ElementsAre(1, 5));
  EXPECT_EQ(space->size(), Binomial(6, 2));
  std::vector<std::vector<int>> seen;
  for (uint64_t r = 0; r < space->size(); ++r) {
    std::vector<int> c = space->Unrank(r);
    ASSERT_EQ(c.size(), 4u);
    ASSERT_TRUE(std::is_sorted(c.begin(), c.end()));
    ASSERT_TRUE(std::count(c.begin(), c.end(), 1) == 1 && std::count(c.begin(), c.end(), 5) == 1);
    ASSERT_EQ(*space->Rank(c), r);
    seen.push_back(c);
  }
  // Ranks follow the lexicographic order of the combinations.
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_THAT(space->Unrank(0), ElementsAre(0, 1, 2, 5));
  EXPECT_EQ(space->Rank({0, 2, 3, 5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(space->Rank({0, 1, 5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(space->Rank({1, 0, 2, 5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(space->Rank({0, 1, 5, 8}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpaceTest, BadInputNamesTheField) {
  struct Case {
    int n, k;
    std::vector<int> required;
    const char* field;
  };
  const Case cases[] = {
      {0, 2, {}, "pool"},
      {1, 2, {}, "k"},
      {65, 4, {}, "pool"},
      {5, 6, {}, "k"},
      {29, 0, {}, "k"},
      {29, 9, {}, "k"},
      {29, 4, {29}, "required"},
      {29, 4, {-1}, "required"},
      {29, 4, {3, 3}, "required"},
      {29, 4, {0, 1, 2, 3}, "required"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Space> space = Space::Create(c.n, c.k, c.required);
    ASSERT_FALSE(space.ok()) << c.n << " " << c.k;
    EXPECT_EQ(space.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(space.status().message(), HasSubstr(c.field)) << space.status();
  }
  EXPECT_TRUE(Space::Create(29, 4, {0, 1, 2}).ok());
}

// ---------------------------------------------------------------------------------------------

TEST(CoverageTest, FiguresFromCounts) {
  // Three families, k = 2, draws {0,1}, {0,2}, {0,1}.
  const std::vector<int64_t> families = {3, 2, 1};
  const std::vector<int64_t> pairs = {2, 1, 0};  // (0,1), (0,2), (1,2)
  const CoverageFigures f = ComputeCoverage(families, pairs, 3, 2);
  EXPECT_DOUBLE_EQ(f.anchoring_index, 3.0 / (3.0 * 2 / 3));
  EXPECT_DOUBLE_EQ(f.max_family_share, 1.0);
  EXPECT_EQ(f.max_family_deviation, 2);
  EXPECT_EQ(f.families_seen, 3);
  EXPECT_EQ(f.pairs_seen, 2);
  EXPECT_DOUBLE_EQ(f.pair_coverage, 2.0 / 3);
  EXPECT_EQ(f.min_pair_count, 0);
  EXPECT_EQ(f.max_pair_count, 2);
  const double h =
      -(0.5 * std::log(0.5) + (1.0 / 3) * std::log(1.0 / 3) + (1.0 / 6) * std::log(1.0 / 6));
  EXPECT_NEAR(f.family_entropy, h / std::log(3.0), 1e-12);
}

TEST(CoverageTest, EvenCountsHaveUnitAnchoringAndEntropy) {
  const std::vector<int64_t> families(29, 4);
  const std::vector<int64_t> pairs(406, 0);
  const CoverageFigures f = ComputeCoverage(families, pairs, 29, 4);
  EXPECT_DOUBLE_EQ(f.anchoring_index, 1.0);
  EXPECT_NEAR(f.family_entropy, 1.0, 1e-12);
  EXPECT_EQ(f.max_family_deviation, 0);
  EXPECT_EQ(f.pairs_seen, 0);
  const CoverageFigures empty = ComputeCoverage(std::vector<int64_t>(29, 0), pairs, 0, 4);
  EXPECT_EQ(empty.anchoring_index, 0);
  EXPECT_EQ(empty.families_seen, 0);
}

}  // namespace
}  // namespace quartet::coordinator::space
