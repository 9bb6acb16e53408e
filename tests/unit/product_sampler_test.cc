// Samplers on product spaces (family axis x parameter axes): the sampler contract on every kind,
// and each sampler's own guarantee over the axes.
#include <algorithm>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "coordinator/space/combinatorics.h"
#include "coordinator/space/product_space.h"
#include "coordinator/space/sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::coordinator::space {
namespace {

using ::testing::HasSubstr;

constexpr SamplerKind kAllKinds[] = {SamplerKind::kLexicographic, SamplerKind::kUniform,
                                     SamplerKind::kStratified, SamplerKind::kPairCovering,
                                     SamplerKind::kAdaptive};

ProductSpace MakeProduct(int n, int k, std::vector<int> levels, std::vector<int> required = {}) {
  std::optional<Space> families;
  if (n > 0) {
    absl::StatusOr<Space> space = Space::Create(n, k, std::move(required));
    EXPECT_TRUE(space.ok()) << space.status();
    families = *std::move(space);
  }
  absl::StatusOr<ProductSpace> product = ProductSpace::Create(std::move(families), levels);
  EXPECT_TRUE(product.ok()) << product.status();
  return *std::move(product);
}

// The space of the figures: 29 families k = 4 x router {3} x learning rate {3} x weight
// decay (8 strata).
ProductSpace BenchSpace() { return MakeProduct(29, 4, {3, 3, 8}); }

std::unique_ptr<Sampler> Make(SamplerKind kind, const ProductSpace& space, uint64_t seed,
                              SamplerOptions options = {}) {
  auto sampler = CreateSampler(kind, space, seed, options);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

struct Decoded {
  std::vector<int> families;  // pool indices
  std::vector<int> levels;
};

Decoded Decode(const ProductSpace& space, uint64_t rank) {
  Decoded d;
  uint64_t combination;
  d.levels.resize(space.num_axes());
  space.Unrank(rank, &combination, d.levels.data());
  if (space.has_families()) d.families = space.families().Unrank(combination);
  return d;
}

// A landscape with family effects, a pair synergy, level effects and a family x level interaction.
double Accuracy(const ProductSpace& space, uint64_t rank) {
  const Decoded d = Decode(space, rank);
  double acc = 0.5;
  for (size_t i = 0; i < d.families.size(); ++i) {
    acc += 0.004 * ((d.families[i] * 7) % 29);
    for (size_t j = i + 1; j < d.families.size(); ++j) {
      if ((d.families[i] + 2 * d.families[j]) % 11 == 0) acc += 0.01;
    }
  }
  for (size_t a = 0; a < d.levels.size(); ++a) acc += 0.01 * ((d.levels[a] * 5 + a) % 7);
  if (!d.families.empty() && !d.levels.empty() && d.levels[0] == d.families[0] % 3) acc += 0.03;
  return acc + 1e-7 * static_cast<double>((rank * 2654435761u) % 1000);
}

std::vector<uint64_t> Draw(Sampler& sampler, const ProductSpace& space, int count) {
  std::vector<uint64_t> ranks;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<uint64_t> rank = sampler.Next();
    EXPECT_TRUE(rank.ok()) << rank.status() << " at draw " << i;
    if (!rank.ok()) break;
    ranks.push_back(*rank);
    sampler.Observe(*rank, Accuracy(space, *rank));
  }
  return ranks;
}

// Largest minus smallest family count (free families) and level count per axis, over a prefix.
struct Deviations {
  int64_t family = 0;
  std::vector<int64_t> levels;
};
Deviations PrefixDeviations(const ProductSpace& space, const std::vector<uint64_t>& ranks,
                            size_t prefix) {
  std::vector<int64_t> families(space.has_families() ? space.families().n() : 0, 0);
  std::vector<std::vector<int64_t>> levels(space.num_axes());
  for (int a = 0; a < space.num_axes(); ++a) levels[a].assign(space.levels(a), 0);
  for (size_t i = 0; i < prefix; ++i) {
    const Decoded d = Decode(space, ranks[i]);
    for (int f : d.families) ++families[f];
    for (int a = 0; a < space.num_axes(); ++a) ++levels[a][d.levels[a]];
  }
  Deviations out;
  if (!families.empty()) {
    out.family = *std::max_element(families.begin(), families.end()) -
                 *std::min_element(families.begin(), families.end());
  }
  for (const auto& l : levels) {
    out.levels.push_back(*std::max_element(l.begin(), l.end()) -
                         *std::min_element(l.begin(), l.end()));
  }
  return out;
}

// Draws until every family pair, (family, level) cell and (level, level) pair of different axes
// has been drawn; -1 if never.
int DrawsToFullCoverage(const ProductSpace& space, const std::vector<uint64_t>& ranks) {
  const int n = space.has_families() ? space.families().n() : 0;
  const int k = space.has_families() ? space.families().k() : 0;
  std::set<std::vector<int>> seen;
  int64_t all = k >= 2 ? n * (n - 1) / 2 : 0;
  for (int a = 0; a < space.num_axes(); ++a) {
    all += int64_t{n} * space.levels(a);
    for (int b = a + 1; b < space.num_axes(); ++b) all += space.levels(a) * space.levels(b);
  }
  for (size_t d = 0; d < ranks.size(); ++d) {
    const Decoded p = Decode(space, ranks[d]);
    for (size_t i = 0; i < p.families.size(); ++i) {
      for (size_t j = i + 1; j < p.families.size(); ++j) {
        seen.insert({0, p.families[i], p.families[j]});
      }
      for (int a = 0; a < space.num_axes(); ++a) seen.insert({1, p.families[i], a, p.levels[a]});
    }
    for (int a = 0; a < space.num_axes(); ++a) {
      for (int b = a + 1; b < space.num_axes(); ++b)
        seen.insert({2, a, p.levels[a], b, p.levels[b]});
    }
    if (static_cast<int64_t>(seen.size()) == all) return static_cast<int>(d + 1);
  }
  return -1;
}

// ---- The space ----------------------------------------------------------------------------------

TEST(ProductSpaceTest, MixedRadixRanksRoundTripWithTheCombinationMostSignificant) {
  const ProductSpace space = MakeProduct(6, 2, {3, 4});
  EXPECT_EQ(space.size(), 15u * 12u);
  EXPECT_EQ(space.level_points(), 12u);
  const int levels[] = {2, 1};
  EXPECT_EQ(space.Rank(5, levels), 5u * 12u + 2u * 4u + 1u);
  for (uint64_t r = 0; r < space.size(); ++r) {
    uint64_t c;
    int l[2];
    space.Unrank(r, &c, l);
    ASSERT_EQ(space.Rank(c, l), r);
  }
}

TEST(ProductSpaceTest, RefusesEmptyOversizedAndMalformedSpaces) {
  EXPECT_THAT(ProductSpace::Create(std::nullopt, {}).status().message(),
              HasSubstr("at least one parameter axis"));
  EXPECT_THAT(ProductSpace::Create(std::nullopt, {3, 0}).status().message(), HasSubstr("axes[1]"));
  // C(64, 8) = 4.4e9 times 2 * 1024^3 is past 2^63.
  auto huge = ProductSpace::Create(*Space::Create(64, 8, {}), {1024, 1024, 1024, 2});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.status().message(), HasSubstr("2^63"));
  EXPECT_TRUE(ProductSpace::Create(*Space::Create(64, 8, {}), {1024, 1024}).ok());
}

