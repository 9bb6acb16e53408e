// Builds training and evaluation batches on the device from a Dataset already on the device:
// gather uint8 images by index, random pad-and-crop and horizontal flip (training only), bilinear
// resize to the recipe's input size, scale to [0, 1] and normalise per channel. No per-sample
// host work, no data-loader threads.
#ifndef QUARTET_WORKER_DATA_BATCHER_H_
#define QUARTET_WORKER_DATA_BATCHER_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "worker/data/dataset.h"

namespace quartet::worker::data {

struct BatchOptions {
  // Square output side; the native size when equal (no resize).
  int64_t output_size = 32;
  // Random crop with zero padding `pad` and (when `flip`) random horizontal flip on training
  // batches. SetAugmentationFor() gives each dataset's defaults.
  bool augment = true;
  int64_t pad = 4;
  bool flip = true;
  // Output dtype (float32; the trainer may ask for half precision on CUDA).
  torch::Dtype dtype = torch::kFloat32;
  // Return channels-last tensors (faster convolutions on CUDA).
  bool channels_last = false;
  // Draws of the augmentation on a CPU dataset come from this generator (the run's own, so that
  // concurrent trainings in one process draw independently); none: LibTorch's global generator.
  c10::optional<at::Generator> cpu_generator;
};

// Sets options->pad and options->flip to the dataset's training augmentation: CIFAR-10 (and
// synthetic data) pad 4 and flip; Fashion-MNIST flip only (as the published pipeline: shifting a
// 28-px garment by 2 or 4 px cost 1-epoch runs 5 to 8 points of test accuracy); MNIST nothing (a
// mirrored digit is another digit or none).
void SetAugmentationFor(const std::string& dataset_name, BatchOptions* options);

// Not thread-safe. Keeps a reference to the dataset's tensors.
class DeviceBatcher {
 public:
  DeviceBatcher(const Dataset& dataset, const BatchOptions& options);

  // Training batch of the samples `indices` (int64 tensor on the dataset's device): augmented
  // (when enabled), resized, normalised. Randomness from LibTorch's default generator.
  torch::Tensor Train(const torch::Tensor& indices) const;
  // Evaluation batch of test samples `indices`: resized and normalised, never augmented.
  torch::Tensor Test(const torch::Tensor& indices) const;
  // Labels of the given samples.
  torch::Tensor TrainLabels(const torch::Tensor& indices) const;
  torch::Tensor TestLabels(const torch::Tensor& indices) const;

  // Shared by Train and Test: uint8 (B, C, H, W) -> resized, normalised float.
  torch::Tensor Finish(const torch::Tensor& uint8_batch) const;

  const BatchOptions& options() const { return options_; }

 private:
  const Dataset& dataset_;
  BatchOptions options_;
  torch::Tensor mean_, inv_std_;  // (1, C, 1, 1) on the device
};

// Replicates a 1-channel batch to 3 channels (for experts that need 3); other batches unchanged.
torch::Tensor ToThreeChannels(const torch::Tensor& x);

}  // namespace quartet::worker::data

#endif  // QUARTET_WORKER_DATA_BATCHER_H_
