#include "worker/train/torch_trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/artifacts.h"
#include "common/catalog.h"
#include "common/error_class.h"
#include "common/recipe.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/data/batcher.h"
#include "worker/data/dataset.h"
#include "worker/models/blocks.h"
#include "worker/models/registry.h"
#include "worker/moe/moe4.h"
#include "worker/moe/network.h"
#include "worker/train/analysis.h"
#include "worker/train/checkpoint.h"
#include "worker/train/export.h"
#include "worker/train/layer_metrics.h"
#include "worker/train/mixup.h"
#include "worker/train/schedule.h"

#ifdef QUARTET_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace quartet::worker::train {
namespace {

using common::ErrorClassOf;
using common::WithErrorClass;
using quartet::v1::ErrorClass;

namespace F = torch::nn::functional;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

absl::Status Classified(absl::StatusCode code, ErrorClass cls, std::string message) {
  return WithErrorClass(absl::Status(code, message), cls);
}

// Peak device memory since the last reset (CUDA), or the process's peak resident set (CPU).
int64_t PeakMemoryBytes(const torch::Device& device) {
#ifdef QUARTET_WITH_CUDA
  if (device.is_cuda()) {
    // StatType::AGGREGATE, index 0 in every LibTorch (the enum moved namespace in 2.x).
    constexpr size_t kAggregateStat = 0;
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[kAggregateStat].peak;
  }
#endif
  (void)device;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// LibTorch 2.4 replaced the CUDA-only autocast calls with per-device ones (the old ones are
// deprecated, then removed). TORCH_VERSION_* come with <torch/torch.h>.
#define QUARTET_TORCH_DEVICE_AUTOCAST \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

// Mixed precision for one forward pass on CUDA (no-op elsewhere).
class AutocastScope {
 public:
  AutocastScope(bool enabled, torch::ScalarType dtype) : enabled_(enabled) {
#ifdef QUARTET_WITH_CUDA
    if (enabled_) {
#if QUARTET_TORCH_DEVICE_AUTOCAST
      at::autocast::set_autocast_dtype(at::kCUDA, dtype);
      at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(true);
#endif
    }
#else
    (void)dtype;
#endif
  }
  ~AutocastScope() {
#ifdef QUARTET_WITH_CUDA
    if (enabled_) {
#if QUARTET_TORCH_DEVICE_AUTOCAST
      at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
      at::autocast::set_enabled(false);
#endif
      at::autocast::clear_cache();
    }
#endif
  }

 private:
  bool enabled_;
};

// Dynamic loss scaling for fp16 (bf16 needs none).
class LossScaler {
 public:
  explicit LossScaler(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // The raw state, for checkpoints.
  double raw_scale() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  void Restore(double scale, int64_t good_steps) {
    if (scale > 0) scale_ = scale;
    good_steps_ = good_steps;
  }
  // Unscales gradients; false when they overflowed (skip the step).
  bool Unscale(const std::vector<torch::Tensor>& params) {
    if (!enabled_) return true;
    torch::NoGradGuard no_grad;
    bool finite = true;
    for (const auto& p : params) {
      if (!p.grad().defined()) continue;
      p.grad().div_(scale_);
      if (finite && !torch::isfinite(p.grad()).all().item<bool>()) finite = false;
    }
    if (!finite) {
      scale_ /= 2;
      good_steps_ = 0;
    } else if (++good_steps_ % 2000 == 0) {
      scale_ *= 2;
    }
    return finite;
  }

 private:
  bool enabled_;
  double scale_ = 65536.0;
  int64_t good_steps_ = 0;
};

void SetLearningRates(torch::optim::Optimizer& opt, const std::vector<double>& base,
                      double factor) {
  auto& groups = opt.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base[i] * factor);
}

// Throws the same exception a real allocation failure does, for tests of the fallback path.
void MaybeInjectOom(int limit, int64_t micro_batch) {
  if (limit >= 0 && micro_batch > limit) {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "injected allocation failure at micro-batch ",
                     micro_batch);
  }
}

// What a trainer keeps between candidates: its device and its settings.
struct TrainerState {
  torch::Device device{torch::kCPU};
  std::string gpu_name;
  int64_t gpu_memory = 0;
  bool bf16_supported = false;
  // Intra-op threads of each Train() (Options::threads resolved).
  int threads = 1;
  // Options::keep_test_predictions of the last evaluation.
  std::vector<int64_t> test_predictions;
  // Where checkpoints and exports go (Options::artifacts_uri); none when empty.
  std::optional<common::ArtifactStore> artifacts;
};

// Datasets on their devices, shared by every trainer of the process (the slots of one worker), by
// (device, data root, dataset, dir, train limit, test limit). At most kMaxCachedDatasets are kept,
// to bound device memory; one still in use lives on with its users. Datasets are read-only once
// loaded.
using DatasetKey = std::tuple<std::string, std::string, int, std::string, int, int>;
constexpr size_t kMaxCachedDatasets = 2;
struct DatasetCache {
  absl::Mutex mu;
  std::map<DatasetKey, std::shared_ptr<data::Dataset>> datasets ABSL_GUARDED_BY(mu);
};
DatasetCache& SharedDatasets() {
  static auto* cache = new DatasetCache;
  return *cache;
}

// LibTorch's global CPU generator, seeded and drawn from while a model is built (the zoo's weight
// initialisation), is process-wide: concurrent trainings build their models one at a time so that
// each model's initial weights depend on its seed alone. Every other draw of a run comes from the
// run's own generator (TrainingRun::cpu_generator).
absl::Mutex& ModelBuildMutex() {
  static auto* mu = new absl::Mutex;
  return *mu;
}
// Salt of a run's own CPU generator, so that its stream differs from the initialisation's.
constexpr uint64_t kRunGeneratorSalt = 0x2545F4914F6CDD1DULL;

// On a GPU, each Train() issues its kernels on a CUDA stream of its own, so the slots of a worker
// overlap on the device; the stream's work is waited for when the run ends, so that tensors the
// slots share (the datasets) are never freed and reused while another slot's kernels read them.
// On CPU: nothing.
class RunStream {
 public:
  explicit RunStream(const torch::Device& device) {
#ifdef QUARTET_WITH_CUDA
    if (device.is_cuda()) {
      guard_.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index()));
    }
#endif
  }
  ~RunStream() {
#ifdef QUARTET_WITH_CUDA
    try {
      if (guard_) guard_->current_stream().synchronize();
    } catch (const c10::Error& e) {
      spdlog::error("waiting for the run's CUDA stream: {}", e.what_without_backtrace());
    }
#endif
  }
  RunStream(const RunStream&) = delete;
  RunStream& operator=(const RunStream&) = delete;

 private:
#ifdef QUARTET_WITH_CUDA
  std::optional<c10::cuda::CUDAStreamGuard> guard_;
#endif
};

// Waits until a dataset just copied to `device` is there, before other slots' streams read it.
void AwaitCopies(const torch::Device& device) {
#ifdef QUARTET_WITH_CUDA
  if (device.is_cuda()) c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
#endif
}

// Test images the export is traced on, and checked on (other images than the example's).
constexpr int64_t kExportExampleImages = 8;
constexpr int64_t kExportCheckImages = 64;

