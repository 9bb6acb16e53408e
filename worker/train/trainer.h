// What the worker daemon drives: train one candidate, report progress and metrics, stop when asked.
// No LibTorch here, so the daemon and its tests build without it; TorchTrainer (torch_trainer.h) is
// the real implementation.
#ifndef QUARTET_WORKER_TRAIN_TRAINER_H_
#define QUARTET_WORKER_TRAIN_TRAINER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::worker::train {

struct TrainProgress {
  int epoch = 0;
  int64_t step = 0;
  int64_t total_steps = 0;
};

struct TrainCallbacks {
  // Metric points as they are measured (per epoch, and a per-step training loss every few steps).
  // Called on the training thread; must not block for long.
  std::function<void(const std::vector<quartet::v1::MetricPoint>&)> on_metrics;
  // Called every few optimiser steps.
  std::function<void(const TrainProgress&)> on_progress;
  // Polled before every optimiser step; true stops training at that step.
  std::function<bool()> should_stop;
};

class Trainer {
 public:
  virtual ~Trainer() = default;

  // Trains `spec` to the end. Errors carry an error class (common/error_class.h): NUMERIC for a
  // non-finite loss, OOM when even a micro-batch of 1 does not fit, BUILD, DATA, TIMEOUT past the
  // recipe's time budget, PREEMPTED (CANCELLED code) when should_stop() said so.
  virtual absl::StatusOr<quartet::v1::Result> Train(const quartet::v1::CandidateSpec& spec,
                                                    const TrainCallbacks& callbacks) = 0;

  // The families this trainer can build.
  virtual std::vector<std::string> Families() const = 0;
  // Device description for registration: name ("cpu", "cuda:0"), GPU model, GPU memory bytes.
  virtual std::string Device() const = 0;
  virtual std::string GpuName() const = 0;
  virtual int64_t GpuMemoryBytes() const = 0;
};

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_TRAINER_H_
