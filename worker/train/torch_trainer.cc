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

}  // namespace

struct TorchTrainer::State {
  torch::Device device{torch::kCPU};
  std::string gpu_name;
  int64_t gpu_memory = 0;
  bool bf16_supported = false;
  // Datasets on the device, by (dataset, dir, train limit, test limit).
  std::map<std::tuple<int, std::string, int, int>, std::shared_ptr<data::Dataset>> datasets;
};

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
  const auto start = std::chrono::steady_clock::now();
  State& st = *state_;
  const torch::Device device = st.device;

  // ---- Recipe, data, model ----
  auto recipe_or = common::ResolveRecipe(spec.recipe());
  if (!recipe_or.ok()) return WithErrorClass(recipe_or.status(), quartet::v1::ERROR_CLASS_BUILD);
  const common::Recipe recipe = *recipe_or;
  if (spec.combination().families_size() < 2) {
    return Classified(absl::StatusCode::kInvalidArgument, quartet::v1::ERROR_CLASS_BUILD,
                      "combination.families: a candidate needs at least 2 families");
  }

  std::shared_ptr<data::Dataset> dataset;
  {
    const auto& d = spec.data();
    auto key = std::make_tuple(static_cast<int>(d.dataset()), d.data_dir(), d.train_limit(),
                               d.test_limit());
    auto it = st.datasets.find(key);
    if (it != st.datasets.end()) {
      dataset = it->second;
    } else {
      auto loaded = data::LoadDataset(d, options_.data_root);
      if (!loaded.ok()) return WithErrorClass(loaded.status(), quartet::v1::ERROR_CLASS_DATA);
      try {
        dataset = std::make_shared<data::Dataset>(data::ToDevice(*loaded, device));
      } catch (const c10::Error& e) {
        return Classified(
            absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
            absl::StrCat("moving the dataset to ", device.str(), ": ", e.what_without_backtrace()));
      }
      if (st.datasets.size() >= 2) st.datasets.clear();  // keep device memory bounded
      st.datasets[key] = dataset;
    }
  }
  const int64_t n_train = dataset->train_images.size(0);
  const int64_t n_test = dataset->test_images.size(0);
  if (n_train < 2 || n_test < 1) {
    return Classified(absl::StatusCode::kFailedPrecondition, quartet::v1::ERROR_CLASS_DATA,
                      absl::StrCat("dataset ", dataset->name, " has ", n_train, " training and ",
                                   n_test, " test samples; need at least 2 and 1"));
  }

  std::vector<std::string> families(spec.combination().families().begin(),
                                    spec.combination().families().end());
  int64_t input_size = recipe.input_size;
  if (input_size == 0) {
    input_size = std::max(dataset->height(), dataset->width());
    for (const auto& f : families) {
      auto m = common::FamilyCatalog::Get().Resolve(f);
      if (!m.ok()) return WithErrorClass(m.status(), quartet::v1::ERROR_CLASS_BUILD);
      input_size = std::max<int64_t>(input_size, m->variant->min_input_size);
    }
  }
  const uint64_t seed = recipe.has_seed ? recipe.seed : 0;
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed ^ 0x5DEECE66DULL);

  moe::MoE4Options mo;
  mo.experts = families;
  mo.in_channels = dataset->channels();
  mo.num_classes = dataset->num_classes;
  mo.input_size = input_size;
  mo.dropout = recipe.dropout;
  mo.seed = seed;
  mo.router.kind = recipe.router;
  mo.router.top_k = recipe.top_k;
  mo.router.top_p = recipe.top_p;
  mo.router.max_active = recipe.max_active_experts;
  mo.parallel_experts = options_.parallel_experts && !device.is_cuda();
  auto built = moe::MoE4Impl::Build(mo);
  if (!built.ok()) return WithErrorClass(built.status(), quartet::v1::ERROR_CLASS_BUILD);
  std::shared_ptr<moe::MoE4Impl> model = *built;

  const bool cuda = device.is_cuda();
  const bool amp = cuda && recipe.amp;
  const torch::ScalarType amp_dtype = st.bf16_supported ? torch::kBFloat16 : torch::kHalf;
  LossScaler scaler(amp && amp_dtype == torch::kHalf);
  try {
    model->to(device);
    if (cuda) {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) {
        if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
      }
    }
  } catch (const c10::Error& e) {
    return Classified(
        absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
        absl::StrCat("moving the model to ", device.str(), ": ", e.what_without_backtrace()));
  }
