// Multi-fidelity search on a synthetic landscape (no training): the epochs asynchronous successive
// halving (coordinator/core/asha.h, the coordinator's own promotion logic) spends until it has
// trained a top-1% combination (4 of 29) to full fidelity, against full-fidelity STRATIFIED, over
// many seeds; and which families plain ASHA prunes entirely that the coverage guard keeps.
//
//   asha_search [--record] [--seeds N] [--workers W]
//
// Landscape. The full-fidelity accuracy of a combination is bench/synthetic_accuracy.h's (base +
// family effects + sparse pair synergies). At e of R epochs a run shows that accuracy minus a
// learning gap that closes as log(e) / log(R): gap = 0.05 + 0.06 for each "slow starter" family
// in the combination. Three families are slow starters, and they are good late (+0.03 each at full
// fidelity), so low fidelity ranks them wrongly: the case where plain ASHA prunes what it should
// not. Every observation carries N(0, 0.01) noise.
//
// Simulation. W workers run asynchronously in epoch time: a free worker takes promoted work first,
// else a new candidate from the STRATIFIED sampler; a completion is decided by Asha::Decide and
// applied. Rungs 1, 3, 9 epochs, eta 3.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "bench/synthetic_accuracy.h"
#include "coordinator/core/asha.h"
#include "coordinator/space/sampler.h"
#include "coordinator/space/space.h"

namespace quartet::bench {
namespace {

using coordinator::Asha;
using coordinator::CandidateRecord;
using coordinator::CandidateState;
using coordinator::FidelitySettings;
using coordinator::RungCompletion;
using coordinator::space::CreateSampler;
using coordinator::space::SamplerKind;
using coordinator::space::Space;

constexpr int kN = 29, kK = 4;
constexpr int kEta = 3;
// Share of the space that counts as a top combination.
constexpr double kTopShare = 0.01;
// The learning gap at one epoch.
constexpr double kBaseGap = 0.05;
constexpr double kNoise = 0.01;
// The fixed epoch budget of the pruning comparison, in full-fidelity trainings.
constexpr int64_t kPruningBudgetTrainings = 100;

// How low fidelity misleads: `slow` families add `slow_gap` each to the gap and are worth
// `late_bonus` each at full fidelity.
struct Scenario {
  std::string name;
  int slow = 0;
  double slow_gap = 0;
  double late_bonus = 0;
};
// A search that has not found a top combination by then stops (counted as this many epochs).
constexpr int64_t kEpochCap = 200000;

std::string FamilyName(int f) { return absl::StrFormat("F%02d", f); }

// The landscape of one seed: full-fidelity means of every combination, slow starters, and a noisy
// measurement at any epoch count.
class Landscape {
 public:
  Landscape(const Space& space, uint64_t seed, const Scenario& scenario, int max_epochs)
      : base_(kN, seed), rng_(seed * 7919 + 1), scenario_(scenario), max_epochs_(max_epochs) {
    std::vector<int> order(kN);
    for (int i = 0; i < kN; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_);
    slow_.assign(order.begin(), order.begin() + scenario.slow);
    const uint64_t size = space.size();
    means_.resize(size);
    int c[kK];
    for (uint64_t r = 0; r < size; ++r) {
      space.UnrankInto(r, c);
      means_[r] = base_.Mean(c, kK) + scenario.late_bonus * SlowCount(c);
    }
    std::vector<double> sorted = means_;
    const size_t top = static_cast<size_t>(kTopShare * static_cast<double>(size));
    std::nth_element(sorted.begin(), sorted.begin() + top, sorted.end(), std::greater<>());
    threshold_ = sorted[top];
  }

  bool IsTop(uint64_t rank) const { return means_[rank] > threshold_; }
  bool IsSlow(int f) const { return std::find(slow_.begin(), slow_.end(), f) != slow_.end(); }
  const std::vector<int>& slow() const { return slow_; }

  double Measure(uint64_t rank, const int* c, int epochs) {
    const double closed = std::log(static_cast<double>(epochs)) / std::log(max_epochs_);
    const double gap = (kBaseGap + scenario_.slow_gap * SlowCount(c)) * (1.0 - closed);
    std::normal_distribution<double> noise(0.0, kNoise);
    return means_[rank] - gap + noise(rng_);
  }

