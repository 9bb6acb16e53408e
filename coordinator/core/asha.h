// Asynchronous successive halving (ASHA, Li et al. 2020) with a coverage guard: the promotion
// decisions of a multi-fidelity campaign. Pure logic, no I/O: the core feeds it the campaign's
// candidates and completions, asks it what a completion promotes, stores that in one transaction
// (Store::CompleteRung) and then applies it here.
//
// Rule. A candidate completing rung r < last is promoted to r + 1 at once when it ranks in the top
// floor(n_r / eta) of the n_r candidates completed at r (accuracy, then id); a completion can also
// promote a candidate stopped earlier that its arrival lifts into that quota. Promotions take
// epochs from the budget before new candidates do, and are skipped when it cannot pay them.
//
// Coverage guard (rung 0 only). Plain ASHA prunes slow starters first and can remove a family, or
// a pair of families, from the campaign entirely. With the guard, once eta candidates containing a
// family (or pair) have completed rung 0 and fewer than guard_min of them were promoted, the best
// of them not promoted yet is promoted as well.
#ifndef QUARTET_COORDINATOR_CORE_ASHA_H_
#define QUARTET_COORDINATOR_CORE_ASHA_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/storage/records.h"

namespace quartet::coordinator {

struct FidelitySettings {
  // Epochs of each rung, strictly increasing.
  std::vector<int> rung_epochs;
  int eta = 3;
  bool guard = true;
  int guard_min = 1;
  int64_t budget_epochs = 0;
};

// The settings of a resolved MultiFidelity (campaign_config.h fills every field).
FidelitySettings SettingsOf(const quartet::v1::MultiFidelity& fidelity);

// Per rung, what the coverage report shows.
struct RungStats {
  int64_t completed = 0, promoted = 0, stopped_early = 0, open = 0;
  double best_accuracy = 0, mean_accuracy = 0;
  int families_completed = 0;
};

class Asha {
 public:
  explicit Asha(FidelitySettings settings);

  const FidelitySettings& settings() const { return settings_; }
  int last_rung() const { return static_cast<int>(settings_.rung_epochs.size()) - 1; }
  int epochs_at(int rung) const { return settings_.rung_epochs[rung]; }

  // Adds or refreshes a candidate: its families, the rung it trains toward or stopped at, its
  // state and its results per rung (from the store). Candidates are tracked when the campaign is
  // rebuilt, leased and completed; new PENDING ones need not be.
  void Track(const CandidateRecord& c);
  // Candidates issued so far (each pays rung 0's epochs when issued).
  void set_issued(int64_t issued) { issued_ = issued; }
  // Epochs granted so far: rung 0 for every candidate issued, plus every promotion's epochs.
  int64_t epochs_committed() const { return issued_ * epochs_at(0) + promoted_epochs_; }
  // How many new candidates the epoch budget can still pay for.
  int64_t NewCandidatesAffordable() const;

  // What a completion of candidate `id` at its current rung with `accuracy` decides (nothing is
  // changed; Apply does after the store committed it). The candidate must be tracked.
  RungCompletion Decide(int64_t id, double accuracy) const;
  // Applies a decided completion.
  void Apply(int64_t id, double accuracy, const RungCompletion& plan);

  // Whether a STOPPED_EARLY candidate may still be promoted later (its checkpoint is then kept):
  // it is within eta places of its rung's promotion quota, or the guard may still pick it.
  bool MayStillPromote(int64_t id) const;

  // Reports: per rung; per family and per pair (keys "A" and "A+B"), candidates that completed
  // each rung; promotions by the guard; the families and pairs whose only survivors past rung 0
  // are guard promotions.
  std::vector<RungStats> Stats() const;
  struct RungTally {
    // Per rung: candidates that completed it, and their mean accuracy there.
    std::vector<int64_t> completed;
    std::vector<double> mean_accuracy;
  };
  std::map<std::string, RungTally> CompletedAtRung() const;
  int64_t guard_promotions() const;
  std::vector<std::string> GuardKept() const;

 private:
  struct Entry {
    std::vector<std::string> families;
    int rung = 0;
    CandidateState state = CandidateState::kPending;
    // accuracy[r] for every rung completed; promoted[r] / guard[r] for those promoted past r.
    std::vector<double> accuracy;
    std::vector<bool> promoted, guard;
  };
  // Candidates completed at `rung`, best first (accuracy, then id).
  std::vector<std::pair<double, int64_t>> Ranked(int rung, int64_t extra_id = 0,
                                                 double extra_accuracy = 0) const;
  // Family and pair keys of a combination.
  static std::vector<std::string> GroupKeys(const std::vector<std::string>& families);
  // The guard's promotions for a rung-0 completion of `id`, given the top-rule promotions.
  void GuardPromotions(int64_t id, double accuracy, int64_t* budget_left,
                       std::vector<Promotion>* promotions) const;
  int64_t PromotionCost(int rung) const;

  FidelitySettings settings_;
  std::map<int64_t, Entry> entries_;
  int64_t issued_ = 0;
  // Epochs granted by promotions: each tracked candidate's rung epochs beyond rung 0.
  int64_t promoted_epochs_ = 0;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_ASHA_H_
