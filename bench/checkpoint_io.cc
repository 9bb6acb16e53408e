// bench/checkpoint_io: checkpoint and export cost of the benchmark MoE4 (AirNet + ResNet +
// ShuffleNet + MobileNetV3, DENSE router, CIFAR-10 shape, AdamW after one step so its moments
// exist): serialising the checkpoint, writing it to the artifact store (temporary file, fsync,
// rename, directory fsync), reading it back with its SHA-256 check, restoring it into a fresh
// network and optimiser, and the TorchScript export (trace, check, save). Sizes against the fp32
// parameter bytes. Medians of --repeats.
//
//   ./build/bench/checkpoint_io [--dir=/var/tmp/quartet-checkpoint-io] [--repeats=5] [--record]
#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "common/artifacts.h"
#include "common/recipe.h"
#include "worker/moe/network.h"
#include "worker/train/checkpoint.h"
#include "worker/train/export.h"

ABSL_FLAG(std::string, dir, "/var/tmp/quartet-checkpoint-io",
          "Artifact root to write to (removed afterwards).");
ABSL_FLAG(int, repeats, 5, "Measurements of each operation; the table reports medians.");
ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");

namespace {

using quartet::worker::train::CheckpointParts;
using quartet::worker::train::CheckpointPosition;

constexpr int64_t kSide = 32;
constexpr int64_t kClasses = 10;
constexpr int64_t kBatch = 8;
const std::vector<std::string> kFamilies = {"AirNet", "ResNet", "ShuffleNet", "MobileNetV3"};

struct Model {
  std::unique_ptr<quartet::worker::moe::Network> net;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  CheckpointParts Parts() {
    CheckpointParts p;
    p.module = &net->module();
    p.optimizer = optimizer.get();
    p.generators.push_back(at::detail::getDefaultCPUGenerator());
    for (const auto& g : net->Generators()) p.generators.push_back(g);
    return p;
  }
};

// The benchmark MoE4 and AdamW after one training step.
Model MakeModel() {
  quartet::v1::TrainingRecipe proto;
  proto.set_router(quartet::v1::ROUTER_DENSE);
  quartet::common::Recipe recipe = *quartet::common::ResolveRecipe(proto);
  quartet::worker::moe::NetworkOptions no;
  no.families = kFamilies;
  no.input_size = kSide;
  no.num_classes = kClasses;
  Model m;
  m.net = std::move(*quartet::worker::moe::BuildNetwork(recipe, no));
  m.optimizer = std::make_unique<torch::optim::AdamW>(m.net->module().parameters(),
                                                      torch::optim::AdamWOptions(1e-3));
  m.net->module().train();
  const torch::Tensor x = torch::randn({kBatch, 3, kSide, kSide});
  const torch::Tensor y = torch::randint(0, kClasses, {kBatch});
  auto out = m.net->Forward(x);
  m.net->Backward(torch::nn::functional::cross_entropy(out.logits, y));
  m.optimizer->step();
  return m;
}

// Wall and CPU (user + system, all threads) seconds of each run of one operation.
struct Timing {
  std::vector<double> wall, cpu;
  void Add(const std::function<void()>& f) {
    const double cpu0 = CpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    f();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    cpu.push_back(CpuSeconds() - cpu0);
  }
  static double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  static double CpuSeconds() {
    struct rusage u {};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  // "wall s (CPU s)" and the wall rate over `bytes`.
  std::string Text() const { return absl::StrFormat("%.3f (%.3f)", Median(wall), Median(cpu)); }
  std::string Rate(size_t bytes) const {
    return absl::StrFormat("%.0f MB/s", bytes / 1e6 / Median(wall));
  }
};

template <typename T>
T Check(absl::StatusOr<T> v) {
  if (!v.ok()) {
    std::cerr << "checkpoint_io: " << v.status() << "\n";
    std::exit(1);
  }
  return *std::move(v);
}

int Run(int argc, char** argv) {
  torch::set_num_threads(absl::GetFlag(FLAGS_threads));
  torch::manual_seed(0);
  Model a = MakeModel();
  Model b = MakeModel();  // restored into
  const quartet::common::ArtifactStore store =
      Check(quartet::common::ArtifactStore::Open(absl::GetFlag(FLAGS_dir)));
  if (auto s = store.CheckWritable(); !s.ok()) return std::cerr << s << "\n", 1;
  quartet::v1::CandidateSpec spec;
  CheckpointPosition position;
  position.epoch = 1;
  position.step = 1;
  std::string bytes, read_back, exported;
  quartet::v1::Artifact artifact;
  quartet::worker::train::ExportInfo info;
  info.input_size = kSide;
  info.channels = 3;
  info.num_classes = kClasses;
  info.architecture = a.net->Describe();
  const torch::Tensor example = torch::randn({kBatch, 3, kSide, kSide});
  const torch::Tensor check = torch::randn({4 * kBatch, 3, kSide, kSide});
  // The operations in turn, --repeats times, so that a slow spell of a shared machine is spread
  // over all of them rather than falling on one.
  Timing serialise, write, read, hash, restore, export_t;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    serialise.Add(
        [&] { bytes = Check(quartet::worker::train::SaveCheckpoint(spec, position, a.Parts())); });
    write.Add([&] {
      artifact = Check(store.Write("campaign-0/candidate-0/epoch-1-attempt-1.ckpt", bytes));
    });
    read.Add([&] { read_back = Check(quartet::common::ReadArtifact(artifact)); });
    hash.Add([&] { (void)quartet::common::Sha256Hex(bytes); });
    restore.Add([&] { Check(quartet::worker::train::LoadCheckpoint(read_back, spec, b.Parts())); });
    export_t.Add([&] {
      exported = Check(quartet::worker::train::ExportTorchScript(*a.net, example, check, info));
    });
  }
  int64_t params = 0;
  for (const auto& p : a.net->module().parameters()) params += p.numel();
  std::filesystem::remove_all(store.directory());

