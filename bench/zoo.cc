// bench/zoo: per family of the zoo, parameters, forward+backward milliseconds per batch of 32 at
// 32 px (at the family's minimum size where larger), and peak memory. Each family runs in its own
// child process so its peak resident set (CPU) is its own; the table also gives the peak of a child
// that only starts LibTorch, to subtract.
//
//   ./build/bench/zoo [--all_variants] [--iterations=3] [--record]
//   ./build/bench/zoo --device=cuda:0 --json=zoo.json      (bench/gpu/run.sh)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "common/catalog.h"
#include "nlohmann/json.hpp"
#include "worker/models/registry.h"

ABSL_FLAG(bool, all_variants, false, "Every variant, not only each family's default.");
ABSL_FLAG(int, iterations, 3, "Timed forward+backward passes per family (after one warm-up).");
ABSL_FLAG(int, batch, 32, "Batch size.");
ABSL_FLAG(int, threads, 0, "Intra-op threads (0 = all cores).");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda:N (timing only).");
ABSL_FLAG(std::string, families, "", "Only these families, comma-separated (default: all).");
ABSL_FLAG(std::string, json, "", "Also write every figure to this JSON file.");
ABSL_FLAG(std::string, one, "", "Internal: measure this model in this process and print JSON.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");

namespace {

using quartet::common::FamilyCatalog;

int MeasureOne(const std::string& name) {
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads > 0) torch::set_num_threads(threads);
  nlohmann::json out;
  out["model"] = name;
  if (name == "-") {  // baseline: LibTorch started, nothing built
    torch::Tensor t = torch::ones({1});
    out["sum"] = t.sum().item<double>();
    std::cout << out.dump() << std::endl;
    return 0;
  }
  const auto& v = *FamilyCatalog::Get().Resolve(name)->variant;
  const int size = std::max(32, v.min_input_size);
  const torch::Device device(absl::GetFlag(FLAGS_device));
  quartet::worker::models::ModelOptions o;
  o.input_size = size;
  auto model = quartet::worker::models::BuildModel(name, o);
  if (!model.ok()) {
    std::cerr << model.status() << "\n";
    return 1;
  }
  (*model)->to(device);
  (*model)->train();
  const int batch = absl::GetFlag(FLAGS_batch);
  torch::Tensor x = torch::randn({batch, 3, size, size}, device);
  torch::Tensor y =
      torch::randint(0, 10, {batch}, torch::TensorOptions(torch::kLong).device(device));
  auto step = [&] {
    (*model)->zero_grad();
    torch::nn::functional::cross_entropy((*model)->forward(x), y).backward();
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  step();  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_iterations); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  out["size"] = size;
  out["parameters"] = quartet::worker::models::CountParameters(**model);
  out["ms_median"] = ms[ms.size() / 2];
  out["ms_min"] = ms.front();
  std::cout << out.dump() << std::endl;
  return 0;
}

// Runs this binary with --one=name; returns its JSON and peak RSS in MiB.
bool RunChild(const std::string& self, const std::string& name, nlohmann::json* result,
              double* peak_mib) {
  int fd[2];
  if (pipe(fd) != 0) return false;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], STDOUT_FILENO);
    close(fd[0]);
    close(fd[1]);
    const std::string one = "--one=" + name;
    const std::string it = absl::StrCat("--iterations=", absl::GetFlag(FLAGS_iterations));
    const std::string bt = absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch));
    const std::string th = absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads));
    const std::string dv = absl::StrCat("--device=", absl::GetFlag(FLAGS_device));
    execl(self.c_str(), self.c_str(), one.c_str(), it.c_str(), bt.c_str(), th.c_str(), dv.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fd[1]);
  std::string out;
  std::array<char, 4096> buf;
  ssize_t n;
  while ((n = read(fd[0], buf.data(), buf.size())) > 0) out.append(buf.data(), n);
  close(fd[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.find('{') == std::string::npos) {
    return false;
  }
  *result = nlohmann::json::parse(out.substr(out.rfind('{')));
  *peak_mib = usage.ru_maxrss / 1024.0;
  return true;
}

// One row of the table: the child's JSON with the family and its peak resident set.
struct Row {
  std::string family;
  nlohmann::json result;
  double peak_mib = 0;
};

