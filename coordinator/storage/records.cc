#include "coordinator/storage/records.h"

#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace quartet::coordinator {

const char* CampaignStateName(CampaignState s) {
  switch (s) {
    case CampaignState::kRunning:
      return "RUNNING";
    case CampaignState::kPaused:
      return "PAUSED";
    case CampaignState::kCancelled:
      return "CANCELLED";
    case CampaignState::kDone:
      return "DONE";
  }
  return "UNKNOWN";
}

const char* CandidateStateName(CandidateState s) {
  switch (s) {
    case CandidateState::kPending:
      return "PENDING";
    case CandidateState::kLeased:
      return "LEASED";
    case CandidateState::kSucceeded:
      return "SUCCEEDED";
    case CandidateState::kFailed:
      return "FAILED";
    case CandidateState::kCancelled:
      return "CANCELLED";
    case CandidateState::kStoppedEarly:
      return "STOPPED_EARLY";
  }
  return "UNKNOWN";
}

int64_t& StateCounts::at(CandidateState s) {
  switch (s) {
    case CandidateState::kPending:
      return pending;
    case CandidateState::kLeased:
      return leased;
    case CandidateState::kSucceeded:
      return succeeded;
    case CandidateState::kFailed:
      return failed;
    case CandidateState::kCancelled:
      return cancelled;
    case CandidateState::kStoppedEarly:
      return stopped_early;
  }
  return pending;
}

int64_t StateCounts::at(CandidateState s) const { return const_cast<StateCounts*>(this)->at(s); }

absl::StatusOr<LeaseVerdict> JudgeLease(int64_t candidate_id, const LeaseFacts& current,
                                        int64_t token, const std::string& worker_id, LeaseUse use) {
  if (current.token != token || current.holder != worker_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", token, " of candidate ", candidate_id,
        " is not this worker's current lease (a newer lease was granted, or the token or worker "
        "is wrong); drop the candidate"));
  }
  const bool reporting = use == LeaseUse::kComplete || use == LeaseUse::kMetrics;
  if (current.completed_token != 0 && token == current.completed_token && reporting) {
    return LeaseVerdict::kRepeat;
  }
  const bool lost = current.error_class == quartet::v1::ERROR_CLASS_LOST;
  switch (current.state) {
    case CandidateState::kLeased:
      return LeaseVerdict::kLive;
    case CandidateState::kPending:
    case CandidateState::kFailed:
      if (lost) return use == LeaseUse::kMetrics ? LeaseVerdict::kRepeat : LeaseVerdict::kRevive;
      if (use == LeaseUse::kFail || use == LeaseUse::kMetrics) return LeaseVerdict::kRepeat;
      break;
    case CandidateState::kSucceeded:
    case CandidateState::kStoppedEarly:
      if (reporting) return LeaseVerdict::kRepeat;
      break;
    case CandidateState::kCancelled:
      if (use == LeaseUse::kFail || use == LeaseUse::kMetrics) return LeaseVerdict::kRepeat;
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("lease ", token, " of candidate ", candidate_id, " has ended: the candidate is ",
                   CandidateStateName(current.state), "; drop the candidate"));
}

CandidateState AfterLeaseEnds(CampaignState campaign, bool retryable, bool preempted, int attempt,
                              int preemptions, int max_attempts, int max_preemptions) {
  if (campaign == CampaignState::kCancelled) return CandidateState::kCancelled;
  if (!retryable) return CandidateState::kFailed;
  if (preempted) {
    return preemptions <= max_preemptions ? CandidateState::kPending : CandidateState::kFailed;
  }
  return attempt - preemptions < max_attempts ? CandidateState::kPending : CandidateState::kFailed;
}

bool WorkerCanTake(const WorkerRecord& worker, const std::vector<std::string>& families,
                   int64_t est_memory_bytes) {
  if (worker.gpu_memory_bytes > 0 && est_memory_bytes > worker.gpu_memory_bytes) return false;
  if (worker.families.empty()) return true;
  for (const std::string& f : families) {
    if (std::find(worker.families.begin(), worker.families.end(), f) == worker.families.end()) {
      return false;
    }
  }
  return true;
}

int64_t NewLeaseToken(int64_t previous) {
  while (true) {
    uint64_t bits = 0;
    size_t got = 0;
    while (got < sizeof(bits)) {
      const ssize_t n = getrandom(reinterpret_cast<char*>(&bits) + got, sizeof(bits) - got, 0);
      if (n > 0) got += static_cast<size_t>(n);  // EINTR and short reads: read the rest again
    }
    const int64_t token = static_cast<int64_t>(bits);
    if (token != 0 && token != previous) return token;
  }
}