// Runs one phase of a training, turning any exception LibTorch (or anything below it) throws into a
// Status with an error class: OOM for an allocation failure, `cls` for other LibTorch errors,
// INTERNAL for the rest. A worker never dies of a training's exception.
template <typename F>
absl::Status Guarded(const char* phase, ErrorClass cls, F&& body) {
  try {
    return body();
  } catch (const c10::OutOfMemoryError& e) {
    return Classified(absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
                      absl::StrCat(phase, ": ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return Classified(absl::StatusCode::kInternal, cls,
                      absl::StrCat(phase, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Classified(absl::StatusCode::kInternal, quartet::v1::ERROR_CLASS_INTERNAL,
                      absl::StrCat(phase, ": ", e.what()));
  }
}

// One candidate's training, in phases: Prepare (recipe, data, model, optimiser), then per epoch
// TrainEpoch (optimiser steps), Evaluate (the whole test split) and Report (epoch metrics), then
// Finish. Each phase returns a Status with an error class.
class TrainingRun {
 public:
  TrainingRun(const TorchTrainer::Options& options, TrainerState& state,
              const quartet::v1::CandidateSpec& spec, const TrainCallbacks& callbacks)
      : options_(options),
        st_(state),
        spec_(spec),
        callbacks_(callbacks),
        start_(std::chrono::steady_clock::now()),
        device_(state.device),
        cpu_generator_(at::make_generator<at::CPUGeneratorImpl>()),
        scaler_(false) {}

  int epochs() const { return recipe_.epochs; }
  // Epochs done before this run (a resumed checkpoint's), and the last epoch it trains.
  int start_epoch() const { return start_epoch_; }
  int stop_epoch() const { return stop_epoch_; }
  // Whether this run completes the recipe's schedule (post-training analyses then run).
  bool final() const { return stop_epoch_ == recipe_.epochs; }
  // Resumed from a checkpoint at stop_epoch itself: nothing to train; the stored model is
  // evaluated and the recipe's analyses run on it.
  bool analyses_only() const { return start_epoch_ > 0 && start_epoch_ == stop_epoch_; }
  void set_resume_error(const std::string& error) { result_.set_resume_error(error); }
  // The run's own generator for CPU draws (shuffling, augmentation, mixup partners, dropout and
  // noise through models::ScopedGenerator), seeded from the recipe's seed in Prepare(); it is
  // saved in checkpoints. CUDA draws use the device's global generator.
  at::Generator* cpu_generator() { return &cpu_generator_; }

  // Continues from a checkpoint of this candidate (after Prepare). On error the run is partly
  // overwritten: prepare a fresh one.
  absl::Status Resume(const quartet::v1::Artifact& artifact);
  // The checkpoint of the run as it stands.
  absl::StatusOr<std::string> CheckpointBytes();
  // Writes the checkpoint and the TorchScript export to `store`; failures go to
  // Result.checkpoint_error, never to the run's status.
  void WriteArtifacts(const common::ArtifactStore& store, const std::string& checkpoint);

  absl::Status Prepare() {
    QUARTET_RETURN_IF_ERROR(ResolveSpec());
    QUARTET_RETURN_IF_ERROR(LoadData());
    QUARTET_RETURN_IF_ERROR(BuildModel());
    MakeOptimizer();
    MakeBatchers();
    return absl::OkStatus();
  }

  absl::Status TrainEpoch(int epoch);
  // Minibatch gradient variance at the epoch's end, when recipe.analyses.gradient_variance.
  absl::Status GradientVariance(int epoch);
  absl::Status Evaluate(int epoch);
  void Report(int epoch);
  // The post-training analyses the recipe asks for (none: no-op).
  absl::Status Analyze();

  quartet::v1::Result Finish() {
    if (callbacks_.on_progress) callbacks_.on_progress({stop_epoch_, step_, total_steps_});
    result_.set_epochs_trained(stop_epoch_);
    result_.set_resumed_from_epoch(start_epoch_);
    result_.set_micro_batch_size(static_cast<int32_t>(micro_));
    result_.set_oom_fallbacks(oom_fallbacks_);
    result_.set_wall_seconds(Seconds(start_));
    return result_;
  }

 private:
  absl::Status ResolveSpec();
  absl::Status ResolveFidelity();
  absl::Status LoadData();
  CheckpointParts Parts();
  absl::StatusOr<quartet::v1::Artifact> WriteExport(const common::ArtifactStore& store,
                                                    const std::string& path);
  absl::Status BuildModel();
  // A random permutation of [0, n) on the run's device, from the run's generator on CPU.
  torch::Tensor RandPerm(int64_t n) {
    const c10::optional<at::Generator> gen =
        device_.is_cpu() ? c10::optional<at::Generator>(cpu_generator_) : c10::nullopt;
    return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong).device(device_));
  }
  void MakeOptimizer();
  void MakeBatchers();
  // One optimiser step on the samples `idx`, in micro-batches; halves them on out-of-memory.
  absl::Status Step(int epoch, const torch::Tensor& idx);
  void SendEpochMetrics(int epoch, const quartet::v1::EpochMetrics& em);
  void SendPoints(int epoch, const std::vector<std::pair<std::string, double>>& values);
  // Options::keep_test_predictions: the predictions of test images first.. that are kept.
  void KeepPredictions(int64_t first, const torch::Tensor& predicted);
  std::vector<torch::Tensor> TrainableParameters();
  void AnalyzeHessian(const std::string& subset, const analysis::Batches& data,
                      quartet::v1::Analyses* out);
  void AnalyzeEfficiency(quartet::v1::Analyses* out);

  const TorchTrainer::Options& options_;
  TrainerState& st_;
  const quartet::v1::CandidateSpec& spec_;
  const TrainCallbacks& callbacks_;
  const std::chrono::steady_clock::time_point start_;
  const torch::Device device_;

  common::Recipe recipe_;
  std::vector<std::string> families_;
  std::shared_ptr<data::Dataset> dataset_;
  int64_t n_train_ = 0, n_test_ = 0, input_size_ = 0;
  std::mt19937_64 rng_;
  at::Generator cpu_generator_;
  std::unique_ptr<moe::Network> net_;
  bool cuda_ = false, amp_ = false;
  torch::ScalarType amp_dtype_ = torch::kHalf;
  LossScaler scaler_;
  std::vector<torch::Tensor> all_params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lr_;
  double floor_factor_ = 0;
  std::unique_ptr<data::DeviceBatcher> train_batches_, test_batches_;
  int64_t batch_ = 0, steps_per_epoch_ = 0, total_steps_ = 0, warmup_ = 0, micro_ = 0;
  int oom_fallbacks_ = 0;
  int64_t step_ = 0;
  int start_epoch_ = 0, stop_epoch_ = 0;
  quartet::v1::Result result_;
  // The current epoch's training and evaluation tallies.
  std::chrono::steady_clock::time_point epoch_start_;
  double train_time_ = 0, loss_sum_ = 0, test_loss_ = 0;
  int64_t correct_ = 0, seen_ = 0, test_correct_ = 0;
  moe::RoutingStats routing_;
  // Per-layer routing on the test split (layer-wise MoE networks).
  train::LayerRoutingTally layer_routing_;
  // Per-step gradient norms by group, when recorded (DYNAMOE, or gradient_variance asked).
  std::unique_ptr<train::GradientNormTally> grad_norms_;
  // Test-split sums of gate probabilities by (class, expert), and samples per class.
  torch::Tensor class_prob_sum_, class_count_;
  // The train Hessian's top eigenvector, for the curvature sweep.
  analysis::TensorList top_eigenvector_;
  analysis::LogitsFn logits_fn_;
};

absl::Status TrainingRun::ResolveSpec() {
  auto recipe = common::ResolveRecipe(spec_.recipe());
  if (!recipe.ok()) return WithErrorClass(recipe.status(), quartet::v1::ERROR_CLASS_BUILD);
  recipe_ = *recipe;
  const int families = spec_.combination().families_size();
  if (recipe_.architecture == common::ArchitectureKind::kHeads && families != 1) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      absl::StrCat("combination.families: ARCHITECTURE_HEADS takes exactly 1 "
                                   "family (the backbone), got ",
                                   families));
  }
  if (recipe_.architecture == common::ArchitectureKind::kMoE4 && families < 2) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      "combination.families: a MoE4 candidate needs at least 2 families");
  }
  if (recipe_.architecture == common::ArchitectureKind::kDynaMoE && families != 0) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      absl::StrCat("combination.families: ARCHITECTURE_DYNAMOE takes no families "
                                   "(a campaign without_families), got ",
                                   families));
  }
  families_.assign(spec_.combination().families().begin(), spec_.combination().families().end());
  return ResolveFidelity();
}

