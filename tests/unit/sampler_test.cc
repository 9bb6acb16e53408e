#include "coordinator/space/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "coordinator/space/combinatorics.h"
#include "coordinator/space/space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::coordinator::space {
namespace {

using ::testing::HasSubstr;

constexpr SamplerKind kAllKinds[] = {SamplerKind::kLexicographic, SamplerKind::kUniform,
                                     SamplerKind::kStratified, SamplerKind::kPairCovering,
                                     SamplerKind::kAdaptive};

Space MakeSpace(int n, int k, std::vector<int> required = {}) {
  absl::StatusOr<Space> space = Space::Create(n, k, std::move(required));
  EXPECT_TRUE(space.ok()) << space.status();
  return *std::move(space);
}

std::unique_ptr<Sampler> Make(SamplerKind kind, const Space& space, uint64_t seed,
                              SamplerOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Sampler>> sampler = CreateSampler(kind, space, seed, options);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

// A deterministic accuracy landscape: distinct family effects, a few pair synergies and a tiny
// per-rank perturbation (so that no two combinations tie).
double TestAccuracy(const Space& space, uint64_t rank) {
  const std::vector<int> c = space.Unrank(rank);
  double acc = 0.7;
  for (size_t i = 0; i < c.size(); ++i) {
    acc += 0.003 * ((c[i] * 7) % space.n());
    for (size_t j = i + 1; j < c.size(); ++j) {
      if ((c[i] + 2 * c[j]) % 11 == 0) acc += 0.015;
    }
  }
  return acc + 1e-6 * static_cast<double>((rank * 2654435761u) % 1000);
}

// Draws `count` combinations, feeding each one's accuracy back.
std::vector<uint64_t> Draw(Sampler& sampler, const Space& space, int count) {
  std::vector<uint64_t> ranks;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<uint64_t> rank = sampler.Next();
    EXPECT_TRUE(rank.ok()) << rank.status() << " at draw " << i;
    if (!rank.ok()) break;
    ranks.push_back(*rank);
    sampler.Observe(*rank, TestAccuracy(space, *rank));
  }
  return ranks;
}

// Family counts over the combinations (pool indices).
std::vector<int64_t> FamilyCounts(const Space& space, const std::vector<uint64_t>& ranks) {
  std::vector<int64_t> counts(space.n(), 0);
  for (uint64_t r : ranks) {
    for (int f : space.Unrank(r)) ++counts[f];
  }
  return counts;
}

// Largest minus smallest count over the non-required families.
int64_t FreeDeviation(const Space& space, const std::vector<int64_t>& counts) {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
  for (int f = 0; f < space.n(); ++f) {
    if (std::count(space.required().begin(), space.required().end(), f)) continue;
    lo = std::min(lo, counts[f]);
    hi = std::max(hi, counts[f]);
  }
  return hi - lo;
}

// Prefix length after which every pair of non-required families has been drawn together; -1 if
// never.
int DrawsToAllPairs(const Space& space, const std::vector<uint64_t>& ranks) {
  std::set<std::pair<int, int>> seen;
  const int free = space.n() - static_cast<int>(space.required().size());
  const size_t all = static_cast<size_t>(free) * (free - 1) / 2;
  for (size_t d = 0; d < ranks.size(); ++d) {
    const std::vector<int> c = space.Unrank(ranks[d]);
    for (size_t i = 0; i < c.size(); ++i) {
      for (size_t j = i + 1; j < c.size(); ++j) {
        const bool ri = std::count(space.required().begin(), space.required().end(), c[i]);
        const bool rj = std::count(space.required().begin(), space.required().end(), c[j]);
        if (!ri && !rj) seen.insert({c[i], c[j]});
      }
    }
    if (seen.size() == all) return static_cast<int>(d + 1);
  }
  return -1;
}

int DrawsToAllFamilies(const Space& space, const std::vector<uint64_t>& ranks) {
  std::set<int> seen;
  for (size_t d = 0; d < ranks.size(); ++d) {
    for (int f : space.Unrank(ranks[d])) seen.insert(f);
    if (static_cast<int>(seen.size()) == space.n()) return static_cast<int>(d + 1);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------

TEST(SamplerKindTest, NamesRoundTripCaseInsensitively) {
  for (SamplerKind kind : kAllKinds) {
    EXPECT_EQ(*ParseSamplerKind(SamplerKindName(kind)), kind);
  }
  EXPECT_EQ(*ParseSamplerKind("pair_covering"), SamplerKind::kPairCovering);
  EXPECT_EQ(*ParseSamplerKind("Adaptive"), SamplerKind::kAdaptive);
  absl::StatusOr<SamplerKind> bad = ParseSamplerKind("RANDOM");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("RANDOM"));
}

TEST(CreateSamplerTest, RejectsExplorationShareOutsideUnitInterval) {
  const Space space = MakeSpace(8, 3);
  for (double share : {-0.1, 1.5, std::nan("")}) {
    SamplerOptions options;
    options.exploration_share = share;
    absl::StatusOr<std::unique_ptr<Sampler>> sampler =
        CreateSampler(SamplerKind::kAdaptive, space, 1, options);
    ASSERT_FALSE(sampler.ok());
    EXPECT_EQ(sampler.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(sampler.status().message(), HasSubstr("exploration_share"));
  }
}

// ---------------------------------------------------------------------------------------------
// Properties every sampler has.

class SamplerPropertyTest : public ::testing::TestWithParam<SamplerKind> {};

INSTANTIATE_TEST_SUITE_P(AllSamplers, SamplerPropertyTest, ::testing::ValuesIn(kAllKinds),
                         [](const ::testing::TestParamInfo<SamplerKind>& info) {
                           std::string name = SamplerKindName(info.param);
                           name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
                           return name;
                         });

TEST_P(SamplerPropertyTest, ExhaustsASmallSpaceExactlyThenOutOfRange) {
  const Space space = MakeSpace(8, 3);
  std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 7);
  EXPECT_EQ(sampler->kind(), GetParam());
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 56);
  ASSERT_EQ(ranks.size(), 56u);
  EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), 56u);
  EXPECT_LT(*std::max_element(ranks.begin(), ranks.end()), 56u);
  EXPECT_EQ(sampler->draws(), 56u);
  EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST_P(SamplerPropertyTest, ExhaustsASpaceWithRequiredFamilies) {
  const Space space = MakeSpace(9, 4, {6, 2});
  ASSERT_EQ(space.size(), 21u);
  std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 3);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 21);
  EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), 21u);
  for (uint64_t r : ranks) {
    const std::vector<int> c = space.Unrank(r);
    EXPECT_TRUE(std::count(c.begin(), c.end(), 2) && std::count(c.begin(), c.end(), 6));
  }
  EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST_P(SamplerPropertyTest, ExhaustsDegenerateSpaces) {
  // One free family per draw, a single combination, two combinations.
  for (const Space& space : {MakeSpace(6, 2, {0}), MakeSpace(2, 2), MakeSpace(8, 8),
                             MakeSpace(9, 8, {0, 1, 2, 3, 4, 5, 6})}) {
    std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 1);
    const std::vector<uint64_t> ranks = Draw(*sampler, space, static_cast<int>(space.size()));
    EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), space.size());
    EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
  }
}

