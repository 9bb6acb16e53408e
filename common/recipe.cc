#include "common/recipe.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace quartet::common {
namespace {

using quartet::v1::TrainingRecipe;

absl::Status Bad(absl::string_view field, absl::string_view what, double got) {
  return absl::InvalidArgumentError(
      absl::StrCat("recipe.", field, ": must be ", what, ", got ", got));
}

// Checks a finite double against [lo, hi] (or (lo, hi] when lo_open).
absl::Status CheckRange(absl::string_view field, double v, double lo, double hi, bool lo_open,
                        absl::string_view what) {
  if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo)) return Bad(field, what, v);
  return absl::OkStatus();
}

// An int in [lo, hi].
absl::Status CheckInt(absl::string_view field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) return Bad(field, absl::StrCat("in [", lo, ", ", hi, "]"), v);
  return absl::OkStatus();
}

absl::Status ResolveHead(const TrainingRecipe& p, Recipe* r) {
  switch (p.architecture()) {
    case quartet::v1::ARCHITECTURE_UNSPECIFIED:
    case quartet::v1::ARCHITECTURE_MOE4:
      r->architecture = ArchitectureKind::kMoE4;
      break;
    case quartet::v1::ARCHITECTURE_HEADS:
      r->architecture = ArchitectureKind::kHeads;
      break;
    case quartet::v1::ARCHITECTURE_DYNAMOE:
      r->architecture = ArchitectureKind::kDynaMoE;
      break;
    default:
      return Bad("architecture", "ARCHITECTURE_MOE4, ARCHITECTURE_HEADS or ARCHITECTURE_DYNAMOE",
                 p.architecture());
  }
  switch (p.head()) {
    case quartet::v1::HEAD_KIND_UNSPECIFIED:
    case quartet::v1::HEAD_KIND_DENSE:
      r->head = HeadKind::kDense;
      break;
    case quartet::v1::HEAD_KIND_SOFT_MOE:
      r->head = HeadKind::kSoftMoE;
      break;
    case quartet::v1::HEAD_KIND_SPARSE_MOE:
      r->head = HeadKind::kSparseMoE;
      break;
    case quartet::v1::HEAD_KIND_HARD_MOE:
      r->head = HeadKind::kHardMoE;
      break;
    case quartet::v1::HEAD_KIND_SLOTS_SOFT_MOE:
      r->head = HeadKind::kSlotsSoftMoE;
      break;
    default:
      return Bad("head",
                 "HEAD_KIND_DENSE, HEAD_KIND_SOFT_MOE, HEAD_KIND_SPARSE_MOE, HEAD_KIND_HARD_MOE or "
                 "HEAD_KIND_SLOTS_SOFT_MOE",
                 p.head());
  }
  if (p.has_head_experts()) {
    QUARTET_RETURN_IF_ERROR(CheckInt("head_experts", p.head_experts(), 2, 64));
    r->head_experts = p.head_experts();
  }
  if (p.has_head_top_k()) {
    QUARTET_RETURN_IF_ERROR(CheckInt("head_top_k", p.head_top_k(), 1, 64));
    r->head_top_k = p.head_top_k();
  }
  if (r->head == HeadKind::kSparseMoE && r->head_top_k > r->head_experts) {
    return Bad("head_top_k", absl::StrCat("<= head_experts (", r->head_experts, ")"),
               r->head_top_k);
  }
  if (p.has_head_hidden()) {
    QUARTET_RETURN_IF_ERROR(CheckInt("head_hidden", p.head_hidden(), 0, 65536));
    r->head_hidden = p.head_hidden();
  }
  if (p.has_head_dropout()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("head_dropout", p.head_dropout(), 0, 1, false, "a finite number in [0, 1)"));
    if (p.head_dropout() >= 1) return Bad("head_dropout", "a finite number in [0, 1)", 1);
    r->head_dropout = p.head_dropout();
  }
  if (p.has_head_temperature()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("head_temperature", p.head_temperature(), 0.01, 100, false,
                                       "a finite number in [0.01, 100]"));
    r->head_temperature = p.head_temperature();
  }
  struct Weight {
    const char* field;
    bool has;
    double value;
    double* out;
  };
  for (const Weight& w : {
           Weight{"head_kl_weight", p.has_head_kl_weight(), p.head_kl_weight(), &r->head_kl_weight},
           Weight{"head_importance_weight", p.has_head_importance_weight(),
                  p.head_importance_weight(), &r->head_importance_weight},
           Weight{"head_load_weight", p.has_head_load_weight(), p.head_load_weight(),
                  &r->head_load_weight},
           Weight{"head_noise_floor", p.has_head_noise_floor(), p.head_noise_floor(),
                  &r->head_noise_floor},
       }) {
    if (!w.has) continue;
    QUARTET_RETURN_IF_ERROR(
        CheckRange(w.field, w.value, 0, 100, false, "a finite number in [0, 100]"));
    *w.out = w.value;
  }
  if (p.has_head_slots_per_expert()) {
    QUARTET_RETURN_IF_ERROR(CheckInt("head_slots_per_expert", p.head_slots_per_expert(), 1, 64));
    r->head_slots_per_expert = p.head_slots_per_expert();
  }
  if (p.has_head_small_input_stem()) r->head_small_input_stem = p.head_small_input_stem();
  return absl::OkStatus();
}

