// Coverage of every sampler over the published campaign's budget: 4,463 draws of 4-of-29.
//
//   sampler_coverage [--json] [--record] [--seeds N] [--product]
//
// --product: the product-space table instead (bench/product_coverage.h).
// Randomized samplers run with seeds 1..N (default 10) and the table shows the median over seeds of
// each figure (mean for the per-draw cost); LEXICOGRAPHIC ignores its seed and runs once. ADAPTIVE
// is fed noisy accuracies from a hidden additive landscape (bench/synthetic_accuracy.h) so that
// its results-driven draws are exercised. Per-draw costs are thread CPU time of Next() (so that
// other load on the machine does not inflate them; the mean wall-clock time is shown too). The cost
// after 20,000 draws is the mean (and max) of 200 Next() calls made after 20,000 earlier ones,
// seed 1.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/product_coverage.h"
#include "bench/synthetic_accuracy.h"
#include "coordinator/space/combinatorics.h"
#include "coordinator/space/coverage_stats.h"
#include "coordinator/space/sampler.h"
#include "coordinator/space/space.h"
#include "nlohmann/json.hpp"

namespace quartet::bench {
namespace {

using coordinator::space::CoverageFigures;
using coordinator::space::CreateSampler;
using coordinator::space::PairIndex;
using coordinator::space::Sampler;
using coordinator::space::SamplerKind;
using coordinator::space::SamplerKindName;
using coordinator::space::Space;
using Clock = std::chrono::steady_clock;

constexpr int kN = 29, kK = 4;
constexpr int kBudget = 4463;     // the published campaign's size
constexpr int kPublished = 1021;  // candidates it evaluated
constexpr int kLongRun = 20000;
constexpr int kTimedAfterLongRun = 200;

struct RunFigures {
  std::optional<int> draws_to_all_families, draws_to_all_pairs, draws_to_all_triples;
  int64_t deviation_at_100 = 0, deviation_at_1021 = 0, deviation_at_4463 = 0;
  int64_t worst_prefix_deviation = 0;
  double anchoring_at_1021 = 0, first_family_share_at_1021 = 0;
  double construct_ms = 0, mean_us = 0, max_us = 0, mean_wall_us = 0;
  std::vector<double> draw_us;  // CPU time of every draw
};

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// CPU time of the calling thread, in microseconds.
double ThreadCpuMicros() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

RunFigures RunOnce(SamplerKind kind, const Space& space, uint64_t seed) {
  RunFigures out;
  const double t0 = ThreadCpuMicros();
  std::unique_ptr<Sampler> sampler = CreateSampler(kind, space, seed).value();
  out.construct_ms = (ThreadCpuMicros() - t0) / 1000.0;
  SyntheticAccuracy landscape(kN, seed * 7919 + 13);
  std::vector<int64_t> families(kN, 0), pairs(kN * (kN - 1) / 2, 0);
  std::vector<char> triples(coordinator::space::Binomial(kN, 3), 0);
  int families_seen = 0, pairs_seen = 0, triples_seen = 0, first_family_draws = 0;
  double total_us = 0, total_wall_us = 0;
  int c[kK];
  for (int d = 1; d <= kBudget; ++d) {
    const auto wall_start = Clock::now();
    const double start = ThreadCpuMicros();
    const uint64_t rank = sampler->Next().value();
    const double us = ThreadCpuMicros() - start;
    total_wall_us += Micros(Clock::now() - wall_start);
    total_us += us;
    out.max_us = std::max(out.max_us, us);
    out.draw_us.push_back(us);
    space.UnrankInto(rank, c);
    if (kind == SamplerKind::kAdaptive) sampler->Observe(rank, landscape.Measure(c, kK));
    for (int i = 0; i < kK; ++i) {
      if (families[c[i]]++ == 0) ++families_seen;
      for (int j = i + 1; j < kK; ++j) {
        if (pairs[PairIndex(c[i], c[j], kN)]++ == 0) ++pairs_seen;
        for (int l = j + 1; l < kK; ++l) {
          char& t = triples[coordinator::space::TripleIndex(c[i], c[j], c[l], kN)];
          if (!t) ++triples_seen;
          t = 1;
        }
      }
    }
    if (d <= kPublished && c[0] == 0) ++first_family_draws;
    if (families_seen == kN && !out.draws_to_all_families) out.draws_to_all_families = d;
    if (pairs_seen == static_cast<int>(pairs.size()) && !out.draws_to_all_pairs) {
      out.draws_to_all_pairs = d;
    }
    if (triples_seen == static_cast<int>(triples.size()) && !out.draws_to_all_triples) {
      out.draws_to_all_triples = d;
    }
    const CoverageFigures f = coordinator::space::ComputeCoverage(families, pairs, d, kK);
    out.worst_prefix_deviation = std::max(out.worst_prefix_deviation, f.max_family_deviation);
    if (d == 100) out.deviation_at_100 = f.max_family_deviation;
    if (d == kPublished) {
      out.deviation_at_1021 = f.max_family_deviation;
      out.anchoring_at_1021 = f.anchoring_index;
      out.first_family_share_at_1021 = static_cast<double>(first_family_draws) / kPublished;
    }
    if (d == kBudget) out.deviation_at_4463 = f.max_family_deviation;
  }
  out.mean_us = total_us / kBudget;
  out.mean_wall_us = total_wall_us / kBudget;
  return out;
}

// Mean and max microseconds of Next() after kLongRun earlier draws.
std::pair<double, double> CostAfterLongRun(SamplerKind kind, const Space& space) {
  std::unique_ptr<Sampler> sampler = CreateSampler(kind, space, 1).value();
  SyntheticAccuracy landscape(kN, 7919 + 13);
  int c[kK];
  auto draw = [&]() {
    const uint64_t rank = sampler->Next().value();
    if (kind == SamplerKind::kAdaptive) {
      space.UnrankInto(rank, c);
      sampler->Observe(rank, landscape.Measure(c, kK));
    }
  };
  for (int i = 0; i < kLongRun; ++i) draw();
  double total = 0, worst = 0;
  for (int i = 0; i < kTimedAfterLongRun; ++i) {
    const double start = ThreadCpuMicros();
    draw();
    const double us = ThreadCpuMicros() - start;
    total += us;
    worst = std::max(worst, us);
  }
  return {total / kTimedAfterLongRun, worst};
}

template <typename T>
double Median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? static_cast<double>(v[n / 2]) : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Median of an optional figure; nullopt when any run did not reach it.
std::optional<double> MedianReached(const std::vector<RunFigures>& runs,
                                    std::optional<int> RunFigures::*field) {
  std::vector<int> v;
  for (const RunFigures& r : runs) {
    if (!(r.*field)) return std::nullopt;
    v.push_back(*(r.*field));
  }
  return Median(v);
}

std::string Cell(std::optional<double> v) {
  return v ? absl::StrFormat("%g", *v) : absl::StrCat("> ", kBudget);
}

}  // namespace
}  // namespace quartet::bench