 private:
  int SlowCount(const int* c) const {
    int n = 0;
    for (int i = 0; i < kK; ++i) n += IsSlow(c[i]) ? 1 : 0;
    return n;
  }

  SyntheticAccuracy base_;
  std::mt19937_64 rng_;
  Scenario scenario_;
  int max_epochs_;
  std::vector<int> slow_;
  std::vector<double> means_;
  double threshold_ = 0;
};

// Full-fidelity STRATIFIED: epochs until a top combination has been trained.
int64_t StratifiedEpochs(const Space& space, const Landscape& landscape, uint64_t seed,
                         int max_epochs) {
  auto sampler = CreateSampler(SamplerKind::kStratified, space, seed, {}).value();
  for (int64_t draws = 1;; ++draws) {
    const uint64_t rank = sampler->Next().value();
    sampler->Observe(rank, 0);
    if (landscape.IsTop(rank)) return draws * max_epochs;
    if (draws * max_epochs >= kEpochCap) return kEpochCap;
  }
}

struct AshaOutcome {
  // Epochs spent (granted and run) until a top combination completed the last rung.
  int64_t epochs_to_top = kEpochCap;
  // Per family: candidates that reached rung 1 within the pruning budget.
  std::map<int, int64_t> reached_rung1;
  int64_t guard_promotions = 0;
};

// A running lease in the simulation.
struct Running {
  double done_at;
  int64_t id;
  bool operator>(const Running& o) const { return done_at > o.done_at; }
};

AshaOutcome RunAsha(const Space& space, Landscape& landscape, uint64_t seed,
                    const std::vector<int>& kRungs, bool guard, int workers, int64_t budget_epochs,
                    bool stop_at_top) {
  FidelitySettings settings;
  settings.rung_epochs = kRungs;
  settings.eta = kEta;
  settings.guard = guard;
  settings.guard_min = 1;
  settings.budget_epochs = budget_epochs;
  Asha asha(settings);
  auto sampler = CreateSampler(SamplerKind::kStratified, space, seed, {}).value();
  std::map<int64_t, CandidateRecord> candidates;
  std::map<int64_t, std::vector<int>> combos;
  // Promoted work: higher rung first, then older.
  std::set<std::pair<int, int64_t>> promoted;
  std::priority_queue<Running, std::vector<Running>, std::greater<>> running;
  int64_t next_id = 1, issued = 0, epochs_run = 0;
  double now = 0;
  AshaOutcome out;
  auto start = [&](CandidateRecord& c) {
    c.state = CandidateState::kLeased;
    asha.Track(c);
    const int from = c.rungs.empty() ? 0 : kRungs[static_cast<size_t>(c.rung) - 1];
    running.push({now + (kRungs[static_cast<size_t>(c.rung)] - from), c.id});
  };
  auto take_work = [&]() -> bool {
    if (!promoted.empty()) {
      const int64_t id = promoted.begin()->second;
      promoted.erase(promoted.begin());
      start(candidates.at(id));
      return true;
    }
    asha.set_issued(issued);
    if (asha.NewCandidatesAffordable() <= 0) return false;
    auto rank = sampler->Next();
    if (!rank.ok()) return false;
    CandidateRecord c;
    c.id = next_id++;
    c.rank = *rank;
    std::vector<int> f(kK);
    space.UnrankInto(*rank, f.data());
    for (int x : f) c.families.push_back(FamilyName(x));
    combos[c.id] = f;
    ++issued;
    start(candidates[c.id] = c);
    return true;
  };
  for (int w = 0; w < workers; ++w) take_work();
  while (!running.empty()) {
    const Running r = running.top();
    running.pop();
    now = r.done_at;
    CandidateRecord& c = candidates.at(r.id);
    const int epochs = kRungs[static_cast<size_t>(c.rung)];
    epochs_run += epochs - (c.rungs.empty() ? 0 : kRungs[static_cast<size_t>(c.rung) - 1]);
    const double accuracy = landscape.Measure(c.rank, combos.at(c.id).data(), epochs);
    const RungCompletion plan = asha.Decide(c.id, accuracy);
    asha.Apply(c.id, accuracy, plan);
    if (plan.rung == 0) sampler->Observe(c.rank, accuracy);
    quartet::v1::RungResult rr;
    rr.set_rung(plan.rung);
    rr.set_test_accuracy(accuracy);
    c.rungs.push_back(rr);
    c.state = plan.last_rung ? CandidateState::kSucceeded : CandidateState::kStoppedEarly;
    for (const auto& p : plan.promotions) {
      CandidateRecord& up = candidates.at(p.candidate_id);
      // As the store does (MarkPromoted): Track() reads the flags back at the next lease.
      up.rungs[static_cast<size_t>(p.to_rung) - 1].set_promoted(true);
      up.rungs[static_cast<size_t>(p.to_rung) - 1].set_guard(p.guard);
      up.rung = p.to_rung;
      up.state = CandidateState::kPending;
      if (p.to_rung == 1) {
        for (int f : combos.at(up.id)) out.reached_rung1[f]++;
      }
      promoted.insert({-p.to_rung, up.id});
    }
    if (plan.last_rung && landscape.IsTop(c.rank) && out.epochs_to_top == kEpochCap) {
      out.epochs_to_top = epochs_run;
      if (stop_at_top) break;
    }
    if (epochs_run >= kEpochCap) break;
    take_work();
  }
  out.guard_promotions = asha.guard_promotions();
  return out;
}

double Median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? static_cast<double>(v[n / 2]) : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Epochs to a top combination, per search, over `seeds`: one table block.
std::string CompareSearches(const Space& space, const Scenario& scenario,
                            const std::vector<int>& rungs, int seeds, int workers) {
  const int max_epochs = rungs.back();
  std::vector<int64_t> stratified, plain, guarded;
  int plain_wins = 0, guarded_wins = 0;
  for (int s = 1; s <= seeds; ++s) {
    const uint64_t seed = static_cast<uint64_t>(s);
    Landscape a(space, seed, scenario, max_epochs), b(space, seed, scenario, max_epochs),
        c(space, seed, scenario, max_epochs);
    stratified.push_back(StratifiedEpochs(space, a, seed, max_epochs));
    plain.push_back(RunAsha(space, b, seed, rungs, false, workers, kEpochCap, true).epochs_to_top);
    guarded.push_back(RunAsha(space, c, seed, rungs, true, workers, kEpochCap, true).epochs_to_top);
    plain_wins += plain.back() * 5 <= stratified.back() ? 1 : 0;
    guarded_wins += guarded.back() * 5 <= stratified.back() ? 1 : 0;
  }
  const double ms = Median(stratified), mp = Median(plain), mg = Median(guarded);
  const std::string where = absl::StrCat(scenario.name, ", rungs ", absl::StrJoin(rungs, "-"));
  std::string out;
  absl::StrAppendFormat(&out,
                        "| %s | STRATIFIED, full fidelity (%d epochs each) | %.0f | 1.0x | - |\n",
                        where, max_epochs, ms);
  absl::StrAppendFormat(&out, "| %s | ASHA, plain | %.0f | %.1fx fewer | %d of %d |\n", where, mp,
                        ms / mp, plain_wins, seeds);
  absl::StrAppendFormat(&out,
                        "| %s | ASHA, coverage guard (m = 1) | %.0f | %.1fx fewer | %d of %d |\n",
                        where, mg, ms / mg, guarded_wins, seeds);
  return out;
}

// Families and pairs with no candidate past rung 0 within a fixed budget, plain ASHA against the
// guard, over `seeds`.
std::string ComparePruning(const Space& space, const Scenario& scenario,
                           const std::vector<int>& rungs, int seeds, int workers) {
  const int64_t budget = kPruningBudgetTrainings * rungs.back();
  int pruned_plain = 0, pruned_guard = 0, kept = 0, slow_plain = 0, slow_guard = 0, slow_total = 0;
  int64_t guard_promotions = 0;
  std::vector<std::string> examples;
  for (int s = 1; s <= seeds; ++s) {
    const uint64_t seed = static_cast<uint64_t>(s);
    Landscape a(space, seed, scenario, rungs.back()), b(space, seed, scenario, rungs.back());
    const AshaOutcome p = RunAsha(space, a, seed, rungs, false, workers, budget, false);
    const AshaOutcome g = RunAsha(space, b, seed, rungs, true, workers, budget, false);
    guard_promotions += g.guard_promotions;
    for (int f = 0; f < kN; ++f) {
      const bool gone_plain = !p.reached_rung1.count(f), gone_guard = !g.reached_rung1.count(f);
      pruned_plain += gone_plain;
      pruned_guard += gone_guard;
      if (gone_plain && !gone_guard) {
        ++kept;
        if (examples.size() < 12) {
          examples.push_back(
              absl::StrCat(FamilyName(f), a.IsSlow(f) ? "*" : "", " (seed ", s, ")"));
        }
      }
      if (a.IsSlow(f)) {
        ++slow_total;
        slow_plain += gone_plain;
        slow_guard += gone_guard;
      }
    }
  }
  return absl::StrFormat(
      "%s, rungs %s, a budget of %d epochs (%d full trainings), %d seeds x 29 families: families "
      "with no candidate past rung 0: plain ASHA %d, with the coverage guard %d (%d guard "
      "promotions in all). Families plain ASHA pruned entirely that the guard kept alive: %d; "
      "slow starters pruned entirely: plain %d of %d, guard %d of %d. Examples (* = slow "
      "starter): %s.\n",
      scenario.name, absl::StrJoin(rungs, "-"), budget, kPruningBudgetTrainings, seeds,
      pruned_plain, pruned_guard, guard_promotions, kept, slow_plain, slow_total, slow_guard,
      slow_total, examples.empty() ? "none" : absl::StrJoin(examples, ", "));
}

}  // namespace
}  // namespace quartet::bench