// A proto enum value and its domain value, for the DynaMoE enums.
template <typename P, typename D>
struct EnumPair {
  P proto;
  D domain;
  const char* name;
};

constexpr EnumPair<quartet::v1::ExpertSchedule, ExpertSchedule> kSchedules[] = {
    {quartet::v1::EXPERT_SCHEDULE_UNIFORM, ExpertSchedule::kUniform, "UNIFORM"},
    {quartet::v1::EXPERT_SCHEDULE_DESCENDING, ExpertSchedule::kDescending, "DESCENDING"},
    {quartet::v1::EXPERT_SCHEDULE_ASCENDING, ExpertSchedule::kAscending, "ASCENDING"},
    {quartet::v1::EXPERT_SCHEDULE_PYRAMID, ExpertSchedule::kPyramid, "PYRAMID"},
    {quartet::v1::EXPERT_SCHEDULE_WAVE, ExpertSchedule::kWave, "WAVE"},
    {quartet::v1::EXPERT_SCHEDULE_HOURGLASS, ExpertSchedule::kHourglass, "HOURGLASS"},
};
constexpr EnumPair<quartet::v1::DynamicThreshold, DynamicThreshold> kThresholds[] = {
    {quartet::v1::DYNAMIC_THRESHOLD_CUMULATIVE_MASS, DynamicThreshold::kCumulativeMass,
     "CUMULATIVE_MASS"},
    {quartet::v1::DYNAMIC_THRESHOLD_TOKEN_PERCENTILE, DynamicThreshold::kTokenPercentile,
     "TOKEN_PERCENTILE"},
};
constexpr EnumPair<quartet::v1::BalanceLoss, BalanceLossKind> kBalances[] = {
    {quartet::v1::BALANCE_LOSS_NONE, BalanceLossKind::kNone, "NONE"},
    {quartet::v1::BALANCE_LOSS_SWITCH, BalanceLossKind::kSwitch, "SWITCH"},
    {quartet::v1::BALANCE_LOSS_IMPORTANCE_CV2, BalanceLossKind::kImportanceCv2, "IMPORTANCE_CV2"},
};

// The domain value of `value` (0, unset, means the table's first entry); INVALID_ARGUMENT naming
// the field and listing the accepted names otherwise.
template <typename P, typename D, size_t N>
absl::Status FromProtoEnum(absl::string_view field, int value, const EnumPair<P, D> (&table)[N],
                           absl::string_view prefix, D* out) {
  if (value == 0) {
    *out = table[0].domain;
    return absl::OkStatus();
  }
  std::string names;
  for (const auto& e : table) {
    if (static_cast<int>(e.proto) == value) {
      *out = e.domain;
      return absl::OkStatus();
    }
    absl::StrAppend(&names, names.empty() ? "" : ", ", prefix, e.name);
  }
  return Bad(field, absl::StrCat("one of ", names), value);
}