absl::Status TrainingRun::ResolveFidelity() {
  const int stop = spec_.fidelity().stop_epoch();
  if (stop < 0 || stop > recipe_.epochs) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      absl::StrCat("fidelity.stop_epoch: ", stop,
                                   " is outside [1, recipe.epochs = ", recipe_.epochs, "]"));
  }
  stop_epoch_ = stop > 0 ? stop : recipe_.epochs;
  return absl::OkStatus();
}

absl::Status TrainingRun::LoadData() {
  const auto& d = spec_.data();
  const DatasetKey key{device_.str(), options_.data_root, static_cast<int>(d.dataset()),
                       d.data_dir(),  d.train_limit(),    d.test_limit()};
  DatasetCache& cache = SharedDatasets();
  absl::MutexLock lock(&cache.mu);  // a dataset is loaded once, however many slots ask for it
  auto it = cache.datasets.find(key);
  if (it != cache.datasets.end()) {
    dataset_ = it->second;
  } else {
    auto loaded = data::LoadDataset(d, options_.data_root);
    if (!loaded.ok()) return WithErrorClass(loaded.status(), quartet::v1::ERROR_CLASS_DATA);
    try {
      dataset_ = std::make_shared<data::Dataset>(data::ToDevice(*loaded, device_));
    } catch (const c10::Error& e) {
      return Classified(
          absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
          absl::StrCat("moving the dataset to ", device_.str(), ": ", e.what_without_backtrace()));
    }
    AwaitCopies(device_);
    if (cache.datasets.size() >= kMaxCachedDatasets) cache.datasets.clear();
    cache.datasets[key] = dataset_;
  }
  n_train_ = dataset_->train_images.size(0);
  n_test_ = dataset_->test_images.size(0);
  if (n_train_ < 2 || n_test_ < 1) {
    return Classified(absl::StatusCode::kFailedPrecondition, quartet::v1::ERROR_CLASS_DATA,
                      absl::StrCat("dataset ", dataset_->name, " has ", n_train_, " training and ",
                                   n_test_, " test samples; need at least 2 and 1"));
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::BuildModel() {
  input_size_ = recipe_.input_size;
  if (input_size_ == 0) {
    input_size_ = std::max(dataset_->height(), dataset_->width());
    for (const auto& f : families_) {
      auto m = common::FamilyCatalog::Get().Resolve(f);
      if (!m.ok()) return WithErrorClass(m.status(), quartet::v1::ERROR_CLASS_BUILD);
      input_size_ = std::max<int64_t>(input_size_, m->variant->min_input_size);
    }
  }
  const uint64_t seed = recipe_.has_seed ? recipe_.seed : 0;
  cpu_generator_.set_current_seed(seed ^ kRunGeneratorSalt);
  rng_.seed(seed ^ 0x5DEECE66DULL);

  moe::NetworkOptions no;
  no.families = families_;
  no.in_channels = dataset_->channels();
  no.num_classes = dataset_->num_classes;
  no.input_size = input_size_;
  no.seed = seed;
  no.parallel_experts = options_.parallel_experts && !device_.is_cuda();
  absl::StatusOr<std::unique_ptr<moe::Network>> built;
  {
    absl::MutexLock lock(&ModelBuildMutex());
    torch::manual_seed(seed);
    built = moe::BuildNetwork(recipe_, no);
  }
  if (!built.ok()) return WithErrorClass(built.status(), quartet::v1::ERROR_CLASS_BUILD);
  net_ = std::move(*built);
  logits_fn_ = [this](const torch::Tensor& x) { return net_->Forward(x).logits; };

  cuda_ = device_.is_cuda();
  amp_ = cuda_ && recipe_.amp;
  amp_dtype_ = st_.bf16_supported ? torch::kBFloat16 : torch::kHalf;
  scaler_ = LossScaler(amp_ && amp_dtype_ == torch::kHalf);
  try {
    net_->module().to(device_);
    if (cuda_) {
      torch::NoGradGuard no_grad;
      for (auto& p : net_->module().parameters()) {
        if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
      }
    }
  } catch (const c10::Error& e) {
    return Classified(
        absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
        absl::StrCat("moving the model to ", device_.str(), ": ", e.what_without_backtrace()));
  }
#ifdef QUARTET_WITH_CUDA
  if (cuda_) c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
#endif
  result_.set_parameter_count(models::CountParameters(net_->module()));
  result_.set_architecture(net_->Describe());
  result_.set_input_size(static_cast<int32_t>(input_size_));
  result_.set_device(st_.gpu_name.empty() ? device_.str()
                                          : absl::StrCat(device_.str(), " (", st_.gpu_name, ")"));
  return absl::OkStatus();
}

// Every group at lr / wd, routers (gates) at multiplied lr / wd.
void TrainingRun::MakeOptimizer() {
  const double gate_lr = recipe_.learning_rate * recipe_.gate_lr_multiplier;
  const double gate_wd = recipe_.weight_decay * recipe_.gate_weight_decay_multiplier;
  all_params_.clear();
  base_lr_.clear();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const moe::ParameterGroup& g : net_->ParameterGroups()) {
    if (g.parameters.empty()) continue;
    all_params_.insert(all_params_.end(), g.parameters.begin(), g.parameters.end());
    const double lr = g.gate ? gate_lr : recipe_.learning_rate;
    const double wd = g.gate ? gate_wd : recipe_.weight_decay;
    base_lr_.push_back(lr);
    if (recipe_.optimizer == common::OptimizerKind::kAdamW) {
      groups.emplace_back(g.parameters, std::make_unique<torch::optim::AdamWOptions>(
                                            torch::optim::AdamWOptions(lr).weight_decay(wd)));
    } else {
      groups.emplace_back(
          g.parameters,
          std::make_unique<torch::optim::SGDOptions>(
              torch::optim::SGDOptions(lr).momentum(recipe_.momentum).weight_decay(wd)));
    }
  }
  if (recipe_.optimizer == common::OptimizerKind::kAdamW) {
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups));
  } else {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        std::move(groups), torch::optim::SGDOptions(recipe_.learning_rate));
  }
  floor_factor_ = recipe_.eta_min / recipe_.learning_rate;
  if (recipe_.architecture == common::ArchitectureKind::kDynaMoE ||
      recipe_.analyses.gradient_variance) {
    grad_norms_ = std::make_unique<train::GradientNormTally>(net_->ParameterGroups());
  }
}

