// Milliseconds per batch of the DeviceBatcher (batched tensor ops) against a per-sample loop of the
// same transformations (the shape of the PIL pipeline it replaces), at 32 px and 256 px, train and
// test paths, on the CPU or CUDA; plus dataset load times.
//
//   data_batches [--batch 32] [--iters 50] [--device cpu|cuda] [--threads N] [--record]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "quartet/v1/spec.pb.h"
#include "worker/data/batcher.h"
#include "worker/data/dataset.h"

namespace quartet::bench {
namespace {

using worker::data::BatchOptions;
using worker::data::Dataset;
using worker::data::DeviceBatcher;

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Median milliseconds of `fn` over `iters` runs after 3 warm-up runs.
template <typename Fn>
double MedianMs(int iters, const torch::Device& device, Fn fn) {
  for (int i = 0; i < 3; ++i) fn();
  Sync(device);
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    Sync(device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

// The same transformations one sample at a time: crop, flip, resize, normalise, then stack.
torch::Tensor PerSample(const Dataset& d, const torch::Tensor& indices, const BatchOptions& o,
                        bool train) {
  const torch::Tensor& images = train ? d.train_images : d.test_images;
  const int64_t c = images.size(1), h = images.size(2), w = images.size(3);
  const torch::Tensor mean = torch::tensor(std::vector<float>(d.mean.begin(), d.mean.end()))
                                 .view({c, 1, 1})
                                 .to(images.device());
  const torch::Tensor stdv = torch::tensor(std::vector<float>(d.std.begin(), d.std.end()))
                                 .view({c, 1, 1})
                                 .to(images.device());
  const std::vector<int64_t> idx(indices.data_ptr<int64_t>(),
                                 indices.data_ptr<int64_t>() + indices.numel());
  std::vector<torch::Tensor> out;
  for (int64_t i : idx) {
    torch::Tensor x = images[i];
    if (train && o.augment) {
      const int64_t dy = std::rand() % (2 * o.pad + 1), dx = std::rand() % (2 * o.pad + 1);
      x = torch::constant_pad_nd(x, {o.pad, o.pad, o.pad, o.pad}, 0)
              .narrow(1, dy, h)
              .narrow(2, dx, w);
      if (std::rand() % 2) x = x.flip({2});
    }
    x = x.to(torch::kFloat32).unsqueeze(0);
    if (o.output_size != h || o.output_size != w) {
      x = torch::nn::functional::interpolate(
          x, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{o.output_size, o.output_size})
                 .mode(torch::kBilinear)
                 .align_corners(false));
    }
    out.push_back((x.squeeze(0) / 255.0 - mean) / stdv);
  }
  return torch::stack(out);
}

template <typename Fn>
double LoadSeconds(Fn fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Main(int argc, char** argv) {
  int64_t batch = 32;
  int iters = 50;
  int threads = 0;
  std::string device_name = "cpu";
  bool record = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--batch") {
      batch = std::stoll(value());
    } else if (arg == "--iters") {
      iters = std::stoi(value());
    } else if (arg == "--device") {
      device_name = value();
    } else if (arg == "--threads") {
      threads = std::stoi(value());
    } else if (arg == "--record") {
      record = true;
    } else {
      std::cerr << "usage: data_batches [--batch N] [--iters N] [--device cpu|cuda] [--threads N] "
                   "[--record]\n";
      return 2;
    }
  }
  if (threads > 0) torch::set_num_threads(threads);
  const torch::Device device(device_name);
  torch::manual_seed(0);

  std::string body;
  const double synth_s =
      LoadSeconds([] { worker::data::MakeSynthetic(50000, 10000, 3, 32, 10, 0); });
  body += absl::StrFormat("MakeSynthetic(50000 + 10000, 3x32x32): %.2f s\n", synth_s);
  quartet::v1::DataSpec fashion;
  fashion.set_dataset(quartet::v1::DATASET_FASHION_MNIST);
  absl::StatusOr<Dataset> loaded;
  const double fashion_s = LoadSeconds([&] { loaded = worker::data::LoadDataset(fashion, ""); });
  if (loaded.ok()) {
    body += absl::StrFormat("LoadDataset(Fashion-MNIST, 4 .gz files, 70000 images): %.2f s\n",
                            fashion_s);
  } else {
    body += absl::StrCat("Fashion-MNIST not loaded: ", loaded.status().ToString(), "\n");
  }

  const Dataset d =
      worker::data::ToDevice(worker::data::MakeSynthetic(8192, 2048, 3, 32, 10, 0), device);
  body += absl::StrFormat(
      "\nms per batch of %d from a 3x32x32 uint8 set on %s (%d intra-op threads), median of "
      "%d:\n\n",
      batch, device.str(), torch::get_num_threads(), iters);
  body += "| output | path | options | DeviceBatcher ms | per-sample loop ms | ratio |\n";
  body += "|---|---|---|---|---|---|\n";
  for (int64_t side : {32, 256}) {
    for (bool train : {true, false}) {
      for (bool channels_last : {false, true}) {
        BatchOptions o;
        o.output_size = side;
        o.channels_last = channels_last;
        DeviceBatcher batcher(d, o);
        const torch::Tensor cpu_indices = torch::randperm(2048, torch::kInt64).narrow(0, 0, batch);
        const torch::Tensor indices = cpu_indices.to(device);
        const double ms = MedianMs(iters, device, [&] {
          torch::NoGradGuard no_grad;
          return train ? batcher.Train(indices) : batcher.Test(indices);
        });
        double loop_ms = 0;
        if (!channels_last) {
          loop_ms = MedianMs(std::max(5, iters / 5), device, [&] {
            torch::NoGradGuard no_grad;
            return PerSample(d, cpu_indices, o, train);
          });
        }
        body += absl::StrFormat("| %d px | %s | %s | %.3f | %s | %s |\n", side,
                                train ? "train (crop+flip)" : "test",
                                channels_last ? "channels_last" : "contiguous", ms,
                                channels_last ? "-" : absl::StrFormat("%.3f", loop_ms),
                                channels_last ? "-" : absl::StrFormat("%.1fx", loop_ms / ms));
      }
    }
  }
  std::cout << body;
  if (record) {
    if (!AppendResults(ResultsPath(), "Data batches (worker/data)", CommandLine(argc, argv),
                       body)) {
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace quartet::bench

int main(int argc, char** argv) { return quartet::bench::Main(argc, argv); }