template <typename P, typename D, size_t N>
const EnumPair<P, D>& ToProtoEnum(D value, const EnumPair<P, D> (&table)[N]) {
  for (const auto& e : table) {
    if (e.domain == value) return e;
  }
  return table[0];
}

// ARCHITECTURE_DYNAMOE's fields, and the routers each architecture accepts.
absl::Status ResolveDynaMoE(const TrainingRecipe& p, Recipe* r) {
  struct Count {
    const char* field;
    bool has;
    int64_t value;
    int64_t lo, hi;
    int* out;
  };
  for (const Count& c : {
           Count{"dynamoe_layers", p.has_dynamoe_layers(), p.dynamoe_layers(), 1, 16,
                 &r->dynamoe_layers},
           Count{"dynamoe_min_experts", p.has_dynamoe_min_experts(), p.dynamoe_min_experts(), 1, 64,
                 &r->dynamoe_min_experts},
           Count{"dynamoe_max_experts", p.has_dynamoe_max_experts(), p.dynamoe_max_experts(), 1, 64,
                 &r->dynamoe_max_experts},
           Count{"dynamoe_wave_cycles", p.has_dynamoe_wave_cycles(), p.dynamoe_wave_cycles(), 1, 8,
                 &r->dynamoe_wave_cycles},
           Count{"dynamoe_max_active", p.has_dynamoe_max_active(), p.dynamoe_max_active(), 0, 64,
                 &r->dynamoe_max_active},
           Count{"dynamoe_width", p.has_dynamoe_width(), p.dynamoe_width(), 4, 1024,
                 &r->dynamoe_width},
           Count{"dynamoe_expert_hidden", p.has_dynamoe_expert_hidden(), p.dynamoe_expert_hidden(),
                 1, 4096, &r->dynamoe_expert_hidden},
       }) {
    if (!c.has) continue;
    QUARTET_RETURN_IF_ERROR(CheckInt(c.field, c.value, c.lo, c.hi));
    *c.out = static_cast<int>(c.value);
  }
  if (r->dynamoe_min_experts > r->dynamoe_max_experts) {
    return Bad("dynamoe_min_experts",
               absl::StrCat("<= dynamoe_max_experts (", r->dynamoe_max_experts, ")"),
               r->dynamoe_min_experts);
  }
  if (p.has_dynamoe_percentile()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("dynamoe_percentile", p.dynamoe_percentile(), 0, 100, true,
                                       "a finite number in (0, 100)"));
    if (p.dynamoe_percentile() >= 100) {
      return Bad("dynamoe_percentile", "a finite number in (0, 100)", p.dynamoe_percentile());
    }
    r->dynamoe_percentile = p.dynamoe_percentile();
  }
  if (p.has_dynamoe_capacity_fair()) r->dynamoe_capacity_fair = p.dynamoe_capacity_fair();
  if (p.has_dynamoe_token_routing()) r->dynamoe_token_routing = p.dynamoe_token_routing();
  QUARTET_RETURN_IF_ERROR(FromProtoEnum("dynamoe_schedule", p.dynamoe_schedule(), kSchedules,
                                        "EXPERT_SCHEDULE_", &r->dynamoe_schedule));
  QUARTET_RETURN_IF_ERROR(FromProtoEnum("dynamoe_threshold", p.dynamoe_threshold(), kThresholds,
                                        "DYNAMIC_THRESHOLD_", &r->dynamoe_threshold));
  QUARTET_RETURN_IF_ERROR(FromProtoEnum("dynamoe_balance", p.dynamoe_balance(), kBalances,
                                        "BALANCE_LOSS_", &r->dynamoe_balance));
  const bool dynamoe = r->architecture == ArchitectureKind::kDynaMoE;
  if (r->router == RouterKind::kDynamic && !dynamoe) {
    return Bad("router",
               "ROUTER_DYNAMIC only with ARCHITECTURE_DYNAMOE (use ROUTER_TOP_P for MoE4)",
               p.router());
  }
  if (r->router == RouterKind::kTopP && dynamoe) {
    return Bad("router",
               "ROUTER_DYNAMIC, ROUTER_TOP_K or ROUTER_DENSE with ARCHITECTURE_DYNAMOE (its "
               "DYNAMIC_THRESHOLD_CUMULATIVE_MASS is top-p routing)",
               p.router());
  }
  return absl::OkStatus();
}