void TrainingRun::MakeBatchers() {
  data::BatchOptions train_opts;
  train_opts.output_size = input_size_;
  train_opts.augment = recipe_.augment;
  data::SetAugmentationFor(dataset_->name, &train_opts);
  train_opts.channels_last = cuda_;
  train_opts.cpu_generator = cpu_generator_;
  data::BatchOptions test_opts = train_opts;
  test_opts.augment = false;
  train_batches_ = std::make_unique<data::DeviceBatcher>(*dataset_, train_opts);
  test_batches_ = std::make_unique<data::DeviceBatcher>(*dataset_, test_opts);

  batch_ = std::min<int64_t>(recipe_.batch_size, n_train_);
  steps_per_epoch_ = (n_train_ + batch_ - 1) / batch_;
  total_steps_ = steps_per_epoch_ * recipe_.epochs;
  warmup_ = recipe_.warmup_steps >= 0 ? recipe_.warmup_steps
                                      : static_cast<int64_t>(std::llround(0.05 * total_steps_));
  micro_ = batch_;
  spdlog::info("training {} ({}, {} parameters) at {} px on {}: {} epoch(s) x {} steps",
               families_.empty() ? std::string("without families") : absl::StrJoin(families_, "+"),
               net_->Describe(), result_.parameter_count(), input_size_, device_.str(),
               recipe_.epochs, steps_per_epoch_);
}

