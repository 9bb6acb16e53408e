// The training recipe with every default filled in, and its validation. The wire form
// (quartet.v1.TrainingRecipe) leaves fields unset to mean "default"; everything downstream of
// ResolveRecipe works with this complete, validated struct.
#ifndef QUARTET_COMMON_RECIPE_H_
#define QUARTET_COMMON_RECIPE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::common {

enum class RouterKind { kDense, kTopK, kTopP, kDynamic };
enum class OptimizerKind { kAdamW, kSgd };
enum class ArchitectureKind { kMoE4, kHeads, kDynaMoE };
enum class HeadKind { kDense, kSoftMoE, kSparseMoE, kHardMoE, kSlotsSoftMoE };
// ARCHITECTURE_DYNAMOE's schedules, ROUTER_DYNAMIC's threshold rules and balance losses; meanings
// in proto/quartet/v1/spec.proto.
enum class ExpertSchedule { kUniform, kDescending, kAscending, kPyramid, kWave, kHourglass };
enum class DynamicThreshold { kCumulativeMass, kTokenPercentile };
enum class BalanceLossKind { kNone, kSwitch, kImportanceCv2 };

// Post-training analyses with every default filled in. Field meanings: proto/quartet/v1/spec.proto
// AnalysisRequest.
struct AnalysisOptions {
  bool hessian = false;
  bool curvature_sweep = false;
  bool loss_surface = false;
  bool efficiency = false;
  bool gradient_variance = false;
  int train_samples = 2000;
  int test_samples = 2000;
  int batch_size = 128;
  int hessian_top_k = 5;
  int hessian_max_iterations = 100;
  double hessian_tolerance = 1e-3;
  int hutchinson_samples = 100;
  // 0 means the recipe's seed.
  uint64_t seed = 0;
  int curvature_points = 21;
  double curvature_radius = 0.5;
  int surface_directions = 5;
  int surface_points = 51;
  int surface_points_2d = 51;
  int latency_batches = 200;
  int latency_warmup_batches = 30;
  int latency_batch_size = 256;
  int gradient_variance_batches = 10;

  // Whether any analysis runs after training (all but gradient_variance, which runs per epoch).
  bool AnyPostTraining() const { return hessian || curvature_sweep || loss_surface || efficiency; }
};

// A complete recipe. Field meanings and defaults: proto/quartet/v1/spec.proto TrainingRecipe.
struct Recipe {
  int epochs = 1;
  int batch_size = 32;
  double learning_rate = 1e-3;
  double weight_decay = 5e-4;
  OptimizerKind optimizer = OptimizerKind::kAdamW;
  double momentum = 0.9;
  double gate_lr_multiplier = 2.0;
  double gate_weight_decay_multiplier = 0.5;
  // -1 means 5% of all steps (resolved by the trainer, which knows the step count).
  int64_t warmup_steps = -1;
  double warmup_start_factor = 0.1;
  double eta_min = 1e-6;
  double label_smoothing = 0.1;
  double mixup_alpha = 0.2;
  double grad_clip_norm = 1.0;
  double dropout = 0.2;
  RouterKind router = RouterKind::kDense;
  int top_k = 2;
  double top_p = 0.5;
  // 0 means all experts.
  int max_active_experts = 0;
  double balance_loss_weight = 0.01;
  // 0 means automatic (dataset native size raised to the families' minimum).
  int input_size = 0;
  double time_budget_seconds = 0;
  // Only meaningful when has_seed.
  uint64_t seed = 0;
  bool has_seed = false;
  bool augment = true;
  bool amp = true;
  ArchitectureKind architecture = ArchitectureKind::kMoE4;
  HeadKind head = HeadKind::kDense;
  int head_experts = 8;
  int head_top_k = 2;
  // 0 means the backbone's feature width.
  int head_hidden = 0;
  double head_dropout = 0.1;
  double head_temperature = 1.0;
  double head_kl_weight = 0.05;
  double head_importance_weight = 0.2;
  double head_load_weight = 0.2;
  double head_noise_floor = 0.3;
  int head_slots_per_expert = 2;
  bool head_small_input_stem = true;
  AnalysisOptions analyses;
  int dynamoe_layers = 4;
  int dynamoe_min_experts = 2;
  int dynamoe_max_experts = 8;
  ExpertSchedule dynamoe_schedule = ExpertSchedule::kUniform;
  int dynamoe_wave_cycles = 1;
  bool dynamoe_capacity_fair = true;
  double dynamoe_percentile = 50;
  // 0 means E_l.
  int dynamoe_max_active = 0;
  DynamicThreshold dynamoe_threshold = DynamicThreshold::kCumulativeMass;
  BalanceLossKind dynamoe_balance = BalanceLossKind::kNone;
  int dynamoe_width = 32;
  int dynamoe_expert_hidden = 64;
  bool dynamoe_token_routing = true;
};

// Fills defaults and validates. INVALID_ARGUMENT naming the field ("recipe.learning_rate: must be
// a finite number > 0, got nan") for negative, zero-where-positive-is-required or non-finite
// values, unknown enum values, and out-of-range probabilities.
absl::StatusOr<Recipe> ResolveRecipe(const quartet::v1::TrainingRecipe& proto);

// The complete wire form of a resolved recipe (every field set).
quartet::v1::TrainingRecipe RecipeToProto(const Recipe& recipe);

// Validates a data spec: dataset set, limits >= 0. INVALID_ARGUMENT naming the field.
absl::Status ValidateDataSpec(const quartet::v1::DataSpec& data);

// "ROUTER_DENSE" -> kDense etc. are the proto enum names; these give short names for display.
const char* RouterName(RouterKind router);
// "MOE4", "HEADS", "DYNAMOE"; "DENSE", "SOFT_MOE", "SPARSE_MOE", "HARD_MOE", "SLOTS_SOFT_MOE".
const char* ArchitectureName(ArchitectureKind architecture);
const char* HeadName(HeadKind head);
// "UNIFORM", "DESCENDING", ...; "NONE", "SWITCH", "IMPORTANCE_CV2".
const char* ScheduleName(ExpertSchedule schedule);
const char* BalanceLossName(BalanceLossKind balance);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_RECIPE_H_