  const double mb = 1e6;
  std::string table = absl::StrFormat(
      "Benchmark MoE4 (%s, DENSE, %d px, %d classes), AdamW after one step, %d threads, "
      "artifact root %s; medians of %d interleaved runs; times are wall seconds (CPU seconds of "
      "all threads), rates are over the checkpoint's bytes.\n\n"
      "| what | size | time, s | rate |\n|---|---|---|---|\n"
      "| fp32 parameters | %.1f MB (%d) | | |\n"
      "| checkpoint: serialise | %.1f MB (%.2fx parameters) | %s | %s |\n"
      "| checkpoint: write (tmp, fsync, rename, dir fsync) | | %s | %s |\n"
      "| checkpoint: read + SHA-256 check | | %s | %s |\n"
      "| of which SHA-256 | | %s | %s |\n"
      "| checkpoint: restore into a fresh network + optimiser | | %s | %s |\n"
      "| TorchScript export: trace + check on 31 images + save | %.1f MB (%.2fx parameters) | %s "
      "| |\n",
      absl::StrJoin(kFamilies, " + "), kSide, kClasses, absl::GetFlag(FLAGS_threads),
      absl::GetFlag(FLAGS_dir), absl::GetFlag(FLAGS_repeats), params * 4 / mb, params,
      bytes.size() / mb, bytes.size() / (params * 4.0), serialise.Text(),
      serialise.Rate(bytes.size()), write.Text(), write.Rate(bytes.size()), read.Text(),
      read.Rate(bytes.size()), hash.Text(), hash.Rate(bytes.size()), restore.Text(),
      restore.Rate(bytes.size()), exported.size() / mb, exported.size() / (params * 4.0),
      export_t.Text());
  std::cout << table;
  if (absl::GetFlag(FLAGS_record)) {
    const std::string command = quartet::bench::CommandLine(argc, argv);
    if (!quartet::bench::AppendResults(quartet::bench::ResultsPath(),
                                       "Checkpoint write/read and TorchScript export", command,
                                       table)) {
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run(argc, argv);
}