absl::Status TrainingRun::TrainEpoch(int epoch) {
  epoch_start_ = std::chrono::steady_clock::now();
  train_time_ = loss_sum_ = 0;
  correct_ = seen_ = 0;
  net_->module().train();
  torch::Tensor perm = RandPerm(n_train_);
  for (int64_t s = 0; s < steps_per_epoch_; ++s) {
    if (callbacks_.should_stop && callbacks_.should_stop()) {
      return Classified(absl::StatusCode::kCancelled, quartet::v1::ERROR_CLASS_PREEMPTED,
                        absl::StrCat("stopped at step ", step_, " of ", total_steps_));
    }
    if (recipe_.time_budget_seconds > 0 && Seconds(start_) > recipe_.time_budget_seconds) {
      return Classified(absl::StatusCode::kDeadlineExceeded, quartet::v1::ERROR_CLASS_TIMEOUT,
                        absl::StrFormat("time budget of %.0f s exceeded at step %d of %d",
                                        recipe_.time_budget_seconds, step_, total_steps_));
    }
    torch::Tensor idx = perm.slice(0, s * batch_, std::min((s + 1) * batch_, n_train_));
    if (idx.size(0) < 2) continue;  // BatchNorm cannot train on one sample
    QUARTET_RETURN_IF_ERROR(Step(epoch, idx));
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::Step(int epoch, const torch::Tensor& idx) {
  const int64_t b = idx.size(0);
  const auto step_start = std::chrono::steady_clock::now();
  SetLearningRates(
      *optimizer_, base_lr_,
      LearningRateFactor(step_, total_steps_, warmup_, recipe_.warmup_start_factor, floor_factor_));
  const double lam = SampleMixupLambda(recipe_.mixup_alpha, rng_);
  MixedBatch mixed;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor partner;
    if (lam < 1.0) {
      partner = RandPerm(b);
    }
    mixed = Mixup(train_batches_->Train(idx), train_batches_->TrainLabels(idx), lam, partner);
  }
  // Forward/backward in micro-batches; halve them on out-of-memory and redo the step.
  double step_loss = 0;
  int64_t step_correct = 0;
  while (true) {
    try {
      optimizer_->zero_grad();
      step_loss = 0;
      step_correct = 0;
      for (int64_t c0 = 0; c0 < b; c0 += micro_) {
        const int64_t c = std::min(micro_, b - c0);
        MaybeInjectOom(options_.inject_oom_micro_batch_limit, c);
        MixedBatch chunk{mixed.x.narrow(0, c0, c), mixed.y_a.narrow(0, c0, c),
                         mixed.y_b.narrow(0, c0, c), lam};
        moe::MoEOutput out;
        {
          AutocastScope autocast(amp_, amp_dtype_);
          out = net_->Forward(chunk.x);
        }
        torch::Tensor loss = MixupLoss(out.logits, chunk, recipe_.label_smoothing);
        if (step_ == options_.inject_nan_loss_at_step) loss = loss * std::nan("");
        loss = loss + out.balance_loss;
        const double value = loss.item<double>();
        if (!std::isfinite(value)) {
          return Classified(
              absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
              absl::StrCat("non-finite loss (", value, ") at step ", step_, " of epoch ", epoch));
        }
        net_->Backward(loss * (static_cast<double>(c) / b) * scaler_.scale());
        step_loss += value * c;
        // Under mixup a sample's label is the one with the larger weight.
        const torch::Tensor& major = lam >= 0.5 ? chunk.y_a : chunk.y_b;
        step_correct += out.logits.argmax(1).eq(major).sum().item<int64_t>();
      }
      break;
    } catch (const c10::OutOfMemoryError& e) {
      optimizer_->zero_grad();
#ifdef QUARTET_WITH_CUDA
      if (cuda_) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
      if (micro_ <= 1) {
        return Classified(
            absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
            absl::StrCat("out of memory at a micro-batch of 1: ", e.what_without_backtrace()));
      }
      micro_ = std::max<int64_t>(1, micro_ / 2);
      ++oom_fallbacks_;
      spdlog::warn("out of memory at step {}: micro-batch halved to {} (effective batch {})", step_,
                   micro_, batch_);
    }
  }
  if (scaler_.Unscale(all_params_)) {
    if (grad_norms_) grad_norms_->Record();
    if (recipe_.grad_clip_norm > 0) {
      torch::nn::utils::clip_grad_norm_(all_params_, recipe_.grad_clip_norm);
    }
    optimizer_->step();
  }
  net_->AfterStep();
  ++step_;
  loss_sum_ += step_loss;
  correct_ += step_correct;
  seen_ += b;
  train_time_ += Seconds(step_start);
  if (options_.progress_every_steps > 0 && step_ % options_.progress_every_steps == 0) {
    if (callbacks_.on_progress) callbacks_.on_progress({epoch, step_, total_steps_});
    if (callbacks_.on_metrics) {
      quartet::v1::MetricPoint p;
      p.set_step(step_);
      p.set_epoch(epoch);
      p.set_name("step/train_loss");
      p.set_value(step_loss / b);
      p.set_time_unix_ms(NowMillis());
      callbacks_.on_metrics({p});
    }
  }
  return absl::OkStatus();
}

// The whole test split, clean inputs.
absl::Status TrainingRun::Evaluate(int epoch) {
  net_->module().eval();
  routing_ = moe::RoutingStats();
  layer_routing_.Reset();
  class_prob_sum_ = torch::Tensor();
  class_count_ = torch::zeros({dataset_->num_classes}, torch::kDouble);
  test_loss_ = 0;
  test_correct_ = 0;
  st_.test_predictions.clear();
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < n_test_; i += options_.eval_batch_size) {
    const int64_t c = std::min<int64_t>(options_.eval_batch_size, n_test_ - i);
    torch::Tensor idx =
        torch::arange(i, i + c, torch::TensorOptions().dtype(torch::kLong).device(device_));
    torch::Tensor x = test_batches_->Test(idx);
    torch::Tensor y = test_batches_->TestLabels(idx);
    moe::MoEOutput out;
    {
      AutocastScope autocast(amp_, amp_dtype_);
      out = net_->Forward(x);
    }
    {
      const torch::Tensor p = out.probs.detach().to(torch::kCPU, torch::kDouble);
      const torch::Tensor labels = y.to(torch::kCPU);
      if (!class_prob_sum_.defined()) {
        class_prob_sum_ = torch::zeros({dataset_->num_classes, p.size(1)}, torch::kDouble);
      }
      class_prob_sum_.index_add_(0, labels, p);
      class_count_.index_add_(0, labels, torch::ones({labels.size(0)}, torch::kDouble));
    }
    test_loss_ += F::cross_entropy(out.logits.to(torch::kFloat32), y,
                                   F::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
    const torch::Tensor predicted = out.logits.argmax(1);
    test_correct_ += predicted.eq(y).sum().item<int64_t>();
    KeepPredictions(i, predicted);
    routing_.Add(out);
    layer_routing_.Add(out.layers);
  }
  if (!std::isfinite(test_loss_)) {
    return Classified(absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
                      absl::StrCat("non-finite test loss after epoch ", epoch));
  }
  return absl::OkStatus();
}

void TrainingRun::Report(int epoch) {
  const bool dense = net_->DenseLoad();
  const double test_accuracy = static_cast<double>(test_correct_) / n_test_;
  quartet::v1::EpochMetrics* em = result_.add_epochs();
  em->set_epoch(epoch);
  em->set_train_loss(seen_ ? loss_sum_ / seen_ : 0);
  em->set_train_accuracy(seen_ ? static_cast<double>(correct_) / seen_ : 0);
  em->set_test_loss(test_loss_ / n_test_);
  em->set_test_accuracy(test_accuracy);
  em->set_learning_rate(optimizer_->param_groups()[0].options().get_lr());
  em->set_gate_temperature(net_->GateTemperature());
  for (double l : routing_.Load(dense)) em->add_expert_load(l);
  em->set_load_cv(routing_.LoadCv(dense));
  em->set_routing_entropy(routing_.NormalizedEntropy());
  em->set_mean_active_experts(routing_.MeanActive());
  em->set_samples_per_second(train_time_ > 0 ? seen_ / train_time_ : 0);
  em->set_peak_memory_bytes(PeakMemoryBytes(device_));
  em->set_wall_seconds(Seconds(epoch_start_));
  layer_routing_.Fill(dense, em->mutable_layers());
  if (grad_norms_) grad_norms_->FillAndReset(em->mutable_gradient_norms());
  if (!layer_routing_.empty()) {
    result_.set_active_parameters_per_token(
        net_->ActiveParametersPerToken(layer_routing_.MeanActive()));
    result_.clear_layer_experts();
    for (int e : net_->LayerExperts()) result_.add_layer_experts(e);
  }
  spdlog::info(
      "epoch {}/{}: train loss {:.4f} acc {:.4f}, test loss {:.4f} acc {:.4f}, {:.1f} samples/s, "
      "load cv {:.3f}, T {:.3f}",
      epoch, recipe_.epochs, em->train_loss(), em->train_accuracy(), em->test_loss(),
      em->test_accuracy(), em->samples_per_second(), em->load_cv(), em->gate_temperature());
  SendEpochMetrics(epoch, *em);
  result_.set_test_accuracy(test_accuracy);
  result_.set_test_loss(test_loss_ / n_test_);
  if (class_prob_sum_.defined()) {
    quartet::v1::ClassExpertMatrix* m = result_.mutable_class_expert();
    m->Clear();
    m->set_classes(static_cast<int32_t>(class_prob_sum_.size(0)));
    m->set_experts(static_cast<int32_t>(class_prob_sum_.size(1)));
    const torch::Tensor mean = class_prob_sum_ / class_count_.clamp_min(1).unsqueeze(1);
    for (int64_t c = 0; c < mean.size(0); ++c) {
      for (int64_t e = 0; e < mean.size(1); ++e) m->add_probability(mean[c][e].item<double>());
    }
  }
}

void TrainingRun::SendPoints(int epoch, const std::vector<std::pair<std::string, double>>& values) {
  if (!callbacks_.on_metrics || values.empty()) return;
  std::vector<quartet::v1::MetricPoint> points;
  const int64_t now = NowMillis();
  for (const auto& [name, value] : values) {
    quartet::v1::MetricPoint p;
    p.set_step(step_);
    p.set_epoch(epoch);
    p.set_name(name);
    p.set_value(value);
    p.set_time_unix_ms(now);
    points.push_back(std::move(p));
  }
  callbacks_.on_metrics(points);
}

void TrainingRun::KeepPredictions(int64_t first, const torch::Tensor& predicted) {
  const int64_t keep = std::min<int64_t>(options_.keep_test_predictions - first, predicted.size(0));
  if (keep <= 0) return;
  const torch::Tensor p = predicted.narrow(0, 0, keep).to(torch::kCPU, torch::kLong).contiguous();
  st_.test_predictions.insert(st_.test_predictions.end(), p.data_ptr<int64_t>(),
                              p.data_ptr<int64_t>() + keep);
}

std::vector<torch::Tensor> TrainingRun::TrainableParameters() {
  std::vector<torch::Tensor> out;
  for (const auto& p : net_->module().parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

absl::Status TrainingRun::GradientVariance(int epoch) {
  const common::AnalysisOptions& a = recipe_.analyses;
  if (!a.gradient_variance) return absl::OkStatus();
  // Train mode as in training (gate noise, dropout, BatchNorm batch statistics), clean augmented
  // batches without mixup; BatchNorm running statistics are put back afterwards.
  net_->module().train();
  std::vector<torch::Tensor> buffers = net_->module().buffers();
  std::vector<torch::Tensor> saved;
  {
    torch::NoGradGuard no_grad;
    for (const auto& b : buffers) saved.push_back(b.clone());
  }
  std::vector<analysis::NamedParameters> groups;
  for (const moe::ParameterGroup& g : net_->ParameterGroups()) {
    if (!g.parameters.empty()) groups.push_back({g.name, g.parameters});
  }
  const int64_t b = std::min<int64_t>(batch_, n_train_);
  auto variances =
      analysis::MinibatchGradientVariance(groups, a.gradient_variance_batches, [&](int) {
        torch::Tensor idx = RandPerm(n_train_).narrow(0, 0, b);
        moe::MoEOutput out = net_->Forward(train_batches_->Train(idx));
        torch::Tensor loss =
            F::cross_entropy(out.logits.to(torch::kFloat32), train_batches_->TrainLabels(idx),
                             F::CrossEntropyFuncOptions().label_smoothing(recipe_.label_smoothing));
        net_->Backward(loss + out.balance_loss);
      });
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
  }
  std::vector<std::pair<std::string, double>> points;
  for (const auto& v : variances) {
    quartet::v1::GradientVarianceSample* s = result_.mutable_analyses()->add_gradient_variance();
    s->set_epoch(epoch);
    s->set_group(v.name);
    s->set_variance(v.variance);
    s->set_mean_gradient_norm_squared(v.mean_gradient_norm_squared);
    s->set_relative_variance(v.relative_variance);
    s->set_batches(a.gradient_variance_batches);
    s->set_batch_size(static_cast<int32_t>(b));
    s->set_parameter_count(v.parameter_count);
    points.emplace_back(absl::StrCat("grad_variance/", v.name, "/variance"), v.variance);
    points.emplace_back(absl::StrCat("grad_variance/", v.name, "/relative"), v.relative_variance);
  }
  SendPoints(epoch, points);
  return absl::OkStatus();
}

void TrainingRun::AnalyzeHessian(const std::string& subset, const analysis::Batches& data,
                                 quartet::v1::Analyses* out) {
  const common::AnalysisOptions& a = recipe_.analyses;
  const auto start = std::chrono::steady_clock::now();
  const analysis::TensorList params = TrainableParameters();
  int hvps = 0;
  int64_t input_elements = 0;
  for (const torch::Tensor& x : data.x) input_elements += x.numel();
  // Small subsets keep their gradient graphs: a product is then one backward pass per batch.
  std::optional<analysis::CachedHvp> cached;
  if (input_elements <= analysis::kMaxCachedHvpInputElements) {
    cached.emplace(logits_fn_, data, params);
  }
  analysis::HvpFn hvp = [&](const analysis::TensorList& v) {
    ++hvps;
    return cached ? (*cached)(v) : analysis::HessianVectorProduct(logits_fn_, data, params, v);
  };
  const uint64_t seed = a.seed != 0 ? a.seed : (recipe_.has_seed ? recipe_.seed : 0);
  analysis::PowerIterationOptions po;
  po.top_k = a.hessian_top_k;
  po.max_iterations = a.hessian_max_iterations;
  po.tolerance = a.hessian_tolerance;
  po.seed = seed;
  const analysis::Eigenpairs eig = analysis::TopEigenvalues(hvp, params, po);
  if (subset == "train" && !eig.eigenvectors.empty()) top_eigenvector_ = eig.eigenvectors[0];
  quartet::v1::HessianAnalysis* h = out->add_hessian();
  h->set_subset(subset);
  h->set_samples(static_cast<int32_t>(data.samples));
  int64_t count = 0;
  for (const auto& p : params) count += p.numel();
  h->set_parameter_count(count);
  for (double e : eig.eigenvalues) h->add_eigenvalues(e);
  for (int i : eig.iterations) h->add_eigenvalue_iterations(i);
  if (a.hessian) {
    const analysis::TraceEstimate tr =
        analysis::HutchinsonTrace(hvp, params, a.hutchinson_samples, seed + 1);
    h->set_trace(tr.trace);
    h->set_trace_standard_error(tr.standard_error);
    h->set_trace_samples(a.hutchinson_samples);
  }
  h->set_max_iterations(a.hessian_max_iterations);
  h->set_tolerance(a.hessian_tolerance);
  h->set_seed(seed);
  h->set_hvp_count(hvps);
  h->set_seconds(Seconds(start));
  spdlog::info(
      "hessian ({}, {} samples): top eigenvalue {:.4g}, trace {:.4g} +- {:.2g}, {} HVPs "
      "in {:.1f} s",
      subset, data.samples, eig.eigenvalues.empty() ? 0.0 : eig.eigenvalues[0], h->trace(),
      h->trace_standard_error(), hvps, h->seconds());
}

void TrainingRun::AnalyzeEfficiency(quartet::v1::Analyses* out) {
  const common::AnalysisOptions& a = recipe_.analyses;
  quartet::v1::EfficiencyAnalysis* e = out->mutable_efficiency();
  int64_t count = 0;
  for (const auto& p : TrainableParameters()) count += p.numel();
  e->set_parameter_count(count);
  e->set_fp32_megabytes(count * 4.0 / 1e6);
  // A batch of test images, repeated up to the batch size.
  const int64_t n = std::min<int64_t>(a.latency_batch_size, n_test_);
  torch::Tensor idx =
      torch::arange(a.latency_batch_size, torch::TensorOptions().dtype(torch::kLong)) % n;
  torch::Tensor batch = test_batches_->Test(idx.to(device_));
#ifdef QUARTET_WITH_CUDA
  if (cuda_) c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
#endif
  analysis::LatencyOptions lo;
  lo.warmup_batches = a.latency_warmup_batches;
  lo.timed_batches = a.latency_batches;
  if (cuda_) lo.synchronize = [] { torch::cuda::synchronize(); };
  const analysis::Latency l = analysis::MeasureLatency(logits_fn_, batch, lo);
  e->set_peak_memory_bytes(PeakMemoryBytes(device_));
  e->set_latency_ms_mean(l.mean_ms);
  e->set_latency_ms_std(l.std_ms);
  e->set_latency_ms_median(l.median_ms);
  e->set_throughput_images_per_second(l.images_per_second);
  e->set_batch_size(a.latency_batch_size);
  e->set_timed_batches(a.latency_batches);
  e->set_warmup_batches(a.latency_warmup_batches);
}

absl::Status TrainingRun::Analyze() {
  const common::AnalysisOptions& a = recipe_.analyses;
  if (!a.AnyPostTraining()) return absl::OkStatus();
  const auto start = std::chrono::steady_clock::now();
  net_->module().eval();
  quartet::v1::Analyses* out = result_.mutable_analyses();
  // Fixed subsets: the first samples of each split, no augmentation.
  const int64_t n_tr = std::min<int64_t>(a.train_samples, n_train_);
  const int64_t n_te = std::min<int64_t>(a.test_samples, n_test_);
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(device_);
  analysis::Batches train, test;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor tr = torch::arange(n_tr, longs), te = torch::arange(n_te, longs);
    train = analysis::MakeBatches(test_batches_->Train(tr), test_batches_->TrainLabels(tr),
                                  a.batch_size);
    test =
        analysis::MakeBatches(test_batches_->Test(te), test_batches_->TestLabels(te), a.batch_size);
  }
  out->set_train_samples(static_cast<int32_t>(n_tr));
  out->set_test_samples(static_cast<int32_t>(n_te));
  if (a.hessian || a.curvature_sweep) AnalyzeHessian("train", train, out);
  if (a.hessian) AnalyzeHessian("test", test, out);
  const analysis::TensorList params = TrainableParameters();
  const uint64_t seed = a.seed != 0 ? a.seed : (recipe_.has_seed ? recipe_.seed : 0);
  std::vector<std::pair<std::string, double>> points;
  if (a.curvature_sweep && !top_eigenvector_.empty()) {
    const analysis::Curve c = analysis::SweepDirection(
        logits_fn_, train, params, analysis::Normalized(top_eigenvector_),
        analysis::Linspace(-a.curvature_radius, a.curvature_radius, a.curvature_points));
    quartet::v1::LossCurve* lc = out->mutable_curvature_sweep();
    for (size_t i = 0; i < c.alphas.size(); ++i) {
      lc->add_alphas(c.alphas[i]);
      lc->add_losses(c.losses[i]);
      lc->add_accuracies(c.accuracies[i]);
      points.emplace_back(absl::StrCat("analysis/curvature/loss/", i), c.losses[i]);
    }
  }
  if (a.loss_surface) {
    const std::vector<double> alphas = analysis::Linspace(-1, 1, a.surface_points);
    for (int d = 0; d < a.surface_directions; ++d) {
      const analysis::Curve c = analysis::SweepDirection(
          logits_fn_, train, params, analysis::FilterNormalizedDirection(params, seed + 100 + d),
          alphas);
      quartet::v1::LossCurve* lc = out->add_surface_1d();
      for (size_t i = 0; i < c.alphas.size(); ++i) {
        lc->add_alphas(c.alphas[i]);
        lc->add_losses(c.losses[i]);
        lc->add_accuracies(c.accuracies[i]);
      }
    }
    const std::vector<double> grid = analysis::Linspace(-1, 1, a.surface_points_2d);
    const std::vector<double> losses = analysis::SweepPlane(
        logits_fn_, train, params, analysis::FilterNormalizedDirection(params, seed + 200),
        analysis::FilterNormalizedDirection(params, seed + 201), grid);
    quartet::v1::LossGrid* g = out->mutable_surface_2d();
    for (double x : grid) g->add_alphas(x);
    for (double x : losses) g->add_losses(x);
  }
  if (a.efficiency) AnalyzeEfficiency(out);
  out->set_seconds(Seconds(start));
  for (const auto& h : out->hessian()) {
    for (int i = 0; i < h.eigenvalues_size(); ++i) {
      points.emplace_back(absl::StrCat("analysis/hessian/", h.subset(), "/eigenvalue/", i),
                          h.eigenvalues(i));
    }
    if (h.trace_samples() > 0) {
      points.emplace_back(absl::StrCat("analysis/hessian/", h.subset(), "/trace"), h.trace());
    }
  }
  if (out->has_efficiency()) {
    const auto& e = out->efficiency();
    points.emplace_back("analysis/efficiency/latency_ms", e.latency_ms_mean());
    points.emplace_back("analysis/efficiency/images_per_second", e.throughput_images_per_second());
    points.emplace_back("analysis/efficiency/fp32_megabytes", e.fp32_megabytes());
    points.emplace_back("analysis/efficiency/peak_memory_bytes",
                        static_cast<double>(e.peak_memory_bytes()));
  }
  points.emplace_back("analysis/seconds", out->seconds());
  SendPoints(recipe_.epochs, points);
  spdlog::info("analyses done in {:.1f} s", out->seconds());
  return absl::OkStatus();
}

void TrainingRun::SendEpochMetrics(int epoch, const quartet::v1::EpochMetrics& em) {
  if (!callbacks_.on_metrics) return;
  std::vector<quartet::v1::MetricPoint> points;
  auto add = [&](const std::string& name, double value) {
    quartet::v1::MetricPoint p;
    p.set_step(step_);
    p.set_epoch(epoch);
    p.set_name(name);
    p.set_value(value);
    p.set_time_unix_ms(NowMillis());
    points.push_back(std::move(p));
  };
  add("train_loss", em.train_loss());
  add("train_accuracy", em.train_accuracy());
  add("test_loss", em.test_loss());
  add("test_accuracy", em.test_accuracy());
  add("learning_rate", em.learning_rate());
  add("gate_temperature", em.gate_temperature());
  for (int i = 0; i < em.expert_load_size(); ++i) {
    add(absl::StrCat("expert_load/", i), em.expert_load(i));
  }
  add("load_cv", em.load_cv());
  add("routing_entropy", em.routing_entropy());
  add("mean_active_experts", em.mean_active_experts());
  add("samples_per_second", em.samples_per_second());
  add("peak_memory_bytes", static_cast<double>(em.peak_memory_bytes()));
  add("epoch_seconds", em.wall_seconds());
  for (const quartet::v1::LayerRouting& l : em.layers()) {
    const std::string prefix = absl::StrCat("layer/", l.layer(), "/");
    add(prefix + "load_cv", l.load_cv());
    add(prefix + "mean_active_experts", l.mean_active_experts());
    add(prefix + "routing_entropy", l.routing_entropy());
  }
  for (const quartet::v1::GradientNormStats& g : em.gradient_norms()) {
    add(absl::StrCat("grad_norm/", g.group(), "/mean"), g.mean());
    add(absl::StrCat("grad_norm/", g.group(), "/cv"), g.cv());
  }
  callbacks_.on_metrics(points);
}

CheckpointParts TrainingRun::Parts() {
  CheckpointParts parts;
  parts.module = &net_->module();
  parts.optimizer = optimizer_.get();
  parts.device = device_;
  parts.generators.push_back(cpu_generator_);
#ifdef QUARTET_WITH_CUDA
  if (cuda_) parts.generators.push_back(at::cuda::detail::getDefaultCUDAGenerator(device_.index()));
#endif
  for (const at::Generator& g : net_->Generators()) parts.generators.push_back(g);
  return parts;
}

absl::Status TrainingRun::Resume(const quartet::v1::Artifact& artifact) {
  QUARTET_ASSIGN_OR_RETURN(const std::string bytes, common::ReadArtifact(artifact));
  QUARTET_ASSIGN_OR_RETURN(const CheckpointPosition position,
                           LoadCheckpoint(bytes, spec_, Parts()));
  if (position.epoch < 1 || position.epoch > stop_epoch_) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint is at epoch ", position.epoch,
                                                      ", this run stops at epoch ", stop_epoch_));
  }
  std::istringstream host_rng(position.host_rng);
  host_rng >> rng_;
  if (host_rng.fail()) return absl::DataLossError("checkpoint: the host generator state is bad");
  start_epoch_ = position.epoch;
  step_ = position.step;
  scaler_.Restore(position.loss_scale, position.loss_scale_good_steps);
  spdlog::info("candidate {}: resumed from {} at epoch {} (step {} of {})", spec_.candidate_id(),
               artifact.uri(), start_epoch_, step_, total_steps_);
  return absl::OkStatus();
}