int main(int argc, char** argv) {
  using namespace quartet::bench;
  bool json = false, record = false, product = false;
  int seeds = 10;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--record")) {
      record = true;
    } else if (!std::strcmp(argv[i], "--product")) {
      product = true;
    } else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc) {
      seeds = std::max(1, std::atoi(argv[++i]));
    } else {
      std::cerr << "usage: sampler_coverage [--json] [--record] [--seeds N] [--product]\n";
      return 2;
    }
  }
  if (product) {
    const std::string table = ProductCoverageTable(seeds);
    std::cout << table;
    if (record && !AppendResults(ResultsPath(),
                                 "Sampler coverage on a product space (29 families k = 4 x 3 x 3 x "
                                 "8 strata)",
                                 CommandLine(argc, argv), table)) {
      return 1;
    }
    return 0;
  }
  const Space space = Space::Create(kN, kK, {}).value();
  const SamplerKind kinds[] = {SamplerKind::kLexicographic, SamplerKind::kUniform,
                               SamplerKind::kStratified, SamplerKind::kPairCovering,
                               SamplerKind::kAdaptive};
  std::string table =
      "| sampler | seeds | draws_to_all_families | draws_to_all_pairs | draws_to_all_triples | "
      "max_family_deviation_at_100 | max_family_deviation_at_1021 | "
      "max_family_deviation_at_4463 | worst_prefix_deviation | anchoring_index_at_1021 | "
      "first_family_share_at_1021 | construct_ms | mean_us_per_draw | p99_us_per_draw | "
      "max_us_per_draw | mean_wall_us_per_draw | mean_us_after_20000 | max_us_after_20000 |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (SamplerKind kind : kinds) {
    const int num_seeds = kind == SamplerKind::kLexicographic ? 1 : seeds;
    std::vector<RunFigures> runs;
    for (int s = 1; s <= num_seeds; ++s) runs.push_back(RunOnce(kind, space, s));
    auto median = [&](auto field) {
      std::vector<double> v;
      for (const RunFigures& r : runs) v.push_back(static_cast<double>(r.*field));
      return Median(v);
    };
    double mean_us = 0, max_us = 0, worst_dev = 0, mean_wall_us = 0;
    std::vector<double> all_draw_us;
    for (const RunFigures& r : runs) {
      all_draw_us.insert(all_draw_us.end(), r.draw_us.begin(), r.draw_us.end());
      mean_us += r.mean_us / runs.size();
      mean_wall_us += r.mean_wall_us / runs.size();
      max_us = std::max(max_us, r.max_us);
      worst_dev = std::max<double>(worst_dev, r.worst_prefix_deviation);
    }
    std::sort(all_draw_us.begin(), all_draw_us.end());
    const double p99_us = all_draw_us[all_draw_us.size() * 99 / 100];
    const auto [after_mean, after_max] = CostAfterLongRun(kind, space);
    const std::optional<double> to_families =
        MedianReached(runs, &RunFigures::draws_to_all_families);
    const std::optional<double> to_pairs = MedianReached(runs, &RunFigures::draws_to_all_pairs);
    const std::optional<double> to_triples = MedianReached(runs, &RunFigures::draws_to_all_triples);
    std::vector<int> pair_draws;
    for (const RunFigures& r : runs) pair_draws.push_back(r.draws_to_all_pairs.value_or(-1));
    const double dev100 = median(&RunFigures::deviation_at_100);
    const double dev1021 = median(&RunFigures::deviation_at_1021);
    const double dev4463 = median(&RunFigures::deviation_at_4463);
    const double anchoring = median(&RunFigures::anchoring_at_1021);
    const double first_share = median(&RunFigures::first_family_share_at_1021);
    const double construct_ms = median(&RunFigures::construct_ms);
    if (json) {
      nlohmann::json j;
      j["sampler"] = SamplerKindName(kind);
      j["draws_to_all_families"] = to_families ? nlohmann::json(*to_families) : nlohmann::json();
      j["draws_to_all_pairs"] = to_pairs ? nlohmann::json(*to_pairs) : nlohmann::json();
      j["max_family_deviation_at_100"] = dev100;
      j["max_family_deviation_at_1021"] = dev1021;
      j["max_family_deviation_at_4463"] = dev4463;
      j["anchoring_index_at_1021"] = anchoring;
      j["first_family_share_at_1021"] = first_share;
      j["seeds"] = num_seeds;
      j["statistic"] = "median over seeds";
      j["draws_to_all_pairs_per_seed"] = pair_draws;
      j["draws_to_all_triples"] = to_triples ? nlohmann::json(*to_triples) : nlohmann::json();
      j["worst_prefix_deviation"] = worst_dev;
      j["construct_ms"] = construct_ms;
      j["mean_us_per_draw"] = mean_us;
      j["mean_wall_us_per_draw"] = mean_wall_us;
      j["max_us_per_draw"] = max_us;
      j["p99_us_per_draw"] = p99_us;
      j["mean_us_after_20000"] = after_mean;
      j["max_us_after_20000"] = after_max;
      std::cout << j.dump() << "\n";
    }
    absl::StrAppendFormat(
        &table,
        "| %s | %d | %s | %s | %s | %g | %g | %g | %g | %.3f | %.3f | %.1f | %.1f | %.0f | %.0f | "
        "%.1f | %.1f | %.0f |\n",
        SamplerKindName(kind), num_seeds, Cell(to_families), Cell(to_pairs), Cell(to_triples),
        dev100, dev1021, dev4463, worst_dev, anchoring, first_share, construct_ms, mean_us, p99_us,
        max_us, mean_wall_us, after_mean, after_max);
  }
  absl::StrAppend(
      &table,
      "\nFigures are medians over the seeds (LEXICOGRAPHIC ignores its seed); "
      "worst_prefix_deviation is the largest max-minus-min family count at any prefix of any "
      "seed's 4,463 draws; per-draw costs are thread CPU microseconds of Next(): the mean over "
      "seeds, the 99th percentile and the max over all draws of all seeds (the max includes "
      "outliers from other load on the machine: they do not recur at the same draw when rerun); "
      "mean_wall_us_per_draw is wall clock, inflated by that load; the after_20000 columns time "
      "200 draws made after 20,000 (seed 1); "
      "construct_ms is the CPU time of construction (PAIR_COVERING and ADAPTIVE build their "
      "covering plan there). ADAPTIVE is fed noisy accuracies from a hidden additive landscape "
      "(bench/synthetic_accuracy.h, one observation per draw).\n");
  if (!json) std::cout << table;
  if (record && !AppendResults(ResultsPath(), "Sampler coverage (n = 29, k = 4)",
                               CommandLine(argc, argv), table)) {
    return 1;
  }
  return 0;
}