// Proto3 scalars of AnalysisRequest: 0 means the default.
absl::Status ResolveAnalyses(const quartet::v1::AnalysisRequest& p, AnalysisOptions* a) {
  a->hessian = p.hessian();
  a->curvature_sweep = p.curvature_sweep();
  a->loss_surface = p.loss_surface();
  a->efficiency = p.efficiency();
  a->gradient_variance = p.gradient_variance();
  struct Count {
    const char* field;
    int64_t value;
    int64_t lo, hi;
    int* out;
  };
  for (const Count& c : {
           Count{"analyses.train_samples", p.train_samples(), 1, 1000000, &a->train_samples},
           Count{"analyses.test_samples", p.test_samples(), 1, 1000000, &a->test_samples},
           Count{"analyses.batch_size", p.batch_size(), 1, 65536, &a->batch_size},
           Count{"analyses.hessian_top_k", p.hessian_top_k(), 1, 100, &a->hessian_top_k},
           Count{"analyses.hessian_max_iterations", p.hessian_max_iterations(), 1, 100000,
                 &a->hessian_max_iterations},
           Count{"analyses.hutchinson_samples", p.hutchinson_samples(), 1, 100000,
                 &a->hutchinson_samples},
           Count{"analyses.curvature_points", p.curvature_points(), 2, 10001, &a->curvature_points},
           Count{"analyses.surface_directions", p.surface_directions(), 1, 100,
                 &a->surface_directions},
           Count{"analyses.surface_points", p.surface_points(), 2, 10001, &a->surface_points},
           Count{"analyses.surface_points_2d", p.surface_points_2d(), 2, 1001,
                 &a->surface_points_2d},
           Count{"analyses.latency_batches", p.latency_batches(), 1, 100000, &a->latency_batches},
           Count{"analyses.latency_warmup_batches", p.latency_warmup_batches(), 1, 100000,
                 &a->latency_warmup_batches},
           Count{"analyses.latency_batch_size", p.latency_batch_size(), 1, 65536,
                 &a->latency_batch_size},
           Count{"analyses.gradient_variance_batches", p.gradient_variance_batches(), 2, 1000,
                 &a->gradient_variance_batches},
       }) {
    if (c.value == 0) continue;
    QUARTET_RETURN_IF_ERROR(CheckInt(c.field, c.value, c.lo, c.hi));
    *c.out = static_cast<int>(c.value);
  }
  if (p.hessian_tolerance() != 0) {
    QUARTET_RETURN_IF_ERROR(CheckRange("analyses.hessian_tolerance", p.hessian_tolerance(), 0, 1,
                                       true, "a finite number in (0, 1] (0 means 1e-3)"));
    a->hessian_tolerance = p.hessian_tolerance();
  }
  if (p.curvature_radius() != 0) {
    QUARTET_RETURN_IF_ERROR(CheckRange("analyses.curvature_radius", p.curvature_radius(), 0, 100,
                                       true, "a finite number in (0, 100] (0 means 0.5)"));
    a->curvature_radius = p.curvature_radius();
  }
  a->seed = p.seed();
  return absl::OkStatus();
}