absl::StatusOr<std::string> TrainingRun::CheckpointBytes() {
  CheckpointPosition position;
  position.epoch = stop_epoch_;
  position.step = step_;
  position.loss_scale = scaler_.raw_scale();
  position.loss_scale_good_steps = scaler_.good_steps();
  std::ostringstream host_rng;
  host_rng << rng_;
  position.host_rng = host_rng.str();
  return SaveCheckpoint(spec_, position, Parts());
}

absl::StatusOr<quartet::v1::Artifact> TrainingRun::WriteExport(const common::ArtifactStore& store,
                                                               const std::string& path) {
  ExportInfo info;
  info.input_size = input_size_;
  info.channels = dataset_->channels();
  info.mean = dataset_->mean;
  info.std = dataset_->std;
  info.native_height = dataset_->height();
  info.native_width = dataset_->width();
  info.num_classes = dataset_->num_classes;
  info.dataset = dataset_->name;
  info.architecture = net_->Describe();
  info.families = families_;
  info.candidate_id = spec_.candidate_id();
  info.campaign_id = spec_.campaign_id();
  info.epoch = stop_epoch_;
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(device_);
  const int64_t n_example = std::min(kExportExampleImages, n_test_);
  const int64_t n_check = std::min(kExportCheckImages, n_test_);
  torch::Tensor example, check;
  {
    torch::NoGradGuard no_grad;
    example = test_batches_->Test(torch::arange(n_example, longs)).contiguous();
    // Other images than the example's (from the end of the split), so routing baked into the trace
    // shows as a mismatch.
    check = test_batches_->Test(torch::arange(n_test_ - n_check, n_test_, longs)).contiguous();
  }
  QUARTET_ASSIGN_OR_RETURN(const std::string bytes, ExportTorchScript(*net_, example, check, info));
  return store.Write(path, bytes);
}

