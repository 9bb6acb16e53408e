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
// On a GPU every side runs on --device (bench/gpu/run.sh: the published protocol, 50,000 images at
// 256 px, is --sizes=256 --steps_large=1561 --warmup=2 --repeats=1); --sides picks the sides and
// --json writes the figures for a script.
//
//   ./build/bench/train_throughput [--sizes=32,256] [--record]
//   ./build/bench/train_throughput --device=cuda:0 --python=python3 --sizes=256 \
//       --sides=quartet,prebatched,published --json=throughput.json
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
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
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda:N, for every side.");
ABSL_FLAG(std::string, sides, "quartet,sequential,prebatched,published",
          "Sides to measure: quartet, sequential (Quartet, experts in sequence), prebatched, "
          "published (PyTorch).");
ABSL_FLAG(std::string, json, "", "Also write every figure to this JSON file.");
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

// The sides, in table order: Quartet as it trains, Quartet with the experts one after another,
// PyTorch pre-batched, PyTorch the published way.
enum class Side { kQuartet, kSequential, kPrebatched, kPublished };
constexpr std::array<Side, 4> kAllSides = {Side::kQuartet, Side::kSequential, Side::kPrebatched,
                                           Side::kPublished};

const char* SideName(Side side) {
  switch (side) {
    case Side::kQuartet:
      return "quartet";
    case Side::kSequential:
      return "sequential";
    case Side::kPrebatched:
      return "prebatched";
    case Side::kPublished:
      return "published";
  }
  return "";
}

// What one run measures, the same for every side.
struct Setup {
  int size = 32;
  int steps = 20;
  int warmup = 2;
  int threads = 1;
  std::string device = "cpu";
};

// Quartet's trainer: steady-state samples/s between the end of the warm-up and the last step.
absl::StatusOr<Measurement> MeasureQuartet(const Setup& setup, bool parallel_experts) {
  TorchTrainer::Options o;
  o.device = setup.device;
  o.threads = setup.threads;
  o.parallel_experts = parallel_experts;
  o.progress_every_steps = 1;
  auto trainer = TorchTrainer::Create(o);
  if (!trainer.ok()) return trainer.status();
  quartet::v1::CandidateSpec spec;
  for (const char* f : kFamilies) spec.mutable_combination()->add_families(f);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit((setup.steps + setup.warmup) * 32);
  spec.mutable_data()->set_test_limit(32);
  auto* r = spec.mutable_recipe();
  r->set_batch_size(32);
  r->set_input_size(setup.size);
  r->set_seed(0);
  std::chrono::steady_clock::time_point t0, t1;
  TrainCallbacks cb;
  cb.on_progress = [&](const TrainProgress& p) {
    if (p.step == setup.warmup) t0 = std::chrono::steady_clock::now();
    if (p.step == setup.warmup + setup.steps) t1 = std::chrono::steady_clock::now();
  };
  auto result = (*trainer)->Train(spec, cb);
  if (!result.ok()) return result.status();
  Measurement m;
  m.samples_per_second = setup.steps * 32 / std::chrono::duration<double>(t1 - t0).count();
  m.parameters = result->parameter_count();
  return m;
}

absl::StatusOr<Measurement> MeasurePython(const std::string& mode, const Setup& setup) {
  const std::string cmd = absl::StrFormat(
      "%s %s/bench/train_throughput.py --mode=%s --size=%d --steps=%d --warmup=%d --threads=%d "
      "--device=%s",
      absl::GetFlag(FLAGS_python), QUARTET_SOURCE_DIR, mode, setup.size, setup.steps, setup.warmup,
      setup.threads, setup.device);
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

absl::StatusOr<Measurement> Measure(Side side, const Setup& setup) {
  switch (side) {
    case Side::kQuartet:
      return MeasureQuartet(setup, /*parallel_experts=*/true);
    case Side::kSequential:
      return MeasureQuartet(setup, /*parallel_experts=*/false);
    case Side::kPrebatched:
      return MeasurePython("prebatched", setup);
    case Side::kPublished:
      return MeasurePython("published", setup);
  }
  return absl::InvalidArgumentError("unknown side");
}

absl::StatusOr<std::vector<Side>> ParseSides(absl::string_view list) {
  std::vector<Side> sides;
  for (Side side : kAllSides) {
    for (absl::string_view name : absl::StrSplit(list, ',')) {
      if (name == SideName(side)) sides.push_back(side);
    }
  }
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    bool known = false;
    for (Side side : kAllSides) known = known || name == SideName(side);
    if (!known)
      return absl::InvalidArgumentError(absl::StrCat("--sides: unknown side '", name, "'"));
  }
  if (sides.empty()) return absl::InvalidArgumentError("--sides: none");
  return sides;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// "median (min-max)", or "-" for a side not measured.
std::string Cell(const std::vector<double>& v) {
  if (v.empty()) return "-";
  return absl::StrFormat("%.1f (%.1f-%.1f)", Median(v), *std::min_element(v.begin(), v.end()),
                         *std::max_element(v.begin(), v.end()));
}

std::string Ratio(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty()) return "-";
  return absl::StrFormat("%.2fx", Median(a) / Median(b));
}

// One input side: every run of every side, and the parameter counts seen.
struct SizeResult {
  Setup setup;
  std::map<Side, std::vector<double>> runs;
  int64_t params_cpp = 0, params_py = 0;
};

