#include "worker/train/torch_trainer.h"

#include <malloc.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/catalog.h"
#include "common/error_class.h"
#include "common/recipe.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/data/batcher.h"
#include "worker/data/dataset.h"
#include "worker/models/registry.h"
#include "worker/moe/moe4.h"
#include "worker/train/mixup.h"
#include "worker/train/schedule.h"

#ifdef QUARTET_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
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
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats
        .allocated_bytes[static_cast<size_t>(c10::cuda::CUDACachingAllocator::StatType::AGGREGATE)]
        .peak;
  }
#endif
  (void)device;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// Mixed precision for one forward pass on CUDA (no-op elsewhere).
class AutocastScope {
 public:
  AutocastScope(bool enabled, torch::ScalarType dtype) : enabled_(enabled) {
#ifdef QUARTET_WITH_CUDA
    if (enabled_) {
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(true);
    }
#else
    (void)dtype;
#endif
  }
  ~AutocastScope() {
#ifdef QUARTET_WITH_CUDA
    if (enabled_) {
      at::autocast::set_enabled(false);
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

// What a trainer keeps between candidates: its device and the datasets on it.
struct TrainerState {
  torch::Device device{torch::kCPU};
  std::string gpu_name;
  int64_t gpu_memory = 0;
  bool bf16_supported = false;
  // Datasets on the device, by (dataset, dir, train limit, test limit).
  std::map<std::tuple<int, std::string, int, int>, std::shared_ptr<data::Dataset>> datasets;
};

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
        scaler_(false) {}

  int epochs() const { return recipe_.epochs; }

  absl::Status Prepare() {
    QUARTET_RETURN_IF_ERROR(ResolveSpec());
    QUARTET_RETURN_IF_ERROR(LoadData());
    QUARTET_RETURN_IF_ERROR(BuildModel());
    MakeOptimizer();
    MakeBatchers();
    return absl::OkStatus();
  }

  absl::Status TrainEpoch(int epoch);
  absl::Status Evaluate(int epoch);
  void Report(int epoch);

  quartet::v1::Result Finish() {
    if (callbacks_.on_progress) callbacks_.on_progress({recipe_.epochs, step_, total_steps_});
    result_.set_micro_batch_size(static_cast<int32_t>(micro_));
    result_.set_oom_fallbacks(oom_fallbacks_);
    result_.set_wall_seconds(Seconds(start_));
    return result_;
  }

 private:
  absl::Status ResolveSpec();
  absl::Status LoadData();
  absl::Status BuildModel();
  void MakeOptimizer();
  void MakeBatchers();
  // One optimiser step on the samples `idx`, in micro-batches; halves them on out-of-memory.
  absl::Status Step(int epoch, const torch::Tensor& idx);
  void SendEpochMetrics(int epoch, const quartet::v1::EpochMetrics& em);

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
  std::shared_ptr<moe::MoE4Impl> model_;
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
  quartet::v1::Result result_;
  // The current epoch's training and evaluation tallies.
  std::chrono::steady_clock::time_point epoch_start_;
  double train_time_ = 0, loss_sum_ = 0, test_loss_ = 0;
  int64_t correct_ = 0, seen_ = 0, test_correct_ = 0;
  moe::RoutingStats routing_;
};

absl::Status TrainingRun::ResolveSpec() {
  auto recipe = common::ResolveRecipe(spec_.recipe());
  if (!recipe.ok()) return WithErrorClass(recipe.status(), quartet::v1::ERROR_CLASS_BUILD);
  recipe_ = *recipe;
  if (spec_.combination().families_size() < 2) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      "combination.families: a candidate needs at least 2 families");
  }
  families_.assign(spec_.combination().families().begin(), spec_.combination().families().end());
  return absl::OkStatus();
}