TEST_P(SamplerPropertyTest, SameSeedSameDrawsOtherSeedOtherDraws) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> a = Make(GetParam(), space, 11);
  std::unique_ptr<Sampler> b = Make(GetParam(), space, 11);
  std::unique_ptr<Sampler> c = Make(GetParam(), space, 12);
  const std::vector<uint64_t> ra = Draw(*a, space, 150);
  EXPECT_EQ(ra, Draw(*b, space, 150));
  if (GetParam() == SamplerKind::kLexicographic) {
    EXPECT_EQ(ra, Draw(*c, space, 150));  // rank order whatever the seed
  } else {
    EXPECT_NE(ra, Draw(*c, space, 150));
  }
}

TEST_P(SamplerPropertyTest, RestartFromMarkedAndObservedStateContinuesExactly) {
  const Space space = MakeSpace(29, 4);
  constexpr int kMore = 150;
  for (int already : {40, 260}) {
    SCOPED_TRACE(already);
    std::unique_ptr<Sampler> original = Make(GetParam(), space, 5);
    const std::vector<uint64_t> uninterrupted = Draw(*original, space, already + kMore);

    std::unique_ptr<Sampler> rebuilt = Make(GetParam(), space, 5);
    std::vector<uint64_t> done(uninterrupted.begin(), uninterrupted.begin() + already);
    std::mt19937_64 rng(already);
    std::shuffle(done.begin(), done.end(), rng);
    for (uint64_t r : done) ASSERT_TRUE(rebuilt->MarkDrawn(r).ok());
    std::shuffle(done.begin(), done.end(), rng);
    for (uint64_t r : done) rebuilt->Observe(r, TestAccuracy(space, r));
    EXPECT_EQ(rebuilt->draws(), static_cast<uint64_t>(already));
    const std::vector<uint64_t> resumed = Draw(*rebuilt, space, kMore);
    EXPECT_TRUE(std::equal(resumed.begin(), resumed.end(), uninterrupted.begin() + already));
    // The sampler's own guarantee holds over the resumed sequence.
    std::vector<uint64_t> all(uninterrupted.begin(), uninterrupted.begin() + already);
    all.insert(all.end(), resumed.begin(), resumed.end());
    if (GetParam() == SamplerKind::kPairCovering || GetParam() == SamplerKind::kAdaptive) {
      EXPECT_LE(DrawsToAllPairs(space, all), 80);
      EXPECT_GT(DrawsToAllPairs(space, all), 0);
    }
    if (GetParam() == SamplerKind::kStratified) {
      for (size_t d = 1; d <= all.size(); ++d) {
        ASSERT_LE(FreeDeviation(space, FamilyCounts(space, {all.begin(), all.begin() + d})), 1);
      }
    }
  }
}

