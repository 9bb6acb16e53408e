// Training checkpoints: everything a run needs to continue exactly where it stopped, as one byte
// string (a torch::serialize archive) for the artifact store (common/artifacts.h).
//
// A checkpoint holds the format version, the candidate spec, the schedule position (epochs done,
// optimiser steps taken), every parameter and buffer of the network by name, the optimiser's state
// (AdamW moments and step counts, SGD momentum), the fp16 loss scaler, and the states of every
// random generator the run draws from: LibTorch's default CPU generator, the default CUDA
// generator of the run's device, the network's own generators (MoE4 experts and gate) and the
// host-side std::mt19937_64 that samples mixup coefficients. Restored into a freshly prepared run
// of the same spec, training continues bit for bit as if it had not stopped (on the same device
// and thread count; tests/unit/train_test.cc checks it).
//
// Functions are thread-compatible: callers own the module, optimiser and generators they pass.
#ifndef QUARTET_WORKER_TRAIN_CHECKPOINT_H_
#define QUARTET_WORKER_TRAIN_CHECKPOINT_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::worker::train {

// Raised whenever the layout changes; a checkpoint of another version is refused.
inline constexpr int64_t kCheckpointFormatVersion = 1;

// Where a run stands, beyond its tensors.
struct CheckpointPosition {
  // Epochs of the schedule completed, and optimiser steps taken (the learning-rate schedule's
  // position).
  int epoch = 0;
  int64_t step = 0;
  // The fp16 dynamic loss scale and its count of good steps (unused without fp16 autocast).
  double loss_scale = 0;
  int64_t loss_scale_good_steps = 0;
  // std::mt19937_64 state in its stream form.
  std::string host_rng;
};

// The live objects a checkpoint is taken from or restored into (not owned).
struct CheckpointParts {
  torch::nn::Module* module = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
  // In a fixed order: LibTorch's default CPU generator, the CUDA one where used, the network's.
  std::vector<at::Generator> generators;
  // Where the run's tensors live (restored tensors are moved there).
  torch::Device device = torch::kCPU;
};

// Serialises a checkpoint. INTERNAL when LibTorch fails to serialise.
absl::StatusOr<std::string> SaveCheckpoint(const quartet::v1::CandidateSpec& spec,
                                           const CheckpointPosition& position,
                                           const CheckpointParts& parts);

// Restores `bytes` into `parts`, which must be a freshly prepared run of a compatible spec (same
// candidate, combination, recipe and data). DATA_LOSS when the bytes are not a checkpoint;
// FAILED_PRECONDITION naming the difference for another format version, another spec, or a
// network whose tensors or generators do not match. On error `parts` may be partly overwritten:
// prepare the run again before training from scratch.
absl::StatusOr<CheckpointPosition> LoadCheckpoint(const std::string& bytes,
                                                  const quartet::v1::CandidateSpec& spec,
                                                  const CheckpointParts& parts);

// A checkpoint's contents without a network to load into (tests, tools).
struct CheckpointContents {
  int64_t format_version = 0;
  quartet::v1::CandidateSpec spec;
  CheckpointPosition position;
  // Parameters and buffers by their module path, in the network's order, on the CPU.
  std::vector<std::pair<std::string, torch::Tensor>> model;
};

// DATA_LOSS when the bytes are not a checkpoint.
absl::StatusOr<CheckpointContents> ReadCheckpoint(const std::string& bytes);

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_CHECKPOINT_H_