// ---- Every sampler ------------------------------------------------------------------------------

class ProductSamplerTest : public ::testing::TestWithParam<SamplerKind> {};

INSTANTIATE_TEST_SUITE_P(AllSamplers, ProductSamplerTest, ::testing::ValuesIn(kAllKinds),
                         [](const ::testing::TestParamInfo<SamplerKind>& info) {
                           std::string name = SamplerKindName(info.param);
                           name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
                           return name;
                         });

TEST_P(ProductSamplerTest, WithoutAxesDrawsExactlyWhatTheFamilySamplerDraws) {
  const Space families = *Space::Create(29, 4, {});
  const ProductSpace product = MakeProduct(29, 4, {});
  auto a = CreateSampler(GetParam(), families, 3);
  auto b = Make(GetParam(), product, 3);
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 120; ++i) {
    const uint64_t ra = *(*a)->Next(), rb = *b->Next();
    ASSERT_EQ(ra, rb) << "draw " << i;
    (*a)->Observe(ra, Accuracy(product, ra));
    b->Observe(rb, Accuracy(product, rb));
  }
}

TEST_P(ProductSamplerTest, ExhaustsSmallProductSpacesExactlyThenOutOfRange) {
  // Family axis with and without required families, k = 1 (a backbone), and no family axis.
  for (const ProductSpace& space :
       {MakeProduct(6, 2, {3, 2}), MakeProduct(7, 3, {2, 3}, {4}), MakeProduct(5, 1, {3}),
        MakeProduct(0, 0, {3, 4}), MakeProduct(1, 1, {5})}) {
    std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 7);
    const std::vector<uint64_t> ranks = Draw(*sampler, space, static_cast<int>(space.size()));
    ASSERT_EQ(ranks.size(), space.size());
    EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), space.size());
    EXPECT_LT(*std::max_element(ranks.begin(), ranks.end()), space.size());
    EXPECT_EQ(sampler->Next().status().code(), absl::StatusCode::kOutOfRange);
  }
}

