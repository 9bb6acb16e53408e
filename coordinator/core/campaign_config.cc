#include "coordinator/core/campaign_config.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog.h"
#include "common/input_bounds.h"
#include "common/recipe.h"
#include "common/status_macros.h"
#include "coordinator/core/axes.h"
#include "coordinator/space/combinatorics.h"
#include "coordinator/storage/records.h"

namespace quartet::coordinator {
namespace {

constexpr int kDefaultMaxPreemptions = 20;
constexpr int kMaxPreemptionsLimit = 1000;

using common::FamilyCatalog;
using quartet::v1::CampaignConfig;

// Catalog order of a model: (family id, variant index).
std::pair<int, int> OrderOf(const common::ResolvedModel& m) {
  return {m.family->id, static_cast<int>(m.variant - m.family->variants.data())};
}

// Names a pool, exclude or required list may hold: far more than the catalog has, so only a
// request built to cost work reaches it.
constexpr int kMaxListedNames = 1000;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The recipe's own rules and the campaign's: top_k at most k, an input size every pool family
// accepts, DYNAMOE only without families.
absl::StatusOr<common::Recipe> CheckRecipe(const CampaignConfig& c,
                                           const quartet::v1::TrainingRecipe& proto) {
  const FamilyCatalog& catalog = FamilyCatalog::Get();
  QUARTET_ASSIGN_OR_RETURN(common::Recipe recipe, common::ResolveRecipe(proto));
  if (recipe.architecture == common::ArchitectureKind::kDynaMoE && !c.without_families()) {
    return Invalid("recipe.architecture",
                   "ARCHITECTURE_DYNAMOE builds its own network and takes no families; submit the "
                   "campaign with without_families: true and its axes");
  }
  if (recipe.router == common::RouterKind::kTopK && c.k() > 0 && recipe.top_k > c.k()) {
    return Invalid("recipe.top_k",
                   absl::StrCat("must be at most k = ", c.k(), ", got ", recipe.top_k));
  }
  if (recipe.input_size > 0) {
    for (const std::string& name : c.pool()) {
      const common::VariantInfo& v = *catalog.Resolve(name)->variant;
      if (recipe.input_size < v.min_input_size) {
        return Invalid("recipe.input_size", absl::StrCat(recipe.input_size, " px is below ", v.name,
                                                         "'s minimum of ", v.min_input_size,
                                                         " px; raise it, set 0 (automatic), or "
                                                         "exclude ",
                                                         v.name));
      }
    }
  }
  return recipe;
}

// Axes: every value applied to the resolved recipe and data passes CheckRecipe and the data rules.
absl::Status CheckAxes(CampaignConfig* c) {
  quartet::v1::CandidateSpec base;
  *base.mutable_recipe() = c->recipe();
  *base.mutable_data() = c->data();
  const CampaignConfig& campaign = *c;
  return ResolveAxes(c, base, [&campaign](const quartet::v1::CandidateSpec& spec) {
    QUARTET_RETURN_IF_ERROR(CheckRecipe(campaign, spec.recipe()).status());
    return common::ValidateDataSpec(spec.data());
  });
}

// The family axis: pool (names resolved, unknowns and duplicates refused, catalog order),
// exclusions, k and required families; or none at all (without_families).
absl::Status ResolveFamilies(const CampaignConfig& in, ResolvedCampaign* out) {
  const FamilyCatalog& catalog = FamilyCatalog::Get();
  CampaignConfig& c = out->config;
  if (in.without_families()) {
    if (in.pool_size() > 0 || in.exclude_size() > 0 || in.required_size() > 0 || in.k() != 0) {
      return Invalid("without_families",
                     "a campaign without a family axis takes no pool, exclude, required or k");
    }
    if (in.axes_size() == 0) {
      return Invalid("axes", "a campaign without a family axis needs at least one axis");
    }
    return absl::OkStatus();
  }
  // Pool: resolve names, refuse unknowns and duplicates, order by catalog.
  std::vector<std::string> pool_names;
  if (in.pool().empty()) {
    pool_names = catalog.DefaultPool();
  } else {
    pool_names.assign(in.pool().begin(), in.pool().end());
  }
  std::map<std::pair<int, int>, std::string> pool;  // catalog order -> variant name
  std::map<int, std::string> family_variant;        // family id -> variant name in the pool
  for (const std::string& name : pool_names) {
    auto m = catalog.Resolve(name);
    if (!m.ok()) return Invalid("pool", m.status().message());
    auto [it, inserted] = pool.emplace(OrderOf(*m), std::string(m->variant->name));
    if (!inserted) {
      return Invalid("pool", absl::StrCat("'", name, "' is listed twice (as ", it->second, ")"));
    }
    // Variants of one family are one network: a candidate holds each family once.
    auto [same, first] = family_variant.emplace(m->family->id, std::string(m->variant->name));
    if (!first) {
      return Invalid("pool", absl::StrCat("'", same->second, "' and '", m->variant->name,
                                          "' are variants of the same network (family ",
                                          m->family->name, "); keep one of them"));
    }
  }
  for (const std::string& name : in.exclude()) {
    auto m = catalog.Resolve(name);
    if (!m.ok()) return Invalid("exclude", m.status().message());
    if (pool.erase(OrderOf(*m)) == 0) {
      return Invalid("exclude", absl::StrCat("'", name, "' is not in the pool"));
    }
  }
  c.clear_pool();
  c.clear_exclude();
  std::vector<std::pair<int, int>> pool_order;
  for (const auto& [order, name] : pool) {
    c.add_pool(name);
    pool_order.push_back(order);
  }
  const int n = c.pool_size();
  if (n < 1) return Invalid("pool", "needs at least 1 family, has none");
  if (n > space::kMaxN) {
    return Invalid("pool", absl::StrCat("at most ", space::kMaxN, " families, has ", n));
  }

  if (c.k() == 0) c.set_k(4);
  if (c.k() < 1) return Invalid("k", absl::StrCat("must be at least 1, got ", c.k()));
  if (c.k() > std::min(n, space::kMaxK)) {
    return Invalid("k", absl::StrCat("must be at most ", std::min(n, space::kMaxK),
                                     " (the pool has ", n, " families), got ", c.k()));
  }

  // Required families: resolved, in the pool, fewer than k.
  std::set<int> required;
  for (const std::string& name : in.required()) {
    auto m = catalog.Resolve(name);
    if (!m.ok()) return Invalid("required", m.status().message());
    auto pos = std::find(pool_order.begin(), pool_order.end(), OrderOf(*m));
    if (pos == pool_order.end()) {
      return Invalid("required", absl::StrCat("'", name, "' is not in the pool"));
    }
    if (!required.insert(static_cast<int>(pos - pool_order.begin())).second) {
      return Invalid("required", absl::StrCat("'", name, "' is listed twice"));
    }
  }
  if (static_cast<int>(required.size()) >= c.k()) {
    return Invalid("required", absl::StrCat(required.size(),
                                            " required families leave nothing to "
                                            "choose for k = ",
                                            c.k(), "; require fewer than k"));
  }
  c.clear_required();
  for (int idx : required) {
    c.add_required(c.pool(idx));
    out->required.push_back(idx);
  }

  return absl::OkStatus();
}

// Sampler, repeats, attempt and preemption limits, with defaults.
absl::Status ResolveLimits(ResolvedCampaign* out) {
  CampaignConfig& c = out->config;
  if (c.sampler() == quartet::v1::SAMPLER_KIND_UNSPECIFIED) {
    c.set_sampler(quartet::v1::SAMPLER_KIND_STRATIFIED);
  }
  if (!quartet::v1::SamplerKind_IsValid(c.sampler())) {
    return Invalid("sampler", absl::StrCat("unknown value ", c.sampler()));
  }
  out->sampler = FromProto(c.sampler());

  if (c.repeats() == 0) c.set_repeats(1);
  if (c.repeats() < 1 || c.repeats() > 1000) {
    return Invalid("repeats", absl::StrCat("must be in [1, 1000], got ", c.repeats()));
  }
  if (c.max_preemptions() == 0) c.set_max_preemptions(kDefaultMaxPreemptions);
  if (c.max_preemptions() < 1 || c.max_preemptions() > kMaxPreemptionsLimit) {
    return Invalid("max_preemptions", absl::StrCat("must be in [1, ", kMaxPreemptionsLimit,
                                                   "], got ", c.max_preemptions()));
  }
  if (c.max_attempts() == 0) c.set_max_attempts(3);
  if (c.max_attempts() < 1 || c.max_attempts() > 100) {
    return Invalid("max_attempts", absl::StrCat("must be in [1, 100], got ", c.max_attempts()));
  }

  return absl::OkStatus();
}

absl::Status CheckBudget(const ResolvedCampaign& campaign) {
  const CampaignConfig& c = campaign.config;
  QUARTET_ASSIGN_OR_RETURN(space::ProductSpace space, SpaceOf(campaign));
  if (c.budget() < 1) {
    return Invalid("budget", absl::StrCat("must be at least 1, got ", c.budget()));
  }
  const long double capacity = static_cast<long double>(space.size()) * c.repeats();
  if (static_cast<long double>(c.budget()) > capacity) {
    return Invalid("budget",
                   absl::StrCat(c.budget(), " is more than the space holds: ", space.size(),
                                c.axes_size() > 0 ? " distinct points" : " distinct combinations",
                                " x ", c.repeats(), " repeats; lower the budget or raise repeats"));
  }
  return absl::OkStatus();
}

// Longest rung list accepted, and the largest epoch count of a rung.
constexpr int kMaxRungs = 16;
constexpr int kMaxRungEpochs = 10000;
constexpr int kDefaultEta = 3;
constexpr int kDefaultKeepBestCheckpoints = 5;

// The rung list of a MultiFidelity: given, or min_epochs x eta^i up to max_epochs.
absl::Status ResolveRungs(quartet::v1::MultiFidelity* f) {
  if (f->rung_epochs_size() == 0) {
    const int lo = f->min_epochs() == 0 ? 1 : f->min_epochs();
    if (lo < 1) return Invalid("fidelity.min_epochs", absl::StrCat("must be >= 1, got ", lo));
    if (f->max_epochs() < lo || f->max_epochs() > kMaxRungEpochs) {
      return Invalid("fidelity.max_epochs",
                     absl::StrCat("must be in [", lo, ", ", kMaxRungEpochs,
                                  "] (min_epochs up to the last rung), got ", f->max_epochs()));
    }
    for (int64_t e = lo; e < f->max_epochs() && f->rung_epochs_size() < kMaxRungs - 1;
         e *= f->eta()) {
      f->add_rung_epochs(static_cast<int>(e));
    }
    f->add_rung_epochs(f->max_epochs());
  }
  if (f->rung_epochs_size() > kMaxRungs) {
    return Invalid("fidelity.rung_epochs",
                   absl::StrCat("at most ", kMaxRungs, " rungs, got ", f->rung_epochs_size()));
  }
  for (int i = 0; i < f->rung_epochs_size(); ++i) {
    const int e = f->rung_epochs(i);
    if (e < 1 || e > kMaxRungEpochs || (i > 0 && e <= f->rung_epochs(i - 1))) {
      return Invalid("fidelity.rung_epochs",
                     absl::StrCat("must be strictly increasing epochs in [1, ", kMaxRungEpochs,
                                  "], got ", e, " at position ", i));
    }
  }
  if (f->max_epochs() != 0 && f->max_epochs() != f->rung_epochs(f->rung_epochs_size() - 1)) {
    return Invalid(
        "fidelity.max_epochs",
        absl::StrCat("must equal the last rung (", f->rung_epochs(f->rung_epochs_size() - 1),
                     ") when rung_epochs is given, got ", f->max_epochs()));
  }
  f->set_min_epochs(f->rung_epochs(0));
  f->set_max_epochs(f->rung_epochs(f->rung_epochs_size() - 1));
  return absl::OkStatus();
}

// Multi-fidelity defaults and checks; recipe.epochs becomes the last rung (the schedule's length).
absl::Status ResolveFidelity(ResolvedCampaign* out) {
  CampaignConfig& c = out->config;
  if (!c.has_keep_best_checkpoints()) c.set_keep_best_checkpoints(kDefaultKeepBestCheckpoints);
  if (c.keep_best_checkpoints() < 0) {
    return Invalid("keep_best_checkpoints",
                   absl::StrCat("must be >= 0, got ", c.keep_best_checkpoints()));
  }
  if (!c.has_fidelity()) return absl::OkStatus();
  quartet::v1::MultiFidelity* f = c.mutable_fidelity();
  if (f->eta() == 0) f->set_eta(kDefaultEta);
  if (f->eta() < 2) return Invalid("fidelity.eta", absl::StrCat("must be >= 2, got ", f->eta()));
  QUARTET_RETURN_IF_ERROR(ResolveRungs(f));
  if (!f->has_coverage_guard()) f->set_coverage_guard(true);
  if (f->guard_min() == 0) f->set_guard_min(1);
  if (f->guard_min() < 1) {
    return Invalid("fidelity.guard_min", absl::StrCat("must be >= 1, got ", f->guard_min()));
  }
  const int last = f->max_epochs();
  if (f->budget_epochs() == 0) f->set_budget_epochs(c.budget() * last);
  if (f->budget_epochs() < f->rung_epochs(0)) {
    return Invalid("fidelity.budget_epochs",
                   absl::StrCat(f->budget_epochs(), " is smaller than one rung (",
                                f->rung_epochs(0), " epochs); raise it"));
  }
  c.mutable_recipe()->set_epochs(last);
  return absl::OkStatus();
}

absl::Status ResolveAdaptive(ResolvedCampaign* out) {
  CampaignConfig& c = out->config;
  const double share =
      c.adaptive().has_exploration_share() ? c.adaptive().exploration_share() : 0.2;
  if (!std::isfinite(share) || share < 0 || share > 1) {
    return Invalid("adaptive.exploration_share",
                   absl::StrCat("must be a number in [0, 1], got ", share));
  }
  c.mutable_adaptive()->set_exploration_share(share);
  out->sampler_options.exploration_share = share;
  return absl::OkStatus();
}

}  // namespace

space::SamplerKind FromProto(quartet::v1::SamplerKind kind) {
  switch (kind) {
    case quartet::v1::SAMPLER_KIND_LEXICOGRAPHIC:
      return space::SamplerKind::kLexicographic;
    case quartet::v1::SAMPLER_KIND_UNIFORM:
      return space::SamplerKind::kUniform;
    case quartet::v1::SAMPLER_KIND_PAIR_COVERING:
      return space::SamplerKind::kPairCovering;
    case quartet::v1::SAMPLER_KIND_ADAPTIVE:
      return space::SamplerKind::kAdaptive;
    default:
      return space::SamplerKind::kStratified;
  }
}

quartet::v1::SamplerKind ToProto(space::SamplerKind kind) {
  switch (kind) {
    case space::SamplerKind::kLexicographic:
      return quartet::v1::SAMPLER_KIND_LEXICOGRAPHIC;
    case space::SamplerKind::kUniform:
      return quartet::v1::SAMPLER_KIND_UNIFORM;
    case space::SamplerKind::kStratified:
      return quartet::v1::SAMPLER_KIND_STRATIFIED;
    case space::SamplerKind::kPairCovering:
      return quartet::v1::SAMPLER_KIND_PAIR_COVERING;
    case space::SamplerKind::kAdaptive:
      return quartet::v1::SAMPLER_KIND_ADAPTIVE;
  }
  return quartet::v1::SAMPLER_KIND_STRATIFIED;
}

absl::StatusOr<ResolvedCampaign> ResolveCampaign(const CampaignConfig& in) {
  ResolvedCampaign out;
  CampaignConfig& c = out.config;
  c = in;
  if (c.name().empty()) return Invalid("name", "required (a short human-readable name)");
  QUARTET_RETURN_IF_ERROR(common::ValidateName("name", c.name(), /*required=*/true));
  QUARTET_RETURN_IF_ERROR(common::ValidateText("data.data_dir", c.data().data_dir(),
                                               common::kMaxPathBytes, /*single_line=*/true));
  for (const auto* list : {&in.pool(), &in.exclude(), &in.required()}) {
    if (list->size() > kMaxListedNames) {
      const char* field = list == &in.pool()      ? "pool"
                          : list == &in.exclude() ? "exclude"
                                                  : "required";
      return Invalid(field,
                     absl::StrCat("at most ", kMaxListedNames, " names, got ", list->size()));
    }
  }
  QUARTET_RETURN_IF_ERROR(ResolveFamilies(in, &out));
  QUARTET_RETURN_IF_ERROR(ResolveLimits(&out));
  QUARTET_ASSIGN_OR_RETURN(common::Recipe recipe, CheckRecipe(c, in.recipe()));
  *c.mutable_recipe() = common::RecipeToProto(recipe);
  QUARTET_RETURN_IF_ERROR(common::ValidateDataSpec(c.data()));
  QUARTET_RETURN_IF_ERROR(CheckAxes(&c));
  QUARTET_RETURN_IF_ERROR(CheckBudget(out));
  QUARTET_RETURN_IF_ERROR(ResolveFidelity(&out));
  QUARTET_RETURN_IF_ERROR(ResolveAdaptive(&out));
  return out;
}

absl::StatusOr<space::ProductSpace> SpaceOf(const ResolvedCampaign& campaign) {
  std::optional<space::Space> families;
  if (!campaign.config.without_families()) {
    QUARTET_ASSIGN_OR_RETURN(
        families,
        space::Space::Create(campaign.config.pool_size(), campaign.config.k(), campaign.required));
  }
  return space::ProductSpace::Create(std::move(families), AxisLevelCounts(campaign.config));
}

}  // namespace quartet::coordinator
