// bench/dynamoe_dispatch: training throughput of one DYNAMOE network (28 px, 1 channel, the study's
// defaults: L = 4, D = 32, H = 64, capacity-fair E_l) three ways, with the same weights:
//   sparse   the routed network as it trains: each expert gathers its tokens, runs on them only
//            and scatters back (DispatchSparse)
//   masked   the same routing, but every expert runs on every token and the inactive ones are
//            multiplied by 0 (DispatchDense): what "only the active experts run" saves or costs
//   dense    ROUTER_DENSE: every expert on every token with softmax weights
// for the DYNAMIC and TOP_K routers and a few schedules. Reports samples/s (forward, backward and
// an AdamW step), the mean active experts per token and the sparse/masked speed ratio.
//
//   ./build/bench/dynamoe_dispatch [--batch=64] [--steps=20] [--threads=1] [--repeats=3] [--record]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "worker/moe/dynamoe.h"

ABSL_FLAG(int, batch, 64, "Samples per step.");
ABSL_FLAG(int, steps, 20, "Timed steps per configuration.");
ABSL_FLAG(int, warmup, 3, "Untimed steps first.");
ABSL_FLAG(int, threads, 1, "Intra-op threads (the study's workers use 1).");
ABSL_FLAG(int, repeats, 3, "Runs of each configuration, interleaved; the table reports medians.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");

namespace quartet::bench {
namespace {

using common::ExpertSchedule;
using common::RouterKind;
namespace moe = worker::moe;

struct Config {
  ExpertSchedule schedule;
  RouterKind router;
  bool dense_execution;
};

struct Measured {
  double samples_per_second = 0;
  double mean_active = 0;
};

Measured Measure(const Config& c, const torch::Tensor& x, const torch::Tensor& y) {
  torch::manual_seed(0);
  common::Recipe recipe;
  recipe.architecture = common::ArchitectureKind::kDynaMoE;
  recipe.router = c.router;
  recipe.dynamoe_schedule = c.schedule;
  moe::DynaMoEOptions o = *moe::DynaMoEOptionsFrom(recipe, 1, 10);
  o.dense_execution = c.dense_execution;
  moe::DynaMoENet net(o);
  net->train();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-3));
  Measured m;
  const int warmup = absl::GetFlag(FLAGS_warmup), steps = absl::GetFlag(FLAGS_steps);
  std::chrono::steady_clock::time_point start;
  double active = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    if (s == warmup) start = std::chrono::steady_clock::now();
    opt.zero_grad();
    moe::MoEOutput out = net->Forward(x);
    torch::nn::functional::cross_entropy(out.logits, y).backward();
    opt.step();
    if (s >= warmup) {
      double layer_sum = 0;
      for (const auto& l : out.layers) {
        layer_sum += l.active.sum(1).to(torch::kDouble).mean().item<double>();
      }
      active += layer_sum / out.layers.size();
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.samples_per_second = steps * x.size(0) / seconds;
  m.mean_active = active / steps;
  return m;
}

// Medians over --repeats runs of each configuration, the runs of all configurations interleaved
// so that a slow spell of the machine does not fall on one of them.
std::vector<Measured> MeasureAll(const std::vector<Config>& configs, const torch::Tensor& x,
                                 const torch::Tensor& y) {
  std::vector<std::vector<double>> rates(configs.size());
  std::vector<Measured> out(configs.size());
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    for (size_t i = 0; i < configs.size(); ++i) {
      const Measured m = Measure(configs[i], x, y);
      rates[i].push_back(m.samples_per_second);
      out[i].mean_active = m.mean_active;
    }
  }
  for (size_t i = 0; i < configs.size(); ++i) {
    std::sort(rates[i].begin(), rates[i].end());
    out[i].samples_per_second = rates[i][rates[i].size() / 2];
  }
  return out;
}

int Run(int argc, char** argv) {
  torch::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int batch = absl::GetFlag(FLAGS_batch);
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({batch, 1, 28, 28});
  const torch::Tensor y = torch::randint(0, 10, {batch});
  std::vector<std::vector<std::string>> rows = {{"SCHEDULE", "E_l", "ROUTER", "ACTIVE/TOKEN",
                                                 "SPARSE /s", "MASKED /s", "SPARSE/MASKED",
                                                 "DENSE ROUTER /s"}};
  const std::vector<ExpertSchedule> schedules = {
      ExpertSchedule::kUniform, ExpertSchedule::kDescending, ExpertSchedule::kAscending};
  const std::vector<RouterKind> routers = {RouterKind::kDynamic, RouterKind::kTopK};
  // Per schedule: the dense router, then per router sparse and masked.
  std::vector<Config> configs;
  for (ExpertSchedule s : schedules) {
    configs.push_back({s, RouterKind::kDense, false});
    for (RouterKind r : routers) {
      configs.push_back({s, r, false});
      configs.push_back({s, r, true});
    }
  }
  const std::vector<Measured> measured = MeasureAll(configs, x, y);
  size_t i = 0;
  for (ExpertSchedule s : schedules) {
    const Measured& dense = measured[i++];
    common::Recipe recipe;
    const std::vector<int> e = moe::ScheduleExperts(
        s, recipe.dynamoe_layers, recipe.dynamoe_min_experts, recipe.dynamoe_max_experts,
        recipe.dynamoe_wave_cycles, recipe.dynamoe_capacity_fair);
    for (RouterKind r : routers) {
      const Measured& sparse = measured[i++];
      const Measured& masked = measured[i++];
      rows.push_back(
          {common::ScheduleName(s), absl::StrJoin(e, ","), common::RouterName(r),
           absl::StrFormat("%.2f", sparse.mean_active),
           absl::StrFormat("%.0f", sparse.samples_per_second),
           absl::StrFormat("%.0f", masked.samples_per_second),
           absl::StrFormat("%.2fx", sparse.samples_per_second / masked.samples_per_second),
           absl::StrFormat("%.0f", dense.samples_per_second)});
    }
  }
  std::string table;
  for (const auto& row : rows) absl::StrAppend(&table, "| ", absl::StrJoin(row, " | "), " |\n");
  if (rows.size() > 1) {
    table.insert(
        table.find('\n') + 1,
        absl::StrCat("|", absl::StrJoin(std::vector<std::string>(rows[0].size(), "---"), "|"),
                     "|\n"));
  }
  std::cout << table;
  if (absl::GetFlag(FLAGS_record) &&
      !AppendResults(ResultsPath(),
                     absl::StrCat("DYNAMOE training throughput: sparse dispatch against every "
                                  "expert dense (CPU, ",
                                  absl::GetFlag(FLAGS_threads), " thread, batch ", batch, ")"),
                     CommandLine(argc, argv), table)) {
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace quartet::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return quartet::bench::Run(argc, argv);
}