TEST_P(SamplerPropertyTest, MarkDrawnValidatesAndMarkedRanksAreNeverIssued) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 9);
  EXPECT_EQ(sampler->MarkDrawn(space.size()).code(), absl::StatusCode::kInvalidArgument);
  std::mt19937_64 rng(1);
  std::set<uint64_t> marked;
  while (marked.size() < 400) marked.insert(rng() % space.size());
  for (uint64_t r : marked) ASSERT_TRUE(sampler->MarkDrawn(r).ok());
  EXPECT_EQ(sampler->MarkDrawn(*marked.begin()).code(), absl::StatusCode::kAlreadyExists);
  sampler->Observe(space.size() + 5, 0.5);  // out of range: ignored
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 1500);
  std::set<uint64_t> issued(ranks.begin(), ranks.end());
  EXPECT_EQ(issued.size(), ranks.size());
  for (uint64_t r : ranks) EXPECT_FALSE(marked.count(r)) << r;
  EXPECT_EQ(sampler->draws(), 1900u);
  EXPECT_EQ(sampler->MarkDrawn(ranks.back()).code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(SamplerPropertyTest, LargestSpaceDrawsDistinctValidCombinations) {
  const Space space = MakeSpace(64, 8, {});
  std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 2);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 300);
  EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), 300u);
  for (uint64_t r : ranks) EXPECT_LT(r, space.size());
}

// ---------------------------------------------------------------------------------------------

TEST(LexicographicTest, ReproducesThePublishedAnchoring) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kLexicographic, space, 1);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 3277);
  for (int d = 0; d < 3276; ++d) {
    ASSERT_EQ(ranks[d], static_cast<uint64_t>(d));
    ASSERT_EQ(space.Unrank(ranks[d])[0], 0) << "draw " << d;
  }
  EXPECT_EQ(space.Unrank(ranks[3276])[0], 1);
}

TEST(LexicographicTest, SkipsMarkedRanks) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kLexicographic, space, 1);
  ASSERT_TRUE(sampler->MarkDrawn(3).ok());
  ASSERT_TRUE(sampler->MarkDrawn(1).ok());
  EXPECT_EQ(Draw(*sampler, space, 4), (std::vector<uint64_t>{0, 2, 4, 5}));
}