void WriteJson(const std::vector<Row>& rows, double base_mib) {
  nlohmann::json j;
  j["device"] = absl::GetFlag(FLAGS_device);
  j["batch"] = absl::GetFlag(FLAGS_batch);
  j["iterations"] = absl::GetFlag(FLAGS_iterations);
  j["baseline_peak_rss_mib"] = base_mib;
  j["models"] = nlohmann::json::array();
  for (const Row& r : rows) j["models"].push_back(r.result);
  std::ofstream(absl::GetFlag(FLAGS_json)) << j.dump(2) << "\n";
}

// Measures each family's default variant (every variant with --all_variants), restricted to
// --families; false when a child fails. --json is rewritten after every family, so a run cut
// short still leaves what it measured.
bool MeasureFamilies(const std::string& self, double base_mib, std::vector<Row>* rows) {
  std::set<std::string> only;
  for (absl::string_view f :
       absl::StrSplit(absl::GetFlag(FLAGS_families), ',', absl::SkipEmpty())) {
    only.insert(std::string(f));
  }
  for (const auto& family : FamilyCatalog::Get().families()) {
    if (!only.empty() && only.count(std::string(family.name)) == 0) continue;
    for (const auto& v : family.variants) {
      if (!absl::GetFlag(FLAGS_all_variants) && &v != &family.default_variant()) continue;
      std::cerr << "measuring " << v.name << "..." << std::endl;
      Row row;
      row.family = std::string(family.name);
      if (!RunChild(self, std::string(v.name), &row.result, &row.peak_mib)) {
        std::cerr << v.name << " failed\n";
        return false;
      }
      row.result["family"] = row.family;
      row.result["peak_rss_mib"] = row.peak_mib;
      rows->push_back(std::move(row));
      if (!absl::GetFlag(FLAGS_json).empty()) WriteJson(*rows, base_mib);
    }
  }
  return !rows->empty();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_one).empty()) return MeasureOne(absl::GetFlag(FLAGS_one));

  char self[4096] = {0};
  if (readlink("/proc/self/exe", self, sizeof(self) - 1) <= 0) return 1;
  nlohmann::json base;
  double base_mib = 0;
  if (!RunChild(self, "-", &base, &base_mib)) {
    std::cerr << "baseline child failed\n";
    return 1;
  }
  std::vector<Row> rows;
  if (!MeasureFamilies(self, base_mib, &rows)) return 1;
  std::string table = absl::StrFormat(
      "| family | model | input | parameters | fwd+bwd ms / batch %d (median) | min | peak RSS "
      "MiB | above baseline MiB |\n|---|---|---|---|---|---|---|---|\n",
      absl::GetFlag(FLAGS_batch));
  for (const Row& row : rows) {
    const nlohmann::json& r = row.result;
    absl::StrAppendFormat(&table, "| %s | %s | %d | %d | %.1f | %.1f | %.0f | %.0f |\n", row.family,
                          r["model"].get<std::string>(), r["size"].get<int>(),
                          r["parameters"].get<int64_t>(), r["ms_median"].get<double>(),
                          r["ms_min"].get<double>(), row.peak_mib, row.peak_mib - base_mib);
  }
  const std::string notes = absl::StrFormat(
      "\nTrain mode, cross-entropy backward, %s, %s threads, %d timed passes after one warm-up "
      "(median and minimum). Each model runs in its own process; peak RSS is that process's "
      "maximum resident set, and LibTorch alone (the baseline) peaks at %.0f MiB.\n",
      absl::GetFlag(FLAGS_device),
      absl::GetFlag(FLAGS_threads) ? absl::StrCat(absl::GetFlag(FLAGS_threads)) : "all",
      absl::GetFlag(FLAGS_iterations), base_mib);
  std::cout << table << notes;
  if (absl::GetFlag(FLAGS_record)) {
    if (!quartet::bench::AppendResults(
            quartet::bench::ResultsPath(),
            absl::StrCat("Family zoo: parameters, forward+backward time, memory (",
                         absl::GetFlag(FLAGS_device), ")"),
            quartet::bench::CommandLine(argc, argv), table + notes)) {
      return 1;
    }
  }
  return 0;
}