quartet::v1::HeadKind HeadToProto(HeadKind h) {
  switch (h) {
    case HeadKind::kDense:
      return quartet::v1::HEAD_KIND_DENSE;
    case HeadKind::kSoftMoE:
      return quartet::v1::HEAD_KIND_SOFT_MOE;
    case HeadKind::kSparseMoE:
      return quartet::v1::HEAD_KIND_SPARSE_MOE;
    case HeadKind::kHardMoE:
      return quartet::v1::HEAD_KIND_HARD_MOE;
    case HeadKind::kSlotsSoftMoE:
      return quartet::v1::HEAD_KIND_SLOTS_SOFT_MOE;
  }
  return quartet::v1::HEAD_KIND_UNSPECIFIED;
}

}  // namespace

absl::StatusOr<Recipe> ResolveRecipe(const TrainingRecipe& p) {
  Recipe r;
  if (p.has_epochs()) {
    if (p.epochs() < 1 || p.epochs() > 10000) return Bad("epochs", "in [1, 10000]", p.epochs());
    r.epochs = p.epochs();
  }
  if (p.has_batch_size()) {
    if (p.batch_size() < 2 || p.batch_size() > 65536) {
      return Bad("batch_size", "in [2, 65536] (BatchNorm needs 2 samples)", p.batch_size());
    }
    r.batch_size = p.batch_size();
  }
  if (p.has_learning_rate()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("learning_rate", p.learning_rate(), 0, 10, true, "a finite number in (0, 10]"));
    r.learning_rate = p.learning_rate();
  }
  if (p.has_weight_decay()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("weight_decay", p.weight_decay(), 0, 1, false, "a finite number in [0, 1]"));
    r.weight_decay = p.weight_decay();
  }
  switch (p.optimizer()) {
    case quartet::v1::OPTIMIZER_UNSPECIFIED:
    case quartet::v1::OPTIMIZER_ADAMW:
      r.optimizer = OptimizerKind::kAdamW;
      break;
    case quartet::v1::OPTIMIZER_SGD:
      r.optimizer = OptimizerKind::kSgd;
      break;
    default:
      return Bad("optimizer", "OPTIMIZER_ADAMW or OPTIMIZER_SGD", p.optimizer());
  }
  if (p.has_momentum()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("momentum", p.momentum(), 0, 1, false, "a finite number in [0, 1)"));
    if (p.momentum() >= 1) return Bad("momentum", "a finite number in [0, 1)", p.momentum());
    r.momentum = p.momentum();
  }
  if (p.has_gate_lr_multiplier()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("gate_lr_multiplier", p.gate_lr_multiplier(), 0, 100, false,
                                       "a finite number in [0, 100]"));
    r.gate_lr_multiplier = p.gate_lr_multiplier();
  }
  if (p.has_gate_weight_decay_multiplier()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("gate_weight_decay_multiplier",
                                       p.gate_weight_decay_multiplier(), 0, 100, false,
                                       "a finite number in [0, 100]"));
    r.gate_weight_decay_multiplier = p.gate_weight_decay_multiplier();
  }
  if (p.has_warmup_steps()) {
    if (p.warmup_steps() < 0) return Bad("warmup_steps", ">= 0", p.warmup_steps());
    r.warmup_steps = p.warmup_steps();
  }
  if (p.has_warmup_start_factor()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("warmup_start_factor", p.warmup_start_factor(), 0, 1, true,
                                       "a finite number in (0, 1]"));
    r.warmup_start_factor = p.warmup_start_factor();
  }
  if (p.has_eta_min()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("eta_min", p.eta_min(), 0, 10, false, "a finite number in [0, 10]"));
    r.eta_min = p.eta_min();
  }
  if (r.eta_min > r.learning_rate) {
    return Bad("eta_min", absl::StrCat("<= learning_rate (", r.learning_rate, ")"), r.eta_min);
  }
  if (p.has_label_smoothing()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("label_smoothing", p.label_smoothing(), 0, 1, false,
                                       "a finite number in [0, 1)"));
    if (p.label_smoothing() >= 1) {
      return Bad("label_smoothing", "a finite number in [0, 1)", p.label_smoothing());
    }
    r.label_smoothing = p.label_smoothing();
  }
  if (p.has_mixup_alpha()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("mixup_alpha", p.mixup_alpha(), 0, 100, false,
                                       "a finite number in [0, 100] (0 turns mixup off)"));
    r.mixup_alpha = p.mixup_alpha();
  }
  if (p.has_grad_clip_norm()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("grad_clip_norm", p.grad_clip_norm(), 0, 1e6, false,
                                       "a finite number >= 0 (0 turns clipping off)"));
    r.grad_clip_norm = p.grad_clip_norm();
  }
  if (p.has_dropout()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("dropout", p.dropout(), 0, 1, false, "a finite number in [0, 1)"));
    if (p.dropout() >= 1) return Bad("dropout", "a finite number in [0, 1)", p.dropout());
    r.dropout = p.dropout();
  }
  switch (p.router()) {
    case quartet::v1::ROUTER_UNSPECIFIED:
    case quartet::v1::ROUTER_DENSE:
      r.router = RouterKind::kDense;
      break;
    case quartet::v1::ROUTER_TOP_K:
      r.router = RouterKind::kTopK;
      break;
    case quartet::v1::ROUTER_TOP_P:
      r.router = RouterKind::kTopP;
      break;
    case quartet::v1::ROUTER_DYNAMIC:
      r.router = RouterKind::kDynamic;
      break;
    default:
      return Bad("router", "ROUTER_DENSE, ROUTER_TOP_K, ROUTER_TOP_P or ROUTER_DYNAMIC",
                 p.router());
  }
  if (p.has_top_k()) {
    if (p.top_k() < 1 || p.top_k() > 8) return Bad("top_k", "in [1, 8]", p.top_k());
    r.top_k = p.top_k();
  }
  if (p.has_top_p()) {
    QUARTET_RETURN_IF_ERROR(
        CheckRange("top_p", p.top_p(), 0, 1, true, "a finite number in (0, 1]"));
    r.top_p = p.top_p();
  }
  if (p.has_max_active_experts()) {
    if (p.max_active_experts() < 0 || p.max_active_experts() > 8) {
      return Bad("max_active_experts", "in [0, 8] (0 means all)", p.max_active_experts());
    }
    r.max_active_experts = p.max_active_experts();
  }
  if (p.has_balance_loss_weight()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("balance_loss_weight", p.balance_loss_weight(), 0, 100,
                                       false, "a finite number in [0, 100]"));
    r.balance_loss_weight = p.balance_loss_weight();
  }
  if (p.has_input_size()) {
    if (p.input_size() != 0 && (p.input_size() < 8 || p.input_size() > 1024)) {
      return Bad("input_size", "0 (automatic) or in [8, 1024]", p.input_size());
    }
    r.input_size = p.input_size();
  }
  if (p.has_time_budget_seconds()) {
    QUARTET_RETURN_IF_ERROR(CheckRange("time_budget_seconds", p.time_budget_seconds(), 0, 1e7,
                                       false, "a finite number >= 0 (0 means none)"));
    r.time_budget_seconds = p.time_budget_seconds();
  }
  if (p.has_seed()) {
    r.seed = p.seed();
    r.has_seed = true;
  }
  if (p.has_augment()) r.augment = p.augment();
  if (p.has_amp()) r.amp = p.amp();
  QUARTET_RETURN_IF_ERROR(ResolveHead(p, &r));
  QUARTET_RETURN_IF_ERROR(ResolveDynaMoE(p, &r));
  QUARTET_RETURN_IF_ERROR(ResolveAnalyses(p.analyses(), &r.analyses));
  return r;
}