TEST(UniformTest, IsABijectionOfTheWholeSpace) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kUniform, space, 17);
  std::vector<char> seen(space.size(), 0);
  for (uint64_t i = 0; i < space.size(); ++i) {
    absl::StatusOr<uint64_t> r = sampler->Next();
    ASSERT_TRUE(r.ok());
    ASSERT_LT(*r, space.size());
    ASSERT_FALSE(seen[*r]) << *r;
    seen[*r] = 1;
  }
  EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST(UniformTest, RoughlyUniformOverFamiliesAndRanks) {
  const Space space = MakeSpace(29, 4);
  for (uint64_t seed : {1, 2, 3}) {
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kUniform, space, seed);
    const std::vector<uint64_t> ranks = Draw(*sampler, space, 4463);
    // Family counts: chi-square with 28 degrees of freedom (p < 1e-5 beyond 70).
    const std::vector<int64_t> counts = FamilyCounts(space, ranks);
    const double expected = 4463.0 * 4 / 29;
    double chi2 = 0;
    for (int64_t c : counts) chi2 += (c - expected) * (c - expected) / expected;
    EXPECT_LT(chi2, 70) << "seed " << seed;
    // Ranks in 20 equal buckets: chi-square with 19 degrees of freedom.
    std::vector<double> buckets(20, 0);
    for (uint64_t r : ranks) buckets[r * 20 / space.size()] += 1;
    double chi2_ranks = 0;
    for (double b : buckets) chi2_ranks += (b - 4463.0 / 20) * (b - 4463.0 / 20) / (4463.0 / 20);
    EXPECT_LT(chi2_ranks, 55) << "seed " << seed;
    // Not anchored: family 0 in about 4/29 of the first 1,021 draws.
    int with_first = 0;
    for (int d = 0; d < 1021; ++d) with_first += space.Unrank(ranks[d])[0] == 0;
    EXPECT_NEAR(with_first / 1021.0, 4.0 / 29, 0.04);
  }
}

TEST(UniformTest, OutOfOrderMarksInterleavedWithDrawsStillExhaustExactly) {
  const Space space = MakeSpace(10, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kUniform, space, 4);
  std::mt19937_64 rng(8);
  std::set<uint64_t> drawn;
  while (drawn.size() < space.size()) {
    if (rng() % 3 == 0) {
      const uint64_t r = rng() % space.size();
      const absl::Status s = sampler->MarkDrawn(r);
      EXPECT_EQ(s.ok(), !drawn.count(r));
      drawn.insert(r);
    } else {
      absl::StatusOr<uint64_t> r = sampler->Next();
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE(drawn.insert(*r).second) << *r;
    }
    ASSERT_EQ(sampler->draws(), drawn.size());
  }
  EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST(StratifiedTest, FamilyCountsWithinOneAtEveryPrefix) {
  const Space space = MakeSpace(29, 4);
  for (uint64_t seed : {1, 2, 3}) {
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kStratified, space, seed);
    std::vector<int64_t> counts(29, 0);
    for (int d = 1; d <= 3000; ++d) {
      const uint64_t r = *sampler->Next();
      for (int f : space.Unrank(r)) ++counts[f];
      ASSERT_LE(FreeDeviation(space, counts), 1) << "seed " << seed << " draw " << d;
      if (d == 8) {
        EXPECT_EQ(std::count(counts.begin(), counts.end(), 0), 0) << "all 29 within 8 draws";
      }
    }
    EXPECT_EQ(sampler->relaxed_draws(), 0u);
  }
}

TEST(StratifiedTest, RequiredFamiliesAreInEveryDrawAndOutsideTheBalance) {
  for (const std::vector<int>& required : {std::vector<int>{5}, std::vector<int>{0, 7}}) {
    const Space space = MakeSpace(29, 4, required);
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kStratified, space, 4);
    std::vector<int64_t> counts(29, 0);
    const int draws = std::min<int>(300, static_cast<int>(space.size()) / 2);
    for (int d = 1; d <= draws; ++d) {
      const std::vector<int> c = space.Unrank(*sampler->Next());
      for (int f : required) ASSERT_TRUE(std::count(c.begin(), c.end(), f));
      for (int f : c) ++counts[f];
      ASSERT_LE(FreeDeviation(space, counts), 1) << "draw " << d;
    }
    for (int f : required) EXPECT_EQ(counts[f], draws);
  }
}

TEST(StratifiedTest, BalanceIsKeptUntilTheFirstRelaxedDraw) {
  // Exhausting a small space eventually forces unbalanced draws; until one is reported, counts
  // must stay within 1.
  const Space space = MakeSpace(8, 3);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kStratified, space, 6);
  std::vector<int64_t> counts(8, 0);
  for (int d = 1; d <= 56; ++d) {
    const uint64_t r = *sampler->Next();
    for (int f : space.Unrank(r)) ++counts[f];
    if (sampler->relaxed_draws() == 0) {
      ASSERT_LE(FreeDeviation(space, counts), 1) << d;
    }
  }
}

