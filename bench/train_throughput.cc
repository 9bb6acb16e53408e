// bench/train_throughput: training throughput of one fixed MoE4 (AirNet + ResNet + ShuffleNet +
// MobileNetV3, DENSE router, batch 32) in Quartet's trainer against the same model and recipe in
// PyTorch eager (bench/train_throughput.py, Debian's python3-torch: the same kernels), side by side
// in one run, at 32 px and at 256 px (CIFAR-10-shaped data upsampled as the published pipeline
// did).
//
// PyTorch is fed two ways: the published pipeline's way (PIL images, torchvision per-sample
// transforms, a DataLoader with one worker) and pre-batched tensors. Quartet builds its batches on
// the device (pad-crop, flip, resize, normalise) inside the timed steps, and is measured twice: as
// it trains (the gate and experts concurrently, one thread each) and with the experts one after
// another on all threads (--parallel_experts=false), which is how PyTorch eager runs them.
//
//   ./build/bench/train_throughput [--sizes=32,256] [--record]
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "worker/train/torch_trainer.h"

ABSL_FLAG(std::string, sizes, "32,256", "Input sides to measure.");
ABSL_FLAG(int, steps_32, 20, "Timed steps at sides <= 64.");
ABSL_FLAG(int, steps_large, 4, "Timed steps at larger sides.");
ABSL_FLAG(int, warmup, 2, "Untimed steps first.");
ABSL_FLAG(int, repeats, 3, "Runs of each configuration, interleaved; the table reports medians.");
ABSL_FLAG(int, threads, 0, "Intra-op threads for both sides (0 = all cores).");
ABSL_FLAG(std::string, python, "/usr/bin/python3", "Python with Debian's torch and torchvision.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");