absl::Status TrainingRun::LoadData() {
  const auto& d = spec_.data();
  auto key =
      std::make_tuple(static_cast<int>(d.dataset()), d.data_dir(), d.train_limit(), d.test_limit());
  auto it = st_.datasets.find(key);
  if (it != st_.datasets.end()) {
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
    if (st_.datasets.size() >= 2) st_.datasets.clear();  // keep device memory bounded
    st_.datasets[key] = dataset_;
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
  torch::manual_seed(seed);
  rng_.seed(seed ^ 0x5DEECE66DULL);

  moe::MoE4Options mo;
  mo.experts = families_;
  mo.in_channels = dataset_->channels();
  mo.num_classes = dataset_->num_classes;
  mo.input_size = input_size_;
  mo.dropout = recipe_.dropout;
  mo.seed = seed;
  mo.router.kind = recipe_.router;
  mo.router.top_k = recipe_.top_k;
  mo.router.top_p = recipe_.top_p;
  mo.router.max_active = recipe_.max_active_experts;
  mo.parallel_experts = options_.parallel_experts && !device_.is_cuda();
  auto built = moe::MoE4Impl::Build(mo);
  if (!built.ok()) return WithErrorClass(built.status(), quartet::v1::ERROR_CLASS_BUILD);
  model_ = *built;

  cuda_ = device_.is_cuda();
  amp_ = cuda_ && recipe_.amp;
  amp_dtype_ = st_.bf16_supported ? torch::kBFloat16 : torch::kHalf;
  scaler_ = LossScaler(amp_ && amp_dtype_ == torch::kHalf);
  try {
    model_->to(device_);
    if (cuda_) {
      torch::NoGradGuard no_grad;
      for (auto& p : model_->parameters()) {
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
  result_.set_parameter_count(models::CountParameters(*model_));
  result_.set_input_size(static_cast<int32_t>(input_size_));
  result_.set_device(st_.gpu_name.empty() ? device_.str()
                                          : absl::StrCat(device_.str(), " (", st_.gpu_name, ")"));
  return absl::OkStatus();
}

// Experts at lr / wd, the gate at multiplied lr / wd.
void TrainingRun::MakeOptimizer() {
  const double gate_lr = recipe_.learning_rate * recipe_.gate_lr_multiplier;
  const double gate_wd = recipe_.weight_decay * recipe_.gate_weight_decay_multiplier;
  std::vector<torch::Tensor> expert_params = model_->ExpertParameters();
  std::vector<torch::Tensor> gate_params = model_->gate()->parameters();
  all_params_ = expert_params;
  all_params_.insert(all_params_.end(), gate_params.begin(), gate_params.end());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (recipe_.optimizer == common::OptimizerKind::kAdamW) {
    groups.emplace_back(
        expert_params,
        std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(recipe_.learning_rate).weight_decay(recipe_.weight_decay)));
    groups.emplace_back(gate_params,
                        std::make_unique<torch::optim::AdamWOptions>(
                            torch::optim::AdamWOptions(gate_lr).weight_decay(gate_wd)));
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups));
  } else {
    groups.emplace_back(expert_params, std::make_unique<torch::optim::SGDOptions>(
                                           torch::optim::SGDOptions(recipe_.learning_rate)
                                               .momentum(recipe_.momentum)
                                               .weight_decay(recipe_.weight_decay)));
    groups.emplace_back(
        gate_params,
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(gate_lr).momentum(recipe_.momentum).weight_decay(gate_wd)));
    optimizer_ = std::make_unique<torch::optim::SGD>(
        std::move(groups), torch::optim::SGDOptions(recipe_.learning_rate));
  }
  base_lr_ = {recipe_.learning_rate, gate_lr};
  floor_factor_ = recipe_.eta_min / recipe_.learning_rate;
}

void TrainingRun::MakeBatchers() {
  data::BatchOptions train_opts;
  train_opts.output_size = input_size_;
  train_opts.augment = recipe_.augment;
  data::SetAugmentationFor(dataset_->name, &train_opts);
  train_opts.channels_last = cuda_;
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
  spdlog::info("training {} (router {}, {} parameters) at {} px on {}: {} epoch(s) x {} steps",
               absl::StrJoin(families_, "+"), common::RouterName(recipe_.router),
               result_.parameter_count(), input_size_, device_.str(), recipe_.epochs,
               steps_per_epoch_);
}

