// The LibTorch trainer: builds the candidate's MoE4 from the zoo, keeps the dataset on the device,
// and trains with the published MoE4 recipe (AdamW with the gate at 2x the learning rate and half
// the weight decay, linear warm-up then per-step cosine annealing, label smoothing, mixup, gradient
// clipping), evaluating on the whole test split every epoch.
//
// GPU path: autocast (bf16 where the device supports it, else fp16 with a dynamic loss scale),
// channels-last tensors, cuDNN benchmark mode. On out-of-memory the micro-batch is halved and
// gradients are accumulated (same effective batch); only a micro-batch of 1 that does not fit fails
// the candidate (OOM). Datasets stay cached on the device between candidates.
//
// Multi-fidelity (spec.fidelity): training stops after fidelity.stop_epoch epochs of the recipe's
// schedule (the learning-rate schedule still spans recipe.epochs) and may continue from a
// checkpoint (fidelity.resume_from). A checkpoint that is missing, corrupt or of another candidate
// is not an error: the run trains from scratch and says why in Result.resume_error. Post-training
// analyses run only when a run reaches recipe.epochs.
//
// Artifacts (Options::artifacts_uri): at the end of a successful run the trainer writes a
// checkpoint (worker/train/checkpoint.h) and a TorchScript export of the eval-mode model
// (worker/train/export.h) to campaign-<C>/candidate-<ID>/epoch-<E>-attempt-<A>.{ckpt,pt} and
// returns them in Result.checkpoint and Result.exported_model. A failed write does not fail the
// run: both stay unset and Result.checkpoint_error says why (the store's ERROR_CLASS_STORAGE
// status text). An export that fails its check (worker/train/export.h) leaves only exported_model
// unset, with checkpoint_error starting "export: ".
//
// Concurrency: one Train() at a time per trainer, but trainers of one process may train at the same
// time on different threads (the slots of quartet-worker --slots). Each Train() uses
// Options::threads intra-op threads of its calling thread, a CUDA stream of its own on GPU, and a
// CPU generator of its own; models are built one at a time (their initialisation draws from
// LibTorch's global generator) and datasets are loaded once and shared by every trainer. So a CPU
// candidate's result depends on its spec alone, whatever trains beside it.
//
// The header is LibTorch-free (the state lives in the .cc).
#ifndef QUARTET_WORKER_TRAIN_TORCH_TRAINER_H_
#define QUARTET_WORKER_TRAIN_TORCH_TRAINER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/train/trainer.h"

namespace quartet::worker::train {

class TorchTrainer : public Trainer {
 public:
  struct Options {
    // "cpu", "cuda" or "cuda:N".
    std::string device = "cpu";
    // Where datasets live when a spec names no data_dir (<root>/cifar-10, <root>/mnist, ...).
    std::string data_root = "/var/lib/quartet/data";
    // Evaluation batch size.
    int eval_batch_size = 256;
    // A progress callback and a per-step loss point every this many optimiser steps.
    int progress_every_steps = 10;
    // Intra-op threads of each Train() on CPU; 0 means every online CPU.
    int threads = 0;
    // On CPU, run the gate and the experts concurrently, one thread each (moe::MoE4Options::
    // parallel_experts); false runs them one after another on all threads.
    bool parallel_experts = true;
    // On CPU, have glibc keep freed memory for reuse instead of returning large blocks to the
    // system (process-wide; the resident size then stays at the peak of a step).
    bool cache_host_memory = true;
    // Artifact root for checkpoints and exports: file:///abs/dir or a directory
    // (common/artifacts.h); empty writes none.
    std::string artifacts_uri;
    // Keep the predicted classes (argmax) of the first this many test images at the last
    // evaluation of each Train(), for LastTestPredictions().
    int keep_test_predictions = 0;
    // Tests only: the artifact store's options (a full disk).
    int inject_artifact_write_errno = 0;
    // Tests only: behave as if every micro-batch larger than this ran out of memory (-1 = off;
    // 0 makes even a micro-batch of 1 fail).
    int inject_oom_micro_batch_limit = -1;
    // Tests only: make the loss NaN at this optimiser step (-1 = off).
    int64_t inject_nan_loss_at_step = -1;
  };

  // INVALID_ARGUMENT for a malformed device or artifact root (the root is not checked for
  // writability here; common::ArtifactStore::CheckWritable does that); UNAVAILABLE for a CUDA
  // device LibTorch cannot see.
  static absl::StatusOr<std::unique_ptr<TorchTrainer>> Create(const Options& options);
  ~TorchTrainer() override;

  absl::StatusOr<quartet::v1::Result> Train(const quartet::v1::CandidateSpec& spec,
                                            const TrainCallbacks& callbacks) override;
  std::vector<std::string> Families() const override;
  std::string Device() const override;
  std::string GpuName() const override;
  int64_t GpuMemoryBytes() const override;
  // The predictions Options::keep_test_predictions asked for, from the last Train() that evaluated.
  std::vector<int64_t> LastTestPredictions() const;

 private:
  struct State;
  explicit TorchTrainer(const Options& options);
  Options options_;
  std::unique_ptr<State> state_;
};

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_TORCH_TRAINER_H_
