#include "worker/moe/network.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/moe/dynamoe.h"
#include "worker/moe/heads.h"

namespace quartet::worker::moe {
namespace {

class MoE4Network : public Network {
 public:
  MoE4Network(std::shared_ptr<MoE4Impl> model, double balance_weight, common::RouterKind router)
      : model_(std::move(model)), balance_weight_(balance_weight), router_(router) {}

  MoEOutput Forward(const torch::Tensor& x) override {
    MoEOutput out = model_->Forward(x);
    out.balance_loss = balance_weight_ * out.balance_loss;
    return out;
  }
  void Backward(const torch::Tensor& loss) override { model_->Backward(loss); }
  torch::nn::Module& module() override { return *model_; }
  std::vector<ParameterGroup> ParameterGroups() override {
    return {{"experts", model_->ExpertParameters(), false},
            {"gate", model_->gate()->parameters(), true}};
  }
  void AfterStep() override { model_->gate()->ClampTemperature(); }
  double GateTemperature() override { return model_->gate()->Temperature().item<double>(); }
  bool DenseLoad() const override { return router_ == common::RouterKind::kDense; }
  std::string Describe() const override {
    return absl::StrCat("MOE4 ", common::RouterName(router_));
  }
  std::vector<at::Generator> Generators() const override { return model_->generators(); }
  void SetExportMode(bool on) override { model_->set_dense_dispatch(on); }

 private:
  std::shared_ptr<MoE4Impl> model_;
  double balance_weight_;
  common::RouterKind router_;
};

class HeadsNetwork : public Network {
 public:
  HeadsNetwork(std::shared_ptr<HeadsNetImpl> model, common::HeadKind kind)
      : model_(std::move(model)), kind_(kind) {}

  MoEOutput Forward(const torch::Tensor& x) override { return model_->Forward(x); }
  torch::nn::Module& module() override { return *model_; }
  void SetExportMode(bool on) override { model_->head()->SetDenseDispatch(on); }
  std::vector<ParameterGroup> ParameterGroups() override {
    std::vector<torch::Tensor> router = model_->head()->RouterParameters();
    std::vector<torch::Tensor> head;
    for (const auto& p : model_->head()->parameters()) {
      bool in_router = false;
      for (const auto& r : router) in_router = in_router || r.is_same(p);
      if (!in_router) head.push_back(p);
    }
    std::vector<ParameterGroup> groups = {{"backbone", model_->backbone()->parameters(), false},
                                          {"head", head, false}};
    if (!router.empty()) groups.push_back({"router", router, true});
    return groups;
  }
  bool DenseLoad() const override {
    return kind_ != common::HeadKind::kSparseMoE && kind_ != common::HeadKind::kHardMoE;
  }
  std::string Describe() const override {
    return absl::StrCat("HEADS ", model_->options().backbone, " + ", common::HeadName(kind_));
  }

 private:
  std::shared_ptr<HeadsNetImpl> model_;
  common::HeadKind kind_;
};

class DynaMoENetwork : public Network {
 public:
  DynaMoENetwork(DynaMoENet model, double balance_weight, const common::Recipe& recipe)
      : model_(std::move(model)), balance_weight_(balance_weight), recipe_(recipe) {}

  MoEOutput Forward(const torch::Tensor& x) override {
    MoEOutput out = model_->Forward(x);
    out.balance_loss = balance_weight_ * out.balance_loss;
    return out;
  }
  void SetExportMode(bool on) override {
    model_->SetDenseExecution(on || model_->options().dense_execution);
  }
  torch::nn::Module& module() override { return *model_; }
  std::vector<ParameterGroup> ParameterGroups() override {
    std::vector<torch::Tensor> router, experts;
    for (auto& layer : model_->layers()) {
      for (const auto& p : layer->RouterParameters()) router.push_back(p);
      for (const auto& p : layer->ExpertParameters()) experts.push_back(p);
    }
    return {{"shared", model_->SharedParameters(), false},
            {"experts", experts, false},
            {"router", router, true}};
  }
  bool DenseLoad() const override { return recipe_.router == common::RouterKind::kDense; }
  std::string Describe() const override {
    return absl::StrCat("DYNAMOE ", common::ScheduleName(recipe_.dynamoe_schedule), " ",
                        common::RouterName(recipe_.router), " [",
                        absl::StrJoin(model_->options().layer_experts, ","), "]");
  }
  double ActiveParametersPerToken(const std::vector<double>& mean_active) const override {
    return model_->ActiveParametersPerToken(mean_active);
  }
  std::vector<int> LayerExperts() const override { return model_->options().layer_experts; }

