// Image-classification datasets held as whole tensors: CIFAR-10 (binary format), MNIST and
// Fashion-MNIST (IDX, raw or gzip), and a seeded synthetic set for tests and benchmarks.
//
// A Dataset holds uint8 images (N, C, H, W) and int64 labels (N). Loading happens on the CPU;
// ToDevice() moves a dataset to the training device once, where it stays for the whole run
// (batches are then built on the device, see batcher.h).
#ifndef QUARTET_WORKER_DATA_DATASET_H_
#define QUARTET_WORKER_DATA_DATASET_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::worker::data {

struct Dataset {
  // "cifar10", "mnist", "fashion-mnist", "synthetic".
  std::string name;
  torch::Tensor train_images;  // uint8 (N, C, H, W), contiguous
  torch::Tensor train_labels;  // int64 (N)
  torch::Tensor test_images;   // uint8 (M, C, H, W)
  torch::Tensor test_labels;   // int64 (M)
  int64_t num_classes = 10;
  // Per-channel normalisation of pixel/255 (C values each).
  std::vector<double> mean;
  std::vector<double> std;

  int64_t channels() const { return train_images.size(1); }
  int64_t height() const { return train_images.size(2); }
  int64_t width() const { return train_images.size(3); }
};

// CIFAR-10 binary version: `dir` holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin,
// each a sequence of 3073-byte records (label byte, then 1024 R, 1024 G, 1024 B bytes, row-major).
// NOT_FOUND naming the missing file; DATA_LOSS naming the file when its size is not a multiple of
// 3073 bytes or a label is above 9.
absl::StatusOr<Dataset> LoadCifar10(const std::string& dir);

// MNIST-style IDX files in `dir`: train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally with a .gz suffix (gzip is read
// directly). `name` is recorded as the dataset name ("mnist" or "fashion-mnist").
// NOT_FOUND naming the missing file; DATA_LOSS naming the file for a wrong magic number, a
// truncated file, mismatched image/label counts or a label above 9.
absl::StatusOr<Dataset> LoadIdx(const std::string& dir, const std::string& name);

// Seeded random images whose label is a fixed function of the pixels (learnable), for tests and
// benchmarks. Deterministic in `seed`.
Dataset MakeSynthetic(int64_t train_size, int64_t test_size, int64_t channels, int64_t size,
                      int64_t num_classes, uint64_t seed);

// Loads what a DataSpec names: data_dir, or `default_root`/<cifar-10|mnist|fashion-mnist> when
// empty (Fashion-MNIST also falls back to /usr/share/datasets/fashion-mnist, where Debian's
// dataset-fashion-mnist installs it); applies train_limit / test_limit (first N samples).
absl::StatusOr<Dataset> LoadDataset(const quartet::v1::DataSpec& spec,
                                    const std::string& default_root);

// A copy of `d` with its tensors on `device`.
Dataset ToDevice(const Dataset& d, const torch::Device& device);

// Writers of the same formats (for tests and for preparing small files): images uint8
// (N, 3, 32, 32) and labels int64 (N).
absl::Status WriteCifar10File(const std::string& path, const torch::Tensor& images,
                              const torch::Tensor& labels);
// images uint8 (N, 1, H, W) -> idx3; labels -> idx1. `gzip` writes gzip-compressed files.
absl::Status WriteIdxImages(const std::string& path, const torch::Tensor& images, bool gzip);
absl::Status WriteIdxLabels(const std::string& path, const torch::Tensor& labels, bool gzip);

}  // namespace quartet::worker::data

#endif  // QUARTET_WORKER_DATA_DATASET_H_