#ifdef QUARTET_WITH_CUDA
  if (cuda) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif

  // ---- Optimiser: experts at lr / wd, the gate at multiplied lr / wd ----
  const double gate_lr = recipe.learning_rate * recipe.gate_lr_multiplier;
  const double gate_wd = recipe.weight_decay * recipe.gate_weight_decay_multiplier;
  std::vector<torch::Tensor> expert_params = model->ExpertParameters();
  std::vector<torch::Tensor> gate_params = model->gate()->parameters();
  std::vector<torch::Tensor> all_params = expert_params;
  all_params.insert(all_params.end(), gate_params.begin(), gate_params.end());
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (recipe.optimizer == common::OptimizerKind::kAdamW) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(
        expert_params,
        std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(recipe.learning_rate).weight_decay(recipe.weight_decay)));
    groups.emplace_back(gate_params,
                        std::make_unique<torch::optim::AdamWOptions>(
                            torch::optim::AdamWOptions(gate_lr).weight_decay(gate_wd)));
    optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups));
  } else {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(expert_params, std::make_unique<torch::optim::SGDOptions>(
                                           torch::optim::SGDOptions(recipe.learning_rate)
                                               .momentum(recipe.momentum)
                                               .weight_decay(recipe.weight_decay)));
    groups.emplace_back(
        gate_params,
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(gate_lr).momentum(recipe.momentum).weight_decay(gate_wd)));
    optimizer = std::make_unique<torch::optim::SGD>(std::move(groups),
                                                    torch::optim::SGDOptions(recipe.learning_rate));
  }
  const std::vector<double> base_lr = {recipe.learning_rate, gate_lr};
  const double floor_factor = recipe.eta_min / recipe.learning_rate;

  data::BatchOptions train_opts;
  train_opts.output_size = input_size;
  train_opts.augment = recipe.augment;
  data::SetAugmentationFor(dataset->name, &train_opts);
  train_opts.channels_last = cuda;
  data::BatchOptions test_opts = train_opts;
  test_opts.augment = false;
  data::DeviceBatcher train_batches(*dataset, train_opts);
  data::DeviceBatcher test_batches(*dataset, test_opts);

  const int64_t batch = std::min<int64_t>(recipe.batch_size, n_train);
  const int64_t steps_per_epoch = (n_train + batch - 1) / batch;
  const int64_t total_steps = steps_per_epoch * recipe.epochs;
  const int64_t warmup = recipe.warmup_steps >= 0
                             ? recipe.warmup_steps
                             : static_cast<int64_t>(std::llround(0.05 * total_steps));
  const bool dense = recipe.router == common::RouterKind::kDense;
  int64_t micro = batch;
  int oom_fallbacks = 0;
  int64_t step = 0;
  quartet::v1::Result result;
  result.set_parameter_count(models::CountParameters(*model));
  result.set_input_size(static_cast<int32_t>(input_size));
  result.set_device(st.gpu_name.empty() ? device.str()
                                        : absl::StrCat(device.str(), " (", st.gpu_name, ")"));
  spdlog::info("training {} (router {}, {} parameters) at {} px on {}: {} epoch(s) x {} steps",
               absl::StrJoin(families, "+"), common::RouterName(recipe.router),
               result.parameter_count(), input_size, device.str(), recipe.epochs, steps_per_epoch);

  for (int epoch = 1; epoch <= recipe.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    double train_time = 0;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    model->train();
    torch::Tensor perm =
        torch::randperm(n_train, torch::TensorOptions().dtype(torch::kLong).device(device));
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      if (callbacks.should_stop && callbacks.should_stop()) {
        return Classified(absl::StatusCode::kCancelled, quartet::v1::ERROR_CLASS_PREEMPTED,
                          absl::StrCat("stopped at step ", step, " of ", total_steps));
      }
      if (recipe.time_budget_seconds > 0 && Seconds(start) > recipe.time_budget_seconds) {
        return Classified(absl::StatusCode::kDeadlineExceeded, quartet::v1::ERROR_CLASS_TIMEOUT,
                          absl::StrFormat("time budget of %.0f s exceeded at step %d of %d",
                                          recipe.time_budget_seconds, step, total_steps));
      }
      torch::Tensor idx = perm.slice(0, s * batch, std::min((s + 1) * batch, n_train));
      const int64_t b = idx.size(0);
      if (b < 2) continue;  // BatchNorm cannot train on one sample
      const auto step_start = std::chrono::steady_clock::now();
      SetLearningRates(
          *optimizer, base_lr,
          LearningRateFactor(step, total_steps, warmup, recipe.warmup_start_factor, floor_factor));
      const double lam = SampleMixupLambda(recipe.mixup_alpha, rng);
      MixedBatch mixed;
      {
        torch::NoGradGuard no_grad;
        torch::Tensor partner;
        if (lam < 1.0) {
          partner = torch::randperm(b, torch::TensorOptions().dtype(torch::kLong).device(device));
        }
        mixed = Mixup(train_batches.Train(idx), train_batches.TrainLabels(idx), lam, partner);
      }
      // Forward/backward in micro-batches; halve them on out-of-memory and redo the step.
      double step_loss = 0;
      int64_t step_correct = 0;
      while (true) {
        try {
          optimizer->zero_grad();
          step_loss = 0;
          step_correct = 0;
          for (int64_t c0 = 0; c0 < b; c0 += micro) {
            const int64_t c = std::min(micro, b - c0);
            MaybeInjectOom(options_.inject_oom_micro_batch_limit, c);
            MixedBatch chunk{mixed.x.narrow(0, c0, c), mixed.y_a.narrow(0, c0, c),
                             mixed.y_b.narrow(0, c0, c), lam};
            moe::MoEOutput out;
            {
              AutocastScope autocast(amp, amp_dtype);
              out = model->Forward(chunk.x);
            }
            torch::Tensor loss = MixupLoss(out.logits, chunk, recipe.label_smoothing);
            if (step == options_.inject_nan_loss_at_step) loss = loss * std::nan("");
            loss = loss + recipe.balance_loss_weight * out.balance_loss;
            const double value = loss.item<double>();
            if (!std::isfinite(value)) {
              return Classified(absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
                                absl::StrCat("non-finite loss (", value, ") at step ", step,
                                             " of epoch ", epoch));
            }
            model->Backward(loss * (static_cast<double>(c) / b) * scaler.scale());
            step_loss += value * c;
            // Under mixup a sample's label is the one with the larger weight.
            const torch::Tensor& major = lam >= 0.5 ? chunk.y_a : chunk.y_b;
            step_correct += out.logits.argmax(1).eq(major).sum().item<int64_t>();
          }
          break;
        } catch (const c10::OutOfMemoryError& e) {
          optimizer->zero_grad();
#ifdef QUARTET_WITH_CUDA
          if (cuda) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
          if (micro <= 1) {
            return Classified(
                absl::StatusCode::kResourceExhausted, quartet::v1::ERROR_CLASS_OOM,
                absl::StrCat("out of memory at a micro-batch of 1: ", e.what_without_backtrace()));
          }
          micro = std::max<int64_t>(1, micro / 2);
          ++oom_fallbacks;
          spdlog::warn("out of memory at step {}: micro-batch halved to {} (effective batch {})",
                       step, micro, batch);
        } catch (const c10::Error& e) {
          return Classified(absl::StatusCode::kInternal, quartet::v1::ERROR_CLASS_INTERNAL,
                            absl::StrCat("training step ", step, ": ", e.what_without_backtrace()));
        }
      }
      if (scaler.Unscale(all_params)) {
        if (recipe.grad_clip_norm > 0) {
          torch::nn::utils::clip_grad_norm_(all_params, recipe.grad_clip_norm);
        }
        optimizer->step();
      }
      model->gate()->ClampTemperature();
      ++step;
      loss_sum += step_loss;
      correct += step_correct;
      seen += b;
      train_time += Seconds(step_start);
      if (options_.progress_every_steps > 0 && step % options_.progress_every_steps == 0) {
        if (callbacks.on_progress) callbacks.on_progress({epoch, step, total_steps});
        if (callbacks.on_metrics) {
          quartet::v1::MetricPoint p;
          p.set_step(step);
          p.set_epoch(epoch);
          p.set_name("step/train_loss");
          p.set_value(step_loss / b);
          p.set_time_unix_ms(NowMillis());
          callbacks.on_metrics({p});
        }
      }
    }

    // ---- Evaluation on the whole test split, clean inputs ----
    model->eval();
    moe::RoutingStats routing;
    double test_loss = 0;
    int64_t test_correct = 0;
    try {
      torch::NoGradGuard no_grad;
      for (int64_t i = 0; i < n_test; i += options_.eval_batch_size) {
        const int64_t c = std::min<int64_t>(options_.eval_batch_size, n_test - i);
        torch::Tensor idx =
            torch::arange(i, i + c, torch::TensorOptions().dtype(torch::kLong).device(device));
        torch::Tensor x = test_batches.Test(idx);
        torch::Tensor y = test_batches.TestLabels(idx);
        moe::MoEOutput out;
        {
          AutocastScope autocast(amp, amp_dtype);
          out = model->Forward(x);
        }
        test_loss += F::cross_entropy(out.logits.to(torch::kFloat32), y,
                                      F::CrossEntropyFuncOptions().reduction(torch::kSum))
                         .item<double>();
        test_correct += out.logits.argmax(1).eq(y).sum().item<int64_t>();
        routing.Add(out);
      }
    } catch (const c10::Error& e) {
      return Classified(absl::StatusCode::kInternal, quartet::v1::ERROR_CLASS_INTERNAL,
                        absl::StrCat("evaluation: ", e.what_without_backtrace()));
    }
    const double test_accuracy = static_cast<double>(test_correct) / n_test;
    if (!std::isfinite(test_loss)) {
      return Classified(absl::StatusCode::kAborted, quartet::v1::ERROR_CLASS_NUMERIC,
                        absl::StrCat("non-finite test loss after epoch ", epoch));
    }

    quartet::v1::EpochMetrics* em = result.add_epochs();
    em->set_epoch(epoch);
    em->set_train_loss(seen ? loss_sum / seen : 0);
    em->set_train_accuracy(seen ? static_cast<double>(correct) / seen : 0);
    em->set_test_loss(test_loss / n_test);
    em->set_test_accuracy(test_accuracy);
    em->set_learning_rate(optimizer->param_groups()[0].options().get_lr());
    em->set_gate_temperature(model->gate()->Temperature().item<double>());
    for (double l : routing.Load(dense)) em->add_expert_load(l);
    em->set_load_cv(routing.LoadCv(dense));
    em->set_routing_entropy(routing.NormalizedEntropy());
    em->set_mean_active_experts(routing.MeanActive());
    em->set_samples_per_second(train_time > 0 ? seen / train_time : 0);
    em->set_peak_memory_bytes(PeakMemoryBytes(device));
    em->set_wall_seconds(Seconds(epoch_start));
    spdlog::info(
        "epoch {}/{}: train loss {:.4f} acc {:.4f}, test loss {:.4f} acc {:.4f}, {:.1f} samples/s, "
        "load cv {:.3f}, T {:.3f}",
        epoch, recipe.epochs, em->train_loss(), em->train_accuracy(), em->test_loss(),
        em->test_accuracy(), em->samples_per_second(), em->load_cv(), em->gate_temperature());
    if (callbacks.on_metrics) {
      std::vector<quartet::v1::MetricPoint> points;
      auto add = [&](const std::string& name, double value) {
        quartet::v1::MetricPoint p;
        p.set_step(step);
        p.set_epoch(epoch);
        p.set_name(name);
        p.set_value(value);
        p.set_time_unix_ms(NowMillis());
        points.push_back(std::move(p));
      };
      add("train_loss", em->train_loss());
      add("train_accuracy", em->train_accuracy());
      add("test_loss", em->test_loss());
      add("test_accuracy", em->test_accuracy());
      add("learning_rate", em->learning_rate());
      add("gate_temperature", em->gate_temperature());
      for (int i = 0; i < em->expert_load_size(); ++i) {
        add(absl::StrCat("expert_load/", i), em->expert_load(i));
      }
      add("load_cv", em->load_cv());
      add("routing_entropy", em->routing_entropy());
      add("mean_active_experts", em->mean_active_experts());
      add("samples_per_second", em->samples_per_second());
      add("peak_memory_bytes", static_cast<double>(em->peak_memory_bytes()));
      add("epoch_seconds", em->wall_seconds());
      callbacks.on_metrics(points);
    }
    result.set_test_accuracy(test_accuracy);
    result.set_test_loss(test_loss / n_test);
  }
  if (callbacks.on_progress) callbacks.on_progress({recipe.epochs, step, total_steps});
  result.set_micro_batch_size(static_cast<int32_t>(micro));
  result.set_oom_fallbacks(oom_fallbacks);
  result.set_wall_seconds(Seconds(start));
  return result;
}

}  // namespace quartet::worker::train
