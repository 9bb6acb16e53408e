// bench/slots_scaling: candidates per hour of one process training N candidates at once, the way
// quartet-worker --slots=N does (one TorchTrainer per slot on a thread of its own: its own threads
// on CPU, its own CUDA stream on a GPU), for each N of --slots. Every slot trains a whole candidate
// (one epoch of --train_images synthetic CIFAR-10-shaped images at --size px, batch 32, test
// evaluation included) of the benchmark MoE4 (AirNet + ResNet + ShuffleNet + MobileNetV3, dense);
// the slots' seeds differ. Reports, per N, the wall time until every slot finished, candidates per
// hour and aggregate training samples per second, and the speed-up over one slot. No coordinator:
// this measures the trainer side of slots (bench/slots_throughput.sh measures whole campaigns).
//
//   ./build/bench/slots_scaling [--device=cuda] [--slots=1,2,4,8] [--size=256] [--json=FILE]
//                               [--record]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "worker/train/torch_trainer.h"

ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, slots, "1,2,4,8", "Candidates trained at once, one measurement each.");
ABSL_FLAG(int, size, 32, "Input side in px (the published protocol: 256).");
ABSL_FLAG(int, train_images, 2048, "Training images per candidate (one epoch).");
ABSL_FLAG(int, test_images, 256, "Test images per candidate.");
ABSL_FLAG(int, threads, 0,
          "CPU threads per slot (0 = the online CPUs shared among the slots, at least 1).");
ABSL_FLAG(std::string, json, "", "Also write the figures as JSON to this file.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");

namespace {

using quartet::worker::train::TorchTrainer;

constexpr const char* kFamilies[] = {"AirNet", "ResNet", "ShuffleNet", "MobileNetV3"};
constexpr int kBatch = 32;
constexpr double kSecondsPerHour = 3600;
constexpr int64_t kWarmUpSteps = 2;

struct Level {
  int slots = 0;
  double wall_seconds = 0;
  double candidates_per_hour = 0;
  double samples_per_second = 0;
  double mean_test_accuracy = 0;
};

quartet::v1::CandidateSpec Spec(int slot) {
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(slot + 1);
  for (const char* f : kFamilies) spec.mutable_combination()->add_families(f);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit(absl::GetFlag(FLAGS_train_images));
  spec.mutable_data()->set_test_limit(absl::GetFlag(FLAGS_test_images));
  auto* r = spec.mutable_recipe();
  r->set_batch_size(kBatch);
  r->set_input_size(absl::GetFlag(FLAGS_size));
  r->set_epochs(1);
  r->set_seed(slot);
  return spec;
}

// Loads the dataset into the process's shared cache and warms the allocator and kernels: a few
// steps of one candidate, untimed, so that the first level does not pay what later ones reuse.
absl::Status WarmUp() {
  TorchTrainer::Options o;
  o.device = absl::GetFlag(FLAGS_device);
  o.progress_every_steps = 1;
  auto trainer = TorchTrainer::Create(o);
  if (!trainer.ok()) return trainer.status();
  int64_t steps = 0;
  quartet::worker::train::TrainCallbacks cb;
  cb.on_progress = [&](const quartet::worker::train::TrainProgress& p) { steps = p.step; };
  cb.should_stop = [&] { return steps >= kWarmUpSteps; };
  auto result = (*trainer)->Train(Spec(0), cb);
  if (result.ok() || absl::IsCancelled(result.status())) return absl::OkStatus();
  return result.status();
}

// Trains `n` candidates at once, each on a trainer and thread of its own.
absl::StatusOr<Level> Measure(int n) {
  const int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  TorchTrainer::Options o;
  o.device = absl::GetFlag(FLAGS_device);
  o.threads =
      absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : std::max(1, cpus / n);
  std::vector<std::unique_ptr<TorchTrainer>> trainers;
  for (int k = 0; k < n; ++k) {
    auto t = TorchTrainer::Create(o);
    if (!t.ok()) return t.status();
    trainers.push_back(std::move(*t));
  }
  std::vector<absl::StatusOr<quartet::v1::Result>> results(n);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int k = 0; k < n; ++k) {
    threads.emplace_back([&, k] { results[k] = trainers[k]->Train(Spec(k), {}); });
  }
  for (auto& t : threads) t.join();
  Level level;
  level.slots = n;
  level.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& r : results) {
    if (!r.ok()) return r.status();
    level.mean_test_accuracy += r->test_accuracy() / n;
  }
  level.candidates_per_hour = n * kSecondsPerHour / level.wall_seconds;
  level.samples_per_second =
      static_cast<double>(n) * absl::GetFlag(FLAGS_train_images) / level.wall_seconds;
  return level;
}