TEST_P(ProductSamplerTest, SameSeedSameDrawsOtherSeedOtherDraws) {
  const ProductSpace space = BenchSpace();
  const std::vector<uint64_t> a = Draw(*Make(GetParam(), space, 11), space, 150);
  EXPECT_EQ(a, Draw(*Make(GetParam(), space, 11), space, 150));
  if (GetParam() == SamplerKind::kLexicographic) {
    EXPECT_EQ(a, Draw(*Make(GetParam(), space, 12), space, 150));
  } else {
    EXPECT_NE(a, Draw(*Make(GetParam(), space, 12), space, 150));
  }
}

TEST_P(ProductSamplerTest, RestartFromMarkedAndObservedStateContinuesExactly) {
  const ProductSpace space = BenchSpace();
  constexpr int kMore = 120;
  for (int already : {30, 200}) {
    SCOPED_TRACE(already);
    const std::vector<uint64_t> uninterrupted =
        Draw(*Make(GetParam(), space, 5), space, already + kMore);
    std::unique_ptr<Sampler> rebuilt = Make(GetParam(), space, 5);
    std::vector<uint64_t> done(uninterrupted.begin(), uninterrupted.begin() + already);
    std::mt19937_64 rng(already);
    std::shuffle(done.begin(), done.end(), rng);
    for (uint64_t r : done) ASSERT_TRUE(rebuilt->MarkDrawn(r).ok());
    std::shuffle(done.begin(), done.end(), rng);
    for (uint64_t r : done) rebuilt->Observe(r, Accuracy(space, r));
    EXPECT_EQ(rebuilt->draws(), static_cast<uint64_t>(already));
    const std::vector<uint64_t> resumed = Draw(*rebuilt, space, kMore);
    EXPECT_TRUE(std::equal(resumed.begin(), resumed.end(), uninterrupted.begin() + already));
  }
}

TEST_P(ProductSamplerTest, MarkDrawnValidatesAndMarkedPointsAreNeverIssued) {
  const ProductSpace space = BenchSpace();
  std::unique_ptr<Sampler> sampler = Make(GetParam(), space, 9);
  EXPECT_EQ(sampler->MarkDrawn(space.size()).code(), absl::StatusCode::kInvalidArgument);
  std::mt19937_64 rng(1);
  std::set<uint64_t> marked;
  while (marked.size() < 300) marked.insert(rng() % space.size());
  for (uint64_t r : marked) ASSERT_TRUE(sampler->MarkDrawn(r).ok());
  EXPECT_EQ(sampler->MarkDrawn(*marked.begin()).code(), absl::StatusCode::kAlreadyExists);
  const std::vector<uint64_t> ranks = Draw(*sampler, space, 600);
  EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), ranks.size());
  for (uint64_t r : ranks) EXPECT_FALSE(marked.count(r)) << r;
  EXPECT_EQ(sampler->draws(), 900u);
}

TEST_P(ProductSamplerTest, LargestSpacesDrawDistinctValidPoints) {
  const ProductSpace space = MakeProduct(64, 8, {16, 1024});
  const std::vector<uint64_t> ranks = Draw(*Make(GetParam(), space, 2), space, 200);
  EXPECT_EQ(std::set<uint64_t>(ranks.begin(), ranks.end()).size(), 200u);
  for (uint64_t r : ranks) EXPECT_LT(r, space.size());
}