quartet::v1::TrainingRecipe RecipeToProto(const Recipe& r) {
  TrainingRecipe p;
  p.set_epochs(r.epochs);
  p.set_batch_size(r.batch_size);
  p.set_learning_rate(r.learning_rate);
  p.set_weight_decay(r.weight_decay);
  p.set_optimizer(r.optimizer == OptimizerKind::kSgd ? quartet::v1::OPTIMIZER_SGD
                                                     : quartet::v1::OPTIMIZER_ADAMW);
  p.set_momentum(r.momentum);
  p.set_gate_lr_multiplier(r.gate_lr_multiplier);
  p.set_gate_weight_decay_multiplier(r.gate_weight_decay_multiplier);
  if (r.warmup_steps >= 0) p.set_warmup_steps(r.warmup_steps);
  p.set_warmup_start_factor(r.warmup_start_factor);
  p.set_eta_min(r.eta_min);
  p.set_label_smoothing(r.label_smoothing);
  p.set_mixup_alpha(r.mixup_alpha);
  p.set_grad_clip_norm(r.grad_clip_norm);
  p.set_dropout(r.dropout);
  switch (r.router) {
    case RouterKind::kDense:
      p.set_router(quartet::v1::ROUTER_DENSE);
      break;
    case RouterKind::kTopK:
      p.set_router(quartet::v1::ROUTER_TOP_K);
      break;
    case RouterKind::kTopP:
      p.set_router(quartet::v1::ROUTER_TOP_P);
      break;
    case RouterKind::kDynamic:
      p.set_router(quartet::v1::ROUTER_DYNAMIC);
      break;
  }
  p.set_top_k(r.top_k);
  p.set_top_p(r.top_p);
  p.set_max_active_experts(r.max_active_experts);
  p.set_balance_loss_weight(r.balance_loss_weight);
  p.set_input_size(r.input_size);
  p.set_time_budget_seconds(r.time_budget_seconds);
  if (r.has_seed) p.set_seed(r.seed);
  p.set_augment(r.augment);
  p.set_amp(r.amp);
  switch (r.architecture) {
    case ArchitectureKind::kMoE4:
      p.set_architecture(quartet::v1::ARCHITECTURE_MOE4);
      break;
    case ArchitectureKind::kHeads:
      p.set_architecture(quartet::v1::ARCHITECTURE_HEADS);
      break;
    case ArchitectureKind::kDynaMoE:
      p.set_architecture(quartet::v1::ARCHITECTURE_DYNAMOE);
      break;
  }
  p.set_head(HeadToProto(r.head));
  p.set_head_experts(r.head_experts);
  p.set_head_top_k(r.head_top_k);
  p.set_head_hidden(r.head_hidden);
  p.set_head_dropout(r.head_dropout);
  p.set_head_temperature(r.head_temperature);
  p.set_head_kl_weight(r.head_kl_weight);
  p.set_head_importance_weight(r.head_importance_weight);
  p.set_head_load_weight(r.head_load_weight);
  p.set_head_noise_floor(r.head_noise_floor);
  p.set_head_slots_per_expert(r.head_slots_per_expert);
  p.set_head_small_input_stem(r.head_small_input_stem);
  p.set_dynamoe_layers(r.dynamoe_layers);
  p.set_dynamoe_min_experts(r.dynamoe_min_experts);
  p.set_dynamoe_max_experts(r.dynamoe_max_experts);
  p.set_dynamoe_schedule(ToProtoEnum(r.dynamoe_schedule, kSchedules).proto);
  p.set_dynamoe_wave_cycles(r.dynamoe_wave_cycles);
  p.set_dynamoe_capacity_fair(r.dynamoe_capacity_fair);
  p.set_dynamoe_percentile(r.dynamoe_percentile);
  p.set_dynamoe_max_active(r.dynamoe_max_active);
  p.set_dynamoe_threshold(ToProtoEnum(r.dynamoe_threshold, kThresholds).proto);
  p.set_dynamoe_balance(ToProtoEnum(r.dynamoe_balance, kBalances).proto);
  p.set_dynamoe_width(r.dynamoe_width);
  p.set_dynamoe_expert_hidden(r.dynamoe_expert_hidden);
  p.set_dynamoe_token_routing(r.dynamoe_token_routing);
  const AnalysisOptions& a = r.analyses;
  quartet::v1::AnalysisRequest* q = p.mutable_analyses();
  q->set_hessian(a.hessian);
  q->set_curvature_sweep(a.curvature_sweep);
  q->set_loss_surface(a.loss_surface);
  q->set_efficiency(a.efficiency);
  q->set_gradient_variance(a.gradient_variance);
  q->set_train_samples(a.train_samples);
  q->set_test_samples(a.test_samples);
  q->set_batch_size(a.batch_size);
  q->set_hessian_top_k(a.hessian_top_k);
  q->set_hessian_max_iterations(a.hessian_max_iterations);
  q->set_hessian_tolerance(a.hessian_tolerance);
  q->set_hutchinson_samples(a.hutchinson_samples);
  q->set_seed(a.seed);
  q->set_curvature_points(a.curvature_points);
  q->set_curvature_radius(a.curvature_radius);
  q->set_surface_directions(a.surface_directions);
  q->set_surface_points(a.surface_points);
  q->set_surface_points_2d(a.surface_points_2d);
  q->set_latency_batches(a.latency_batches);
  q->set_latency_warmup_batches(a.latency_warmup_batches);
  q->set_latency_batch_size(a.latency_batch_size);
  q->set_gradient_variance_batches(a.gradient_variance_batches);
  return p;
}