// Interleaved repeats (each side once, then again, ...) so drift on a shared machine hits every
// side alike.
absl::StatusOr<SizeResult> MeasureSize(const Setup& setup, const std::vector<Side>& sides,
                                       int repeats) {
  SizeResult out;
  out.setup = setup;
  for (int rep = 0; rep < repeats; ++rep) {
    std::cerr << "measuring " << setup.size << " px on " << setup.device << ", run " << rep + 1
              << ":";
    for (Side side : sides) std::cerr << " " << SideName(side);
    std::cerr << std::endl;
    for (Side side : sides) {
      auto m = Measure(side, setup);
      if (!m.ok()) return m.status();
      out.runs[side].push_back(m->samples_per_second);
      const bool python = side == Side::kPrebatched || side == Side::kPublished;
      (python ? out.params_py : out.params_cpp) = m->parameters;
    }
  }
  return out;
}

std::string TableRow(const SizeResult& r) {
  auto runs = [&](Side side) {
    auto it = r.runs.find(side);
    return it == r.runs.end() ? std::vector<double>() : it->second;
  };
  const auto q = runs(Side::kQuartet), pre = runs(Side::kPrebatched), pub = runs(Side::kPublished);
  return absl::StrFormat("| %d px | %s | %s | %s | %s | %s | %s |\n", r.setup.size, Cell(q),
                         Cell(runs(Side::kSequential)), Cell(pre), Ratio(q, pre), Cell(pub),
                         Ratio(q, pub));
}

nlohmann::json ToJson(const std::vector<SizeResult>& results) {
  nlohmann::json j;
  j["device"] = absl::GetFlag(FLAGS_device);
  j["batch"] = 32;
  j["families"] = kFamilies;
  j["sizes"] = nlohmann::json::array();
  for (const SizeResult& r : results) {
    nlohmann::json s;
    s["size"] = r.setup.size;
    s["steps"] = r.setup.steps;
    s["warmup"] = r.setup.warmup;
    s["threads"] = r.setup.threads;
    s["parameters"] = {{"quartet", r.params_cpp}, {"pytorch", r.params_py}};
    for (const auto& [side, v] : r.runs) {
      s["samples_per_second"][SideName(side)] = {{"median", Median(v)},
                                                 {"min", *std::min_element(v.begin(), v.end())},
                                                 {"max", *std::max_element(v.begin(), v.end())},
                                                 {"runs", v}};
    }
    j["sizes"].push_back(s);
  }
  return j;
}

// The figures of every size; exits the process on a bad flag or a failed measurement.
std::vector<SizeResult> MeasureAll(const std::vector<Side>& sides, int threads) {
  std::vector<SizeResult> results;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    Setup setup;
    if (!absl::SimpleAtoi(s, &setup.size) || setup.size < 8) {
      std::cerr << "--sizes: bad side '" << s << "'\n";
      std::exit(2);
    }
    setup.steps =
        setup.size <= 64 ? absl::GetFlag(FLAGS_steps_32) : absl::GetFlag(FLAGS_steps_large);
    setup.warmup = absl::GetFlag(FLAGS_warmup);
    setup.threads = threads;
    setup.device = absl::GetFlag(FLAGS_device);
    auto r = MeasureSize(setup, sides, absl::GetFlag(FLAGS_repeats));
    if (!r.ok()) {
      std::cerr << r.status() << "\n";
      std::exit(1);
    }
    results.push_back(*std::move(r));
  }
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  (void)quartet::common::InitLogging("bench", "warn");
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads == 0) threads = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  auto sides = ParseSides(absl::GetFlag(FLAGS_sides));
  if (!sides.ok()) {
    std::cerr << sides.status().message() << "\n";
    return 2;
  }
  const std::vector<SizeResult> results = MeasureAll(*sides, threads);

  std::string table =
      "| input | Quartet (samples/s) | Quartet, experts in sequence (samples/s) | PyTorch "
      "pre-batched (samples/s) | Quartet / pre-batched | PyTorch published way (samples/s) | "
      "Quartet / published |\n|---|---|---|---|---|---|---|\n";
  for (const SizeResult& r : results) table += TableRow(r);
  const std::string notes = absl::StrFormat(
      "\nMoE4 of AirNet + ResNet + ShuffleNet + MobileNetV3, DENSE router, batch 32, AdamW (gate "
      "2x lr), warm-up + cosine per step, label smoothing 0.1, mixup 0.2, clip 1.0; %s, %d "
      "threads on every side (on CPU Quartet runs its gate and experts concurrently, each task "
      "single-threaded, unless 'in sequence'); %d untimed warm-up steps, then %d timed steps at 32 "
      "px and %d at "
      "larger sides; %d interleaved runs of each, median (min-max). Parameters: Quartet %d, "
      "PyTorch %d. The published way uses torchvision "
      "transforms on PIL images in a DataLoader with one worker process.\n",
      absl::GetFlag(FLAGS_device), threads, absl::GetFlag(FLAGS_warmup),
      absl::GetFlag(FLAGS_steps_32), absl::GetFlag(FLAGS_steps_large), absl::GetFlag(FLAGS_repeats),
      results.back().params_cpp, results.back().params_py);
  std::cout << table << notes;
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_json)) << ToJson(results).dump(2) << "\n";
  }
  if (absl::GetFlag(FLAGS_record)) {
    if (!quartet::bench::AppendResults(
            quartet::bench::ResultsPath(),
            absl::StrCat("Training throughput: Quartet vs PyTorch eager (",
                         absl::GetFlag(FLAGS_device) == "cpu" ? "CPU" : absl::GetFlag(FLAGS_device),
                         ")"),
            quartet::bench::CommandLine(argc, argv), table + notes)) {
      return 1;
    }
  }
  return 0;
}