std::string Table(const std::vector<Level>& levels) {
  std::string t =
      "| slots | wall time s | candidates per hour | training samples/s (all slots) | speed-up "
      "over 1 slot |\n|---|---|---|---|---|\n";
  for (const Level& l : levels) {
    absl::StrAppend(&t, absl::StrFormat("| %d | %.1f | %.0f | %.1f | %.2fx |\n", l.slots,
                                        l.wall_seconds, l.candidates_per_hour, l.samples_per_second,
                                        l.candidates_per_hour / levels[0].candidates_per_hour));
  }
  return t;
}

void WriteJson(const std::string& path, const std::vector<Level>& levels) {
  nlohmann::json j;
  j["device"] = absl::GetFlag(FLAGS_device);
  j["size"] = absl::GetFlag(FLAGS_size);
  j["train_images"] = absl::GetFlag(FLAGS_train_images);
  j["families"] = std::vector<std::string>(std::begin(kFamilies), std::end(kFamilies));
  for (const Level& l : levels) {
    j["levels"].push_back({{"slots", l.slots},
                           {"wall_seconds", l.wall_seconds},
                           {"candidates_per_hour", l.candidates_per_hour},
                           {"samples_per_second", l.samples_per_second},
                           {"mean_test_accuracy", l.mean_test_accuracy}});
  }
  std::ofstream(path) << j.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  (void)quartet::common::InitLogging("bench", "warn");
  if (auto s = WarmUp(); !s.ok()) {
    std::cerr << "slots_scaling: warm-up: " << s << "\n";
    return 1;
  }
  std::vector<Level> levels;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_slots), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1) {
      std::cerr << "slots_scaling: --slots: '" << part << "' is not a positive count\n";
      return 2;
    }
    auto level = Measure(n);
    if (!level.ok()) {
      std::cerr << "slots_scaling: " << n << " slot(s): " << level.status() << "\n";
      return 1;
    }
    levels.push_back(*level);
    std::printf("%d slot(s): %.1f s, %.0f candidates/h\n", n, level->wall_seconds,
                level->candidates_per_hour);
  }
  const std::string table = Table(levels);
  std::cout << table;
  if (!absl::GetFlag(FLAGS_json).empty()) WriteJson(absl::GetFlag(FLAGS_json), levels);
  if (absl::GetFlag(FLAGS_record)) {
    const std::string body = absl::StrCat(
        table, "\nBenchmark MoE4 (", absl::StrJoin(kFamilies, " + "), ", dense), one epoch of ",
        absl::GetFlag(FLAGS_train_images), " synthetic images at ", absl::GetFlag(FLAGS_size),
        " px, batch ", kBatch, ", on ", absl::GetFlag(FLAGS_device),
        "; each slot a TorchTrainer on a thread of its own, as quartet-worker --slots runs "
        "them.\n");
    if (!quartet::bench::AppendResults(quartet::bench::ResultsPath(),
                                       "Slots scaling: candidates trained at once in one process",
                                       quartet::bench::CommandLine(argc, argv), body)) {
      return 1;
    }
  }
  return 0;
}