absl::Status ValidateDataSpec(const quartet::v1::DataSpec& data) {
  switch (data.dataset()) {
    case quartet::v1::DATASET_CIFAR10:
    case quartet::v1::DATASET_MNIST:
    case quartet::v1::DATASET_FASHION_MNIST:
    case quartet::v1::DATASET_SYNTHETIC:
      break;
    case quartet::v1::DATASET_UNSPECIFIED:
      return absl::InvalidArgumentError(
          "data.dataset: required (DATASET_CIFAR10, DATASET_MNIST, DATASET_FASHION_MNIST or "
          "DATASET_SYNTHETIC)");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("data.dataset: unknown value ", data.dataset()));
  }
  if (data.train_limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.train_limit: must be >= 0 (0 means all), got ", data.train_limit()));
  }
  if (data.test_limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.test_limit: must be >= 0 (0 means all), got ", data.test_limit()));
  }
  return absl::OkStatus();
}

const char* RouterName(RouterKind router) {
  switch (router) {
    case RouterKind::kDense:
      return "dense";
    case RouterKind::kTopK:
      return "top-k";
    case RouterKind::kTopP:
      return "top-p";
    case RouterKind::kDynamic:
      return "dynamic";
  }
  return "?";
}

const char* ArchitectureName(ArchitectureKind architecture) {
  switch (architecture) {
    case ArchitectureKind::kMoE4:
      return "MOE4";
    case ArchitectureKind::kHeads:
      return "HEADS";
    case ArchitectureKind::kDynaMoE:
      return "DYNAMOE";
  }
  return "?";
}

const char* ScheduleName(ExpertSchedule schedule) { return ToProtoEnum(schedule, kSchedules).name; }

const char* BalanceLossName(BalanceLossKind balance) {
  return ToProtoEnum(balance, kBalances).name;
}

const char* HeadName(HeadKind head) {
  switch (head) {
    case HeadKind::kDense:
      return "DENSE";
    case HeadKind::kSoftMoE:
      return "SOFT_MOE";
    case HeadKind::kSparseMoE:
      return "SPARSE_MOE";
    case HeadKind::kHardMoE:
      return "HARD_MOE";
    case HeadKind::kSlotsSoftMoE:
      return "SLOTS_SOFT_MOE";
  }
  return "?";
}

}  // namespace quartet::common