// ---- Each sampler's guarantee -------------------------------------------------------------------

TEST(ProductStratifiedTest, FamilyAndEveryAxisLevelCountWithinOneAtEveryPrefix) {
  for (const ProductSpace& space :
       {BenchSpace(), MakeProduct(0, 0, {5, 3}), MakeProduct(6, 1, {4})}) {
    std::unique_ptr<Sampler> sampler = Make(SamplerKind::kStratified, space, 4);
    const int count = static_cast<int>(std::min<uint64_t>(space.size(), 600));
    const std::vector<uint64_t> ranks = Draw(*sampler, space, count);
    for (size_t d = 1; d <= ranks.size(); ++d) {
      const Deviations dev = PrefixDeviations(space, ranks, d);
      ASSERT_LE(dev.family, 1) << "prefix " << d;
      for (int64_t l : dev.levels) ASSERT_LE(l, 1) << "prefix " << d;
    }
    EXPECT_EQ(sampler->relaxed_draws(), 0u);
  }
}

TEST(ProductPairCoveringTest, CoversPairsCellsAndLevelPairsNearTheLowerBound) {
  // Lower bounds: Schoenheim 73 for the family pairs; 29 * 8 / 4 = 58 for weight-decay cells;
  // 3 * 8 = 24 for level pairs.
  const ProductSpace space = BenchSpace();
  for (uint64_t seed : {1, 2, 3}) {
    const std::vector<uint64_t> ranks =
        Draw(*Make(SamplerKind::kPairCovering, space, seed), space, 200);
    const int draws = DrawsToFullCoverage(space, ranks);
    EXPECT_GT(draws, 0);
    EXPECT_LE(draws, 80) << "seed " << seed;  // within 10% of 73
  }
}

TEST(ProductPairCoveringTest, CoversCellsOfABackboneAxisAndAFamilyFreeSpace) {
  const ProductSpace backbone = MakeProduct(10, 1, {5});
  EXPECT_EQ(DrawsToFullCoverage(backbone,
                                Draw(*Make(SamplerKind::kPairCovering, backbone, 1), backbone, 50)),
            50);  // every (family, level) cell once: the whole space
  const ProductSpace axes = MakeProduct(0, 0, {4, 6});
  EXPECT_EQ(DrawsToFullCoverage(axes, Draw(*Make(SamplerKind::kPairCovering, axes, 1), axes, 24)),
            24);
}

TEST(ProductAdaptiveTest, CoversFirstThenFindsTheBestCellSoonerThanUniform) {
  const ProductSpace space = BenchSpace();
  // The top 0.05% of the space (about 850 points): uniform sampling needs about 2,000 draws.
  std::vector<double> all(space.size());
  for (uint64_t r = 0; r < space.size(); ++r) all[r] = Accuracy(space, r);
  std::nth_element(all.begin(), all.end() - space.size() / 2000, all.end());
  const double top = *(all.end() - space.size() / 2000);
  auto draws_to_top = [&](SamplerKind kind, uint64_t seed) {
    std::unique_ptr<Sampler> sampler = Make(kind, space, seed);
    for (int i = 1; i <= 8000; ++i) {
      const uint64_t r = *sampler->Next();
      sampler->Observe(r, Accuracy(space, r));
      if (Accuracy(space, r) >= top) return i;
    }
    return 8001;
  };
  std::vector<int> adaptive, uniform;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    adaptive.push_back(draws_to_top(SamplerKind::kAdaptive, seed));
    uniform.push_back(draws_to_top(SamplerKind::kUniform, seed));
  }
  std::sort(adaptive.begin(), adaptive.end());
  std::sort(uniform.begin(), uniform.end());
  EXPECT_LT(adaptive[2] * 2, uniform[2])
      << "adaptive median " << adaptive[2] << ", uniform " << uniform[2];
  const std::vector<uint64_t> first = Draw(*Make(SamplerKind::kAdaptive, space, 1), space, 120);
  EXPECT_GT(DrawsToFullCoverage(space, first), 0);
  EXPECT_LE(DrawsToFullCoverage(space, first), 80);
}

}  // namespace
}  // namespace quartet::coordinator::space