namespace {

using quartet::worker::train::TorchTrainer;
using quartet::worker::train::TrainCallbacks;
using quartet::worker::train::TrainProgress;

const std::array<const char*, 4> kFamilies = {"AirNet", "ResNet", "ShuffleNet", "MobileNetV3"};

struct Measurement {
  double samples_per_second = 0;
  int64_t parameters = 0;
};

// Quartet's trainer: steady-state samples/s between the end of the warm-up and the last step.
absl::StatusOr<Measurement> MeasureQuartet(int size, int steps, int warmup, int threads,
                                           bool parallel_experts) {
  TorchTrainer::Options o;
  o.threads = threads;
  o.parallel_experts = parallel_experts;
  o.progress_every_steps = 1;
  auto trainer = TorchTrainer::Create(o);
  if (!trainer.ok()) return trainer.status();
  quartet::v1::CandidateSpec spec;
  for (const char* f : kFamilies) spec.mutable_combination()->add_families(f);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit((steps + warmup) * 32);
  spec.mutable_data()->set_test_limit(32);
  auto* r = spec.mutable_recipe();
  r->set_batch_size(32);
  r->set_input_size(size);
  r->set_seed(0);
  std::chrono::steady_clock::time_point t0, t1;
  TrainCallbacks cb;
  cb.on_progress = [&](const TrainProgress& p) {
    if (p.step == warmup) t0 = std::chrono::steady_clock::now();
    if (p.step == warmup + steps) t1 = std::chrono::steady_clock::now();
  };
  auto result = (*trainer)->Train(spec, cb);
  if (!result.ok()) return result.status();
  Measurement m;
  m.samples_per_second = steps * 32 / std::chrono::duration<double>(t1 - t0).count();
  m.parameters = result->parameter_count();
  return m;
}

absl::StatusOr<Measurement> MeasurePython(const std::string& mode, int size, int steps, int warmup,
                                          int threads) {
  const std::string cmd = absl::StrFormat(
      "%s %s/bench/train_throughput.py --mode=%s --size=%d --steps=%d --warmup=%d --threads=%d",
      absl::GetFlag(FLAGS_python), QUARTET_SOURCE_DIR, mode, size, steps, warmup, threads);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  while (fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = pclose(pipe);
  if (status != 0) return absl::InternalError(absl::StrCat(cmd, " failed: ", out));
  auto j = nlohmann::json::parse(out.substr(out.rfind('{')));
  return Measurement{j["samples_per_second"].get<double>(), j["parameters"].get<int64_t>()};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// "median (min-max)".
std::string Cell(const std::vector<double>& v) {
  return absl::StrFormat("%.1f (%.1f-%.1f)", Median(v), *std::min_element(v.begin(), v.end()),
                         *std::max_element(v.begin(), v.end()));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  (void)quartet::common::InitLogging("bench", "warn");
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads == 0) threads = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int warmup = absl::GetFlag(FLAGS_warmup);

  std::string table =
      "| input | Quartet (samples/s) | Quartet, experts in sequence (samples/s) | PyTorch "
      "pre-batched (samples/s) | Quartet / pre-batched | PyTorch published way (samples/s) | "
      "Quartet / published |\n|---|---|---|---|---|---|---|\n";
  int64_t params_cpp = 0, params_py = 0;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    int size = 0;
    if (!absl::SimpleAtoi(s, &size) || size < 8) {
      std::cerr << "--sizes: bad side '" << s << "'\n";
      return 2;
    }
    const int steps = size <= 64 ? absl::GetFlag(FLAGS_steps_32) : absl::GetFlag(FLAGS_steps_large);
    // Interleaved repeats (Quartet, pre-batched, published, Quartet, ...) so drift on a shared
    // machine hits every configuration alike; medians reported, with the range.
    std::vector<double> qs, seqs, pres, pubs;
    absl::StatusOr<Measurement> q, seq, pre, pub;
    for (int rep = 0; rep < absl::GetFlag(FLAGS_repeats); ++rep) {
      std::cerr << "measuring " << size << " px, run " << rep + 1
                << ": Quartet, Quartet with experts in sequence, PyTorch pre-batched, "
                << "PyTorch published way" << std::endl;
      q = MeasureQuartet(size, steps, warmup, threads, /*parallel_experts=*/true);
      seq = MeasureQuartet(size, steps, warmup, threads, /*parallel_experts=*/false);
      pre = MeasurePython("prebatched", size, steps, warmup, threads);
      pub = MeasurePython("published", size, steps, warmup, threads);
      for (const auto* m : {&q, &seq, &pre, &pub}) {
        if (!m->ok()) {
          std::cerr << m->status() << "\n";
          return 1;
        }
      }
      qs.push_back(q->samples_per_second);
      seqs.push_back(seq->samples_per_second);
      pres.push_back(pre->samples_per_second);
      pubs.push_back(pub->samples_per_second);
    }
    params_cpp = q->parameters;
    params_py = pre->parameters;
    const double mq = Median(qs), mpre = Median(pres), mpub = Median(pubs);
    absl::StrAppendFormat(&table, "| %d px | %s | %s | %s | %.2fx | %s | %.2fx |\n", size, Cell(qs),
                          Cell(seqs), Cell(pres), mq / mpre, Cell(pubs), mq / mpub);
  }
  const std::string notes = absl::StrFormat(
      "\nMoE4 of AirNet + ResNet + ShuffleNet + MobileNetV3, DENSE router, batch 32, AdamW (gate "
      "2x lr), warm-up + cosine per step, label smoothing 0.1, mixup 0.2, clip 1.0; CPU, %d "
      "threads on every side (Quartet runs its gate and experts concurrently, each task "
      "single-threaded, unless 'in sequence'); %d untimed warm-up steps, then %d timed steps at 32 "
      "px and %d at "
      "larger sides; %d interleaved runs of each, median (min-max). Parameters: Quartet %d, "
      "PyTorch %d. The published way uses torchvision "
      "transforms on PIL images in a DataLoader with one worker process.\n",
      threads, warmup, absl::GetFlag(FLAGS_steps_32), absl::GetFlag(FLAGS_steps_large),
      absl::GetFlag(FLAGS_repeats), params_cpp, params_py);
  std::cout << table << notes;
  if (absl::GetFlag(FLAGS_record)) {
    if (!quartet::bench::AppendResults(quartet::bench::ResultsPath(),
                                       "Training throughput: Quartet vs PyTorch eager (CPU)",
                                       quartet::bench::CommandLine(argc, argv), table + notes)) {
      return 1;
    }
  }
  return 0;
}
