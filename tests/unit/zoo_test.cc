// The family zoo against its contract: every catalog variant is registered, builds, runs forward
// and backward at its minimum size (and at 32 px when native) with 1 and 3 input channels, is
// deterministic in eval mode, and has LEMUR's parameter count.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "gtest/gtest.h"
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

using common::FamilyCatalog;
using common::VariantInfo;

std::vector<std::string> CatalogVariants() { return FamilyCatalog::Get().AllVariantNames(); }

const VariantInfo& Variant(const std::string& name) {
  return *FamilyCatalog::Get().Resolve(name).value().variant;
}

// Options the parameter count is measured with: the CIFAR-10 shape (3 channels, 10 classes, 32 px
// or the variant's minimum where larger), as in shared/research/reference-params.md.
ModelOptions CifarOptions(const std::string& name) {
  ModelOptions o;
  o.in_channels = 3;
  o.num_classes = 10;
  o.input_size = std::max(32, Variant(name).min_input_size);
  // LEMUR's DenseNet uses the batch size as its bottleneck multiplier; the reference counts were
  // taken with batch 2.
  if (name == "DenseNet") o.params["bn_size"] = 2;
  return o;
}

TEST(ZooRegistryTest, RegistryAndCatalogNameTheSameModels) {
  std::vector<std::string> catalog = CatalogVariants();
  std::sort(catalog.begin(), catalog.end());
  EXPECT_EQ(RegisteredModels(), catalog);
}

TEST(ZooRegistryTest, RejectsBadOptionsNamingTheField) {
  ModelOptions o;
  o.in_channels = 2;
  auto r = BuildModel("ResNet", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("in_channels"), std::string::npos);

  ModelOptions small;
  small.input_size = 32;
  auto alex = BuildModel("AlexNet", small);
  ASSERT_FALSE(alex.ok());
  EXPECT_NE(alex.status().message().find("input_size"), std::string::npos);

  EXPECT_EQ(BuildModel("NoSuchNet", ModelOptions{}).status().code(), absl::StatusCode::kNotFound);
}

TEST(ZooRegistryTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  ModelOptions o;
  o.seed = 7;
  auto a = BuildModel("ResNet", o).value();
  auto b = BuildModel("ResNet", o).value();
  o.seed = 8;
  auto c = BuildModel("ResNet", o).value();
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_diff = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
    if (pa[i].numel() > 1 && !torch::equal(pa[i], pc[i])) any_diff = true;
  }
  EXPECT_TRUE(any_diff);
}

class ZooVariantTest : public ::testing::TestWithParam<std::string> {};

TEST(ForwardRandomnessTest, ScopedGeneratorReplacesTheGlobalOneOnItsThread) {
  const torch::Tensor x = torch::ones({4, 6, 5, 5});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto draw_all = [&] {
    return std::vector<torch::Tensor>{Dropout(x, 0.5, true), FeatureDropout(x, 0.5, true),
                                      StochasticDepth(x, 0.5, true), RandnLike(x),
                                      RandInt(7, {64}, torch::TensorOptions(torch::kLong))};
  };
  torch::manual_seed(5);
  std::vector<torch::Tensor> first, second;
  {
    ScopedGenerator scope(&gen);
    first = draw_all();
  }
  const torch::Tensor global_after = torch::rand({8});
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(global_after, torch::rand({8})));  // the global stream was untouched
  gen.set_current_seed(11);
  {
    ScopedGenerator scope(&gen);
    second = draw_all();
  }
  for (size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(torch::equal(first[i], second[i])) << i;
  // Dropout keeps about half, scaled by 2; feature dropout and stochastic depth are constant over
  // each (sample, channel) plane and each sample.
  const torch::Tensor kept = first[0].ne(0);
  EXPECT_TRUE(
      torch::equal(first[0].masked_select(kept), torch::full({kept.sum().item<int64_t>()}, 2.0f)));
  EXPECT_NEAR(kept.to(torch::kFloat).mean().item<double>(), 0.5, 0.1);
  EXPECT_TRUE(torch::equal(first[1], first[1].amax({2, 3}, true).expand_as(x)));
  EXPECT_TRUE(torch::equal(first[2], first[2].amax({1, 2, 3}, true).expand_as(x)));
  EXPECT_GE(first[4].min().item<int64_t>(), 0);
  EXPECT_LT(first[4].max().item<int64_t>(), 7);
  // Eval and p = 0 are the identity; without a scope the global generator serves.
  EXPECT_TRUE(torch::equal(Dropout(x, 0.5, false), x));
  EXPECT_TRUE(torch::equal(FeatureDropout(x, 0.0, true), x));
  torch::manual_seed(9);
  const torch::Tensor a = Dropout(x, 0.5, true);
  torch::manual_seed(9);
  EXPECT_TRUE(torch::equal(a, Dropout(x, 0.5, true)));
}

TEST_P(ZooVariantTest, ParameterCountMatchesLemur) {
  const std::string& name = GetParam();
  auto model = BuildModel(name, CifarOptions(name));
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t expected = Variant(name).cifar_parameters;
  const int64_t got = CountParameters(**model);
  RecordProperty("parameters", std::to_string(got));
  EXPECT_NEAR(static_cast<double>(got), static_cast<double>(expected), 0.01 * expected)
      << name << ": " << got << " parameters, LEMUR has " << expected;
}

// Forward in train mode, backward to the first layer, then eval-mode determinism.
void CheckForwardBackward(const std::string& name, int64_t channels, int64_t size) {
  SCOPED_TRACE(name + " channels=" + std::to_string(channels) + " size=" + std::to_string(size));
  ModelOptions o;
  o.in_channels = channels;
  o.num_classes = 10;
  o.input_size = size;
  o.seed = 3;
  auto built = BuildModel(name, o);
  ASSERT_TRUE(built.ok()) << built.status();
  ClassifierPtr model = *built;
  torch::manual_seed(11);
  torch::Tensor x = torch::randn({2, channels, size, size});
  model->train();
  torch::Tensor logits = model->forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 10}));
  ASSERT_TRUE(torch::isfinite(logits).all().item<bool>());
  torch::Tensor loss =
      torch::nn::functional::cross_entropy(logits, torch::tensor({1, 7}, torch::kLong));
  loss.backward();
  torch::Tensor first = model->parameters().front();
  ASSERT_TRUE(first.grad().defined()) << "no gradient reached the first layer";
  EXPECT_GT(first.grad().abs().sum().item<double>(), 0.0) << "zero gradient at the first layer";

  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor e1 = model->forward(x);
  torch::Tensor e2 = model->forward(x);
  EXPECT_TRUE(torch::isfinite(e1).all().item<bool>());
  EXPECT_TRUE(torch::equal(e1, e2)) << "eval mode is not deterministic";
}

TEST_P(ZooVariantTest, ForwardBackwardAtMinimumSize) {
  const std::string& name = GetParam();
  const int size = Variant(name).min_input_size;
  for (int64_t channels : {1, 3}) CheckForwardBackward(name, channels, size);
}

TEST_P(ZooVariantTest, ForwardBackwardAt32WhenNative) {
  const std::string& name = GetParam();
  if (!Variant(name).native_32) GTEST_SKIP() << name << " is not native at 32 px";
  for (int64_t channels : {1, 3}) CheckForwardBackward(name, channels, 32);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooVariantTest, ::testing::ValuesIn(CatalogVariants()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace quartet::worker::models