void TrainingRun::WriteArtifacts(const common::ArtifactStore& store,
                                 const std::string& checkpoint) {
  const std::string stem =
      absl::StrCat("campaign-", spec_.campaign_id(), "/candidate-", spec_.candidate_id(), "/epoch-",
                   stop_epoch_, "-attempt-", spec_.attempt());
  auto written = store.Write(stem + ".ckpt", checkpoint);
  if (!written.ok()) {
    spdlog::error("candidate {}: checkpoint not written: {}", spec_.candidate_id(),
                  written.status().ToString());
    result_.set_checkpoint_error(std::string(written.status().message()));
    return;
  }
  written->set_epoch(stop_epoch_);
  written->set_attempt(spec_.attempt());
  absl::StatusOr<quartet::v1::Artifact> exported;
  const absl::Status guarded = Guarded("exporting", quartet::v1::ERROR_CLASS_INTERNAL, [&] {
    exported = WriteExport(store, stem + ".pt");
    return absl::OkStatus();
  });
  if (!guarded.ok()) exported = guarded;
  if (!exported.ok()) {
    // The checkpoint stands; the error says why there is no export.
    spdlog::error("candidate {}: model not exported: {}", spec_.candidate_id(),
                  exported.status().ToString());
    result_.set_checkpoint_error(absl::StrCat("export: ", exported.status().message()));
  } else {
    exported->set_epoch(stop_epoch_);
    exported->set_attempt(spec_.attempt());
    *result_.mutable_exported_model() = *exported;
  }
  *result_.mutable_checkpoint() = *written;
  spdlog::info("candidate {}: checkpoint {} ({} bytes)", spec_.candidate_id(), written->uri(),
               written->size_bytes());
}

}  // namespace