absl::Status TrainingRun::TrainEpoch(int epoch) {
  epoch_start_ = std::chrono::steady_clock::now();
  train_time_ = loss_sum_ = 0;
  correct_ = seen_ = 0;
  model_->train();
  torch::Tensor perm =
      torch::randperm(n_train_, torch::TensorOptions().dtype(torch::kLong).device(device_));
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
      partner = torch::randperm(b, torch::TensorOptions().dtype(torch::kLong).device(device_));
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
          out = model_->Forward(chunk.x);
        }
        torch::Tensor loss = MixupLoss(out.logits, chunk, recipe_.label_smoothing);
        if (step_ == options_.inject_nan_loss_at_step) loss = loss * std::nan("");
        loss = loss + recipe_.balance_loss_weight * out.balance_loss;
        const double value = loss.item<double>();
        if (!std::isfinite(value)) {
          return Classified(
              absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
              absl::StrCat("non-finite loss (", value, ") at step ", step_, " of epoch ", epoch));
        }
        model_->Backward(loss * (static_cast<double>(c) / b) * scaler_.scale());
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
    if (recipe_.grad_clip_norm > 0) {
      torch::nn::utils::clip_grad_norm_(all_params_, recipe_.grad_clip_norm);
    }
    optimizer_->step();
  }
  model_->gate()->ClampTemperature();
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
  model_->eval();
  routing_ = moe::RoutingStats();
  test_loss_ = 0;
  test_correct_ = 0;
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
      out = model_->Forward(x);
    }
    test_loss_ += F::cross_entropy(out.logits.to(torch::kFloat32), y,
                                   F::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
    test_correct_ += out.logits.argmax(1).eq(y).sum().item<int64_t>();
    routing_.Add(out);
  }
  if (!std::isfinite(test_loss_)) {
    return Classified(absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
                      absl::StrCat("non-finite test loss after epoch ", epoch));
  }
  return absl::OkStatus();
}

void TrainingRun::Report(int epoch) {
  const bool dense = recipe_.router == common::RouterKind::kDense;
  const double test_accuracy = static_cast<double>(test_correct_) / n_test_;
  quartet::v1::EpochMetrics* em = result_.add_epochs();
  em->set_epoch(epoch);
  em->set_train_loss(seen_ ? loss_sum_ / seen_ : 0);
  em->set_train_accuracy(seen_ ? static_cast<double>(correct_) / seen_ : 0);
  em->set_test_loss(test_loss_ / n_test_);
  em->set_test_accuracy(test_accuracy);
  em->set_learning_rate(optimizer_->param_groups()[0].options().get_lr());
  em->set_gate_temperature(model_->gate()->Temperature().item<double>());
  for (double l : routing_.Load(dense)) em->add_expert_load(l);
  em->set_load_cv(routing_.LoadCv(dense));
  em->set_routing_entropy(routing_.NormalizedEntropy());
  em->set_mean_active_experts(routing_.MeanActive());
  em->set_samples_per_second(train_time_ > 0 ? seen_ / train_time_ : 0);
  em->set_peak_memory_bytes(PeakMemoryBytes(device_));
  em->set_wall_seconds(Seconds(epoch_start_));
  spdlog::info(
      "epoch {}/{}: train loss {:.4f} acc {:.4f}, test loss {:.4f} acc {:.4f}, {:.1f} samples/s, "
      "load cv {:.3f}, T {:.3f}",
      epoch, recipe_.epochs, em->train_loss(), em->train_accuracy(), em->test_loss(),
      em->test_accuracy(), em->samples_per_second(), em->load_cv(), em->gate_temperature());
  SendEpochMetrics(epoch, *em);
  result_.set_test_accuracy(test_accuracy);
  result_.set_test_loss(test_loss_ / n_test_);
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
  callbacks_.on_metrics(points);
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
  torch::set_num_threads(std::max(1, threads));
  return t;
}

std::vector<std::string> TorchTrainer::Families() const { return models::RegisteredModels(); }

std::string TorchTrainer::Device() const { return state_->device.str(); }
std::string TorchTrainer::GpuName() const { return state_->gpu_name; }
int64_t TorchTrainer::GpuMemoryBytes() const { return state_->gpu_memory; }

absl::StatusOr<quartet::v1::Result> TorchTrainer::Train(const quartet::v1::CandidateSpec& spec,
                                                        const TrainCallbacks& callbacks) {
  TrainingRun run(options_, *state_, spec, callbacks);
  QUARTET_RETURN_IF_ERROR(Guarded("preparing the candidate", quartet::v1::ERROR_CLASS_BUILD,
                                  [&] { return run.Prepare(); }));
  for (int epoch = 1; epoch <= run.epochs(); ++epoch) {
    QUARTET_RETURN_IF_ERROR(Guarded("training", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run.TrainEpoch(epoch); }));
    QUARTET_RETURN_IF_ERROR(Guarded("evaluation", quartet::v1::ERROR_CLASS_INTERNAL,
                                    [&] { return run.Evaluate(epoch); }));
    QUARTET_RETURN_IF_ERROR(Guarded("reporting", quartet::v1::ERROR_CLASS_INTERNAL, [&] {
      run.Report(epoch);
      return absl::OkStatus();
    }));
  }
  return run.Finish();
}

}  // namespace quartet::worker::train