 private:
  DynaMoENet model_;
  double balance_weight_;
  common::Recipe recipe_;
};

absl::StatusOr<std::unique_ptr<Network>> BuildHeads(const common::Recipe& recipe,
                                                    const NetworkOptions& options) {
  if (options.families.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "combination.families: ARCHITECTURE_HEADS takes exactly 1 family (the backbone), got ",
        options.families.size()));
  }
  HeadsOptions ho;
  ho.backbone = options.families[0];
  ho.in_channels = options.in_channels;
  ho.num_classes = options.num_classes;
  ho.input_size = options.input_size;
  ho.backbone_dropout = recipe.dropout;
  ho.small_input_stem = recipe.head_small_input_stem;
  ho.seed = options.seed;
  ho.head.kind = recipe.head;
  ho.head.hidden = recipe.head_hidden;
  ho.head.experts = recipe.head_experts;
  ho.head.top_k = recipe.head_top_k;
  ho.head.dropout = recipe.head_dropout;
  ho.head.temperature = recipe.head_temperature;
  ho.head.kl_weight = recipe.head_kl_weight;
  ho.head.importance_weight = recipe.head_importance_weight;
  ho.head.load_weight = recipe.head_load_weight;
  ho.head.noise_floor = recipe.head_noise_floor;
  ho.head.slots_per_expert = recipe.head_slots_per_expert;
  auto built = HeadsNetImpl::Build(ho);
  if (!built.ok()) return built.status();
  return std::unique_ptr<Network>(new HeadsNetwork(std::move(*built), recipe.head));
}

absl::StatusOr<std::unique_ptr<Network>> BuildDynaMoE(const common::Recipe& recipe,
                                                      const NetworkOptions& options) {
  if (!options.families.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("combination.families: ARCHITECTURE_DYNAMOE takes no families (submit a "
                     "campaign with without_families), got ",
                     options.families.size()));
  }
  auto o = DynaMoEOptionsFrom(recipe, options.in_channels, options.num_classes);
  if (!o.ok()) return o.status();
  return std::unique_ptr<Network>(
      new DynaMoENetwork(DynaMoENet(*o), recipe.balance_loss_weight, recipe));
}

absl::StatusOr<std::unique_ptr<Network>> BuildMoE4(const common::Recipe& recipe,
                                                   const NetworkOptions& options) {
  if (options.families.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("combination.families: ARCHITECTURE_MOE4 needs at least 2 families, got ",
                     options.families.size()));
  }
  MoE4Options mo;
  mo.experts = options.families;
  mo.in_channels = options.in_channels;
  mo.num_classes = options.num_classes;
  mo.input_size = options.input_size;
  mo.dropout = recipe.dropout;
  mo.seed = options.seed;
  mo.router.kind = recipe.router;
  mo.router.top_k = recipe.top_k;
  mo.router.top_p = recipe.top_p;
  mo.router.max_active = recipe.max_active_experts;
  mo.parallel_experts = options.parallel_experts;
  auto built = MoE4Impl::Build(mo);
  if (!built.ok()) return built.status();
  return std::unique_ptr<Network>(
      new MoE4Network(std::move(*built), recipe.balance_loss_weight, recipe.router));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Network>> BuildNetwork(const common::Recipe& recipe,
                                                      const NetworkOptions& options) {
  switch (recipe.architecture) {
    case common::ArchitectureKind::kHeads:
      return BuildHeads(recipe, options);
    case common::ArchitectureKind::kDynaMoE:
      return BuildDynaMoE(recipe, options);
    case common::ArchitectureKind::kMoE4:
      break;
  }
  return BuildMoE4(recipe, options);
}

}  // namespace quartet::worker::moe