int main(int argc, char** argv) {
  using namespace quartet::bench;
  bool record = false;
  int seeds = 20, workers = 8;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--record")) {
      record = true;
    } else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc) {
      seeds = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--workers") && i + 1 < argc) {
      workers = std::max(1, std::atoi(argv[++i]));
    } else {
      std::cerr << "usage: asha_search [--record] [--seeds N] [--workers W]\n";
      return 2;
    }
  }
  const Space space = Space::Create(kN, kK, {}).value();
  const Scenario correlated{"rank-correlated"};
  const Scenario slow{"3 slow starters", 3, 0.10, 0.03};
  const std::vector<std::vector<int>> rung_sets = {{1, 3, 9}, {1, 3, 9, 27}};
  std::string table = absl::StrFormat(
      "Landscape: bench/synthetic_accuracy.h (29 families, k = 4) at full fidelity R; at e epochs "
      "a run shows it minus a gap of %.2f x (1 - ln e / ln R), plus noise N(0, %.2f). "
      "\"Rank-correlated\": nothing else. \"3 slow starters\": 3 families per seed add %.2f each "
      "to the gap and are worth +%.2f each at full fidelity (low fidelity ranks them wrongly). "
      "ASHA is coordinator/core/asha.h, eta %d, %d asynchronous workers, new candidates from "
      "STRATIFIED. Top = the best %.0f %% of the space at full fidelity; found = trained to R. "
      "%d seeds. With rungs r_i and eta, one candidate costs at least sum (r_i - r_{i-1}) / "
      "eta^i epochs against R: 2.3 of 9 (3.9x) for 1-3-9, 3.0 of 27 (9x) for 1-3-9-27.\n\n",
      kBaseGap, kNoise, slow.slow_gap, slow.late_bonus, kEta, workers, kTopShare * 100, seeds);
  absl::StrAppend(&table,
                  "| landscape | search | median epochs to a top-1% combination | vs STRATIFIED | "
                  "seeds with >= 5x fewer epochs |\n|---|---|---|---|---|\n");
  for (const Scenario& scenario : {correlated, slow}) {
    for (const auto& rungs : rung_sets) {
      absl::StrAppend(&table, CompareSearches(space, scenario, rungs, seeds, workers));
    }
  }
  absl::StrAppend(&table, "\nPruning. ", ComparePruning(space, slow, rung_sets[0], seeds, workers));
  std::cout << table;
  if (record) {
    AppendResults(ResultsPath(),
                  "Multi-fidelity search: ASHA against full-fidelity STRATIFIED (synthetic)",
                  CommandLine(argc, argv), table);
  }
  return 0;
}
