// TorchScript export of a trained network, for inference outside Quartet (torch.jit.load in
// Python, torch::jit::load in C++).
//
// The eval-mode forward pass is traced on an example batch into a graph whose weights are the
// module's parameters and buffers (flattened names: "expert0__stem__0__weight"). A trace bakes the
// batch size into shapes the zoo computes from x.size(0), so the traced graph serves fixed chunks
// of the example's batch size, and a scripted forward(x) runs any batch through it in chunks,
// padding the last one. The result maps a normalised float batch (N, C, S, S) to logits (N,
// classes); quartet.json, stored beside the code as an extra file, says how to get there from raw
// images (scale, per-channel mean and std, bilinear resize) and what the classes are.
//
// Tracing also bakes data-dependent control flow. The export is therefore checked on other images
// than the example's: the traced module must predict what the network predicts on every one, or the
// export is refused (FAILED_PRECONDITION naming the architecture). Routers that skip experts per
// sample (MoE4 TOP_K / TOP_P, sparse heads, DYNAMOE) are exported through their dense-equivalent
// eval path (moe::Network::SetExportMode), which runs every expert on every sample with the routing
// weights, zero where an expert is not chosen.
//
// Not thread-safe: uses the network and, while tracing, LibTorch's intra-op thread count.
#ifndef QUARTET_WORKER_TRAIN_EXPORT_H_
#define QUARTET_WORKER_TRAIN_EXPORT_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/moe/network.h"

namespace quartet::worker::train {

// What quartet.json records.
struct ExportInfo {
  // The network's input side, channels, and the dataset's per-channel normalisation of pixel/255.
  int64_t input_size = 0;
  int64_t channels = 0;
  std::vector<double> mean;
  std::vector<double> std;
  // The images' native size (resized to input_size when different).
  int64_t native_height = 0;
  int64_t native_width = 0;
  int64_t num_classes = 0;
  // "cifar10", "mnist", "fashion-mnist", "synthetic".
  std::string dataset;
  // moe::Network::Describe(), and the combination's families.
  std::string architecture;
  std::vector<std::string> families;
  int64_t candidate_id = 0;
  int64_t campaign_id = 0;
  // Epochs of the schedule trained.
  int epoch = 0;
};

// The name of the extra file holding ExportInfo as JSON.
inline constexpr char kExportInfoFile[] = "quartet.json";

// Traces `net` on `example` (a normalised batch, as the trainer evaluates on), checks the result on
// `check` (other images) and returns the saved TorchScript module. FAILED_PRECONDITION when the
// traced module does not reproduce the network's predictions on `check`; INTERNAL for LibTorch
// failures. Leaves the network in eval mode.
absl::StatusOr<std::string> ExportTorchScript(moe::Network& net, const torch::Tensor& example,
                                              const torch::Tensor& check, const ExportInfo& info);

}  // namespace quartet::worker::train

#endif  // QUARTET_WORKER_TRAIN_EXPORT_H_