void FamilyTally::Add(const std::vector<std::string>& f, int64_t n, bool with_triples) {
  for (size_t i = 0; i < f.size(); ++i) {
    families[f[i]] += n;
    for (size_t j = i + 1; j < f.size(); ++j) {
      pairs[{f[i], f[j]}] += n;
      if (!with_triples) continue;
      for (size_t l = j + 1; l < f.size(); ++l) triples[{f[i], f[j], f[l]}] += n;
    }
  }
}

void FamilyTally::AddCandidate(const std::vector<std::string>& f, const std::vector<int>& levels,
                               int64_t n, bool with_triples) {
  Add(f, n, with_triples);
  if (levels.empty()) return;
  for (auto& cell : LevelCells(levels, f)) cells[std::move(cell)] += n;
}

std::vector<int> AxisLevelCounts(const quartet::v1::CampaignConfig& config) {
  std::vector<int> out;
  for (const quartet::v1::ParameterAxis& axis : config.axes()) {
    if (axis.values_size() > 0) {
      out.push_back(axis.values_size());
    } else {
      out.push_back(axis.range().strata() > 0 ? axis.range().strata() : kDefaultAxisStrata);
    }
  }
  return out;
}

absl::Status CheckCampaignShape(const CampaignRecord& campaign) {
  const int pool = campaign.config.pool_size();
  if (campaign.config.without_families() && pool > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool: a campaign without families has no pool, got ", pool, " families"));
  }
  if (campaign.k < 0 || campaign.k > pool) {
    return absl::InvalidArgumentError(
        absl::StrCat("k: must be in [0, ", pool, "] (the pool size), got ", campaign.k));
  }
  return absl::OkStatus();
}

absl::Status CheckBudgetUpdate(int64_t campaign_id, const CampaignUpdate& update, int64_t issued) {
  if (!update.budget.has_value()) return absl::OkStatus();
  if (*update.budget < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget: must be at least 1, got ", *update.budget));
  }
  if (*update.budget < issued) {
    return absl::FailedPreconditionError(
        absl::StrCat("budget: campaign ", campaign_id, " has issued ", issued,
                     " candidates already; the budget cannot go below ", issued, " (asked for ",
                     *update.budget, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckAxisLevels(const NewCandidate& c, const std::vector<int>& level_counts) {
  if (c.levels.size() != level_counts.size() || c.axis_values.size() != c.levels.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("levels: candidate (rank ", c.rank, ", repeat ", c.repeat, ") has ",
                     c.levels.size(), " levels and ", c.axis_values.size(),
                     " axis values; the campaign has ", level_counts.size(), " axes"));
  }
  for (size_t a = 0; a < level_counts.size(); ++a) {
    if (c.levels[a] < 0 || c.levels[a] >= level_counts[a]) {
      return absl::InvalidArgumentError(
          absl::StrCat("levels: candidate (rank ", c.rank, ", repeat ", c.repeat, ") has level ",
                       c.levels[a], " on axis ", a, ", which has ", level_counts[a], " levels"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::tuple<int, int, std::string>> LevelCells(
    const std::vector<int>& levels, const std::vector<std::string>& families) {
  std::vector<std::tuple<int, int, std::string>> cells;
  cells.reserve(levels.size() * (families.size() + 1));
  for (size_t axis = 0; axis < levels.size(); ++axis) {
    cells.emplace_back(static_cast<int>(axis), levels[axis], std::string());
    for (const std::string& f : families)
      cells.emplace_back(static_cast<int>(axis), levels[axis], f);
  }
  return cells;
}

int64_t CheckpointFailures(const quartet::v1::Result& result) {
  return (result.resume_error().empty() ? 0 : 1) + (result.checkpoint_error().empty() ? 0 : 1);
}

quartet::v1::RungResult NewRungResult(const RungCompletion& plan, const quartet::v1::Result& result,
                                      absl::Time now) {
  quartet::v1::RungResult r;
  r.set_rung(plan.rung);
  r.set_epochs(plan.epochs);
  r.set_test_accuracy(result.test_accuracy());
  r.set_finished_unix_ms(absl::ToUnixMillis(now));
  return r;
}

void MarkPromoted(std::vector<quartet::v1::RungResult>& rungs, const Promotion& p) {
  for (quartet::v1::RungResult& r : rungs) {
    if (r.rung() != p.to_rung - 1) continue;
    r.set_promoted(true);
    r.set_guard(p.guard);
  }
}

absl::Status PromotionRefused(int64_t candidate_id, int64_t campaign_id) {
  return absl::FailedPreconditionError(absl::StrCat("promotion of candidate ", candidate_id,
                                                    ": not a STOPPED_EARLY candidate of campaign ",
                                                    campaign_id, "; nothing was stored"));
}

}  // namespace quartet::coordinator