TEST(PairCoveringTest, CoversAllPairsAtTheSchoenheimBound) {
  const Space space = MakeSpace(29, 4);
  for (uint64_t seed : {1, 2, 3, 4}) {
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kPairCovering, space, seed);
    const std::vector<uint64_t> ranks = Draw(*sampler, space, 80);
    const int to_pairs = DrawsToAllPairs(space, ranks);
    // The plan is an optimal covering design: the Schoenheim bound, 73.
    EXPECT_EQ(to_pairs, 73) << "seed " << seed;
    // Issued in a family-balanced order: every family within 9 draws (8 is the least possible),
    // no family twice in the first seven.
    EXPECT_LE(DrawsToAllFamilies(space, ranks), 9) << "seed " << seed;
    std::vector<int64_t> first7 = FamilyCounts(space, {ranks.begin(), ranks.begin() + 7});
    EXPECT_LE(*std::max_element(first7.begin(), first7.end()), 2);
  }
}

TEST(PairCoveringTest, ThenCoversTriplesNearTheirBound) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kPairCovering, space, 1);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 1200);
  std::set<std::vector<int>> triples;
  int to_triples = -1;
  for (size_t d = 0; d < ranks.size() && to_triples < 0; ++d) {
    const std::vector<int> c = space.Unrank(ranks[d]);
    for (int i = 0; i < 4; ++i) {
      std::vector<int> t;
      for (int j = 0; j < 4; ++j) {
        if (j != i) t.push_back(c[j]);
      }
      triples.insert(t);
    }
    if (triples.size() == 3654) to_triples = static_cast<int>(d + 1);
  }
  // Schoenheim bound 950; uniform draws need several thousand.
  EXPECT_GT(to_triples, 0);
  EXPECT_LE(to_triples, 1200);
}

TEST(PairCoveringTest, CoversPairsOfFreeFamiliesWithRequiredOnes) {
  const Space space = MakeSpace(29, 4, {3});
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kPairCovering, space, 1);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 160);
  // 378 pairs of 28 free families, 3 per draw: at least 126 draws.
  const int to_pairs = DrawsToAllPairs(space, ranks);
  EXPECT_GE(to_pairs, 126);
  EXPECT_LE(to_pairs, 150);
}

TEST(AdaptiveTest, CoversPairsFirst) {
  const Space space = MakeSpace(29, 4);
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kAdaptive, space, 3);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 80);
  EXPECT_LE(DrawsToAllPairs(space, ranks), 80);
  EXPECT_GT(DrawsToAllPairs(space, ranks), 0);
}

TEST(AdaptiveTest, FindsTheBestCombinationFarSoonerThanBlindSampling) {
  const Space space = MakeSpace(29, 4);
  uint64_t best = 0;
  for (uint64_t r = 1; r < space.size(); ++r) {
    if (TestAccuracy(space, r) > TestAccuracy(space, best)) best = r;
  }
  for (uint64_t seed : {1, 2}) {
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kAdaptive, space, seed);
    const std::vector<uint64_t> ranks = Draw(*sampler, space, 600);
    // A blind sampler finds a given combination within 600 draws with probability 2.5 %.
    EXPECT_NE(std::find(ranks.begin(), ranks.end(), best), ranks.end()) << "seed " << seed;
  }
}

TEST(AdaptiveTest, FullExplorationShareBalancesFamiliesAfterCoverage) {
  const Space space = MakeSpace(29, 4);
  SamplerOptions options;
  options.exploration_share = 1.0;
  std::unique_ptr<Sampler> sampler = Make(SamplerKind::kAdaptive, space, 8, options);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 400);
  EXPECT_LE(FreeDeviation(space, FamilyCounts(space, ranks)), 1);
  // The default share exploits: some family is drawn far more often than the uniform share.
  std::unique_ptr<Sampler> exploiting = Make(SamplerKind::kAdaptive, space, 8);
  const std::vector<int64_t> counts = FamilyCounts(space, Draw(*exploiting, space, 400));
  EXPECT_GT(*std::max_element(counts.begin(), counts.end()), 2 * 400 * 4 / 29);
}

}  // namespace
}  // namespace quartet::coordinator::space