struct TorchTrainer::State : TrainerState {};

TorchTrainer::TorchTrainer(const Options& options)
    : options_(options), state_(std::make_unique<State>()) {}

TorchTrainer::~TorchTrainer() = default;

absl::StatusOr<std::unique_ptr<TorchTrainer>> TorchTrainer::Create(const Options& options) {
  std::unique_ptr<TorchTrainer> t(new TorchTrainer(options));
  try {
    t->state_->device = torch::Device(options.device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: '", options.device,
                     "' is not a device (cpu, cuda, cuda:N): ", e.what_without_backtrace()));
  }
  if (!options.artifacts_uri.empty()) {
    common::ArtifactStore::Options store_options;
    store_options.inject_write_errno = options.inject_artifact_write_errno;
    QUARTET_ASSIGN_OR_RETURN(t->state_->artifacts,
                             common::ArtifactStore::Open(options.artifacts_uri, store_options));
  }
  if (t->state_->device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      return absl::UnavailableError(absl::StrCat(
          "device ", options.device,
          ": this LibTorch has no usable CUDA (Debian's libtorch is CPU-only; build the worker "
          "against a CUDA LibTorch with -DCMAKE_PREFIX_PATH)"));
    }
    if (!t->state_->device.has_index()) t->state_->device = torch::Device(torch::kCUDA, 0);
#ifdef QUARTET_WITH_CUDA
    const auto* props = at::cuda::getDeviceProperties(t->state_->device.index());
    t->state_->gpu_name = props->name;
    t->state_->gpu_memory = static_cast<int64_t>(props->totalGlobalMem);
    t->state_->bf16_supported = props->major >= 8;
    at::globalContext().setBenchmarkCuDNN(true);
#endif
  }
#ifdef __GLIBC__
  if (!t->state_->device.is_cuda() && options.cache_host_memory) {
    // LibTorch's CPU allocator is malloc. glibc serves every block above 32 MB (and, until its
    // threshold adapts, smaller ones) with a fresh mmap and unmaps it on free, so at 256 px each
    // step faults in and zeroes gigabytes of activations again. Serving them from the heap and
    // never trimming it keeps those pages: measured 1.4 -> 1.8 samples/s at 256 px.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
  }
#endif
  // LibTorch's own default can be a single thread on small VMs; 0 means every online CPU.
  const int threads =
      options.threads > 0 ? options.threads : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  t->state_->threads = std::max(1, threads);
  torch::set_num_threads(t->state_->threads);
  return t;
}

std::vector<std::string> TorchTrainer::Families() const { return models::RegisteredModels(); }

std::string TorchTrainer::Device() const { return state_->device.str(); }
std::string TorchTrainer::GpuName() const { return state_->gpu_name; }
int64_t TorchTrainer::GpuMemoryBytes() const { return state_->gpu_memory; }
std::vector<int64_t> TorchTrainer::LastTestPredictions() const { return state_->test_predictions; }

namespace {

// A prepared run: from the checkpoint the spec names when it can be used, else from scratch with
// the reason in Result.resume_error.
absl::StatusOr<std::unique_ptr<TrainingRun>> PrepareRun(const TorchTrainer::Options& options,
                                                        TrainerState& state,
                                                        const quartet::v1::CandidateSpec& spec,
                                                        const TrainCallbacks& callbacks) {
  auto run = std::make_unique<TrainingRun>(options, state, spec, callbacks);
  QUARTET_RETURN_IF_ERROR(Guarded("preparing the candidate", quartet::v1::ERROR_CLASS_BUILD,
                                  [&] { return run->Prepare(); }));
  const quartet::v1::Artifact& from = spec.fidelity().resume_from();
  if (from.uri().empty()) return std::move(run);
  const absl::Status resumed =
      Guarded("resuming", quartet::v1::ERROR_CLASS_DATA, [&] { return run->Resume(from); });
  if (resumed.ok()) return std::move(run);
  spdlog::error("candidate {}: cannot resume from {}: {}; training from scratch",
                spec.candidate_id(), from.uri(), resumed.ToString());
  run = std::make_unique<TrainingRun>(options, state, spec, callbacks);
  QUARTET_RETURN_IF_ERROR(Guarded("preparing the candidate", quartet::v1::ERROR_CLASS_BUILD,
                                  [&] { return run->Prepare(); }));
  run->set_resume_error(
      absl::StrCat(absl::StatusCodeToString(resumed.code()), ": ", resumed.message()));
  return std::move(run);
}

}  // namespace

absl::StatusOr<quartet::v1::Result> TorchTrainer::Train(const quartet::v1::CandidateSpec& spec,
                                                        const TrainCallbacks& callbacks) {
  // The calling thread's intra-op team (OpenMP's thread count is per calling thread), so that the
  // slots of one worker each train on their own threads.
  at::set_num_threads(state_->threads);
  // Declared before the stream, so the run (and the datasets it holds) goes only after the stream's
  // work is done.
  std::unique_ptr<TrainingRun> run;
  const RunStream stream(state_->device);
  QUARTET_ASSIGN_OR_RETURN(run, PrepareRun(options_, *state_, spec, callbacks));
  models::ScopedGenerator run_draws(run->cpu_generator());
  for (int epoch = run->start_epoch() + 1; epoch <= run->stop_epoch(); ++epoch) {
    QUARTET_RETURN_IF_ERROR(Guarded("training", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run->TrainEpoch(epoch); }));
    QUARTET_RETURN_IF_ERROR(Guarded("gradient variance", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run->GradientVariance(epoch); }));
    QUARTET_RETURN_IF_ERROR(Guarded("evaluation", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run->Evaluate(epoch); }));
    QUARTET_RETURN_IF_ERROR(Guarded("reporting", quartet::v1::ERROR_CLASS_INTERNAL, [&] {
      run->Report(epoch);
      return absl::OkStatus();
    }));
  }
  if (run->analyses_only()) {
    // Analyses on a stored model: its test accuracy first, then the analyses; nothing new to keep.
    QUARTET_RETURN_IF_ERROR(Guarded("evaluation", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run->Evaluate(run->stop_epoch()); }));
    run->Report(run->stop_epoch());
    QUARTET_RETURN_IF_ERROR(
        Guarded("analyses", quartet::v1::ERROR_CLASS_INTERNAL, [&] { return run->Analyze(); }));
    return run->Finish();
  }
  // The checkpoint is taken before the analyses, which draw random numbers of their own.
  absl::StatusOr<std::string> checkpoint;
  if (state_->artifacts) {
    QUARTET_RETURN_IF_ERROR(Guarded("checkpointing", quartet::v1::ERROR_CLASS_INTERNAL, [&] {
      checkpoint = run->CheckpointBytes();
      return checkpoint.status();
    }));
  }
  if (run->final()) {
    QUARTET_RETURN_IF_ERROR(
        Guarded("analyses", quartet::v1::ERROR_CLASS_INTERNAL, [&] { return run->Analyze(); }));
  }
  if (state_->artifacts) run->WriteArtifacts(*state_->artifacts, *checkpoint);
  return run->Finish();
}

}  // namespace quartet::worker::train
