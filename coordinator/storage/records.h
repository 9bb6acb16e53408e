// What the coordinator stores: campaigns, candidates, metric points, workers, coverage counters.
// Plain structs shared by the Store interface, its implementations and the core.
#ifndef QUARTET_COORDINATOR_STORAGE_RECORDS_H_
#define QUARTET_COORDINATOR_STORAGE_RECORDS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "quartet/v1/campaign.pb.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::coordinator {

// Numeric values equal the proto enums' (quartet.v1.CampaignState / CandidateState), which is also
// what the database stores.
enum class CampaignState { kRunning = 1, kPaused = 2, kCancelled = 3, kDone = 4 };
enum class CandidateState {
  kPending = 1,
  kLeased = 2,
  kSucceeded = 3,
  kFailed = 4,
  kCancelled = 5,
  // Multi-fidelity: stopped at a rung below the last; may still be promoted (back to PENDING).
  kStoppedEarly = 6
};

const char* CampaignStateName(CampaignState s);    // "RUNNING", ...
const char* CandidateStateName(CandidateState s);  // "PENDING", ...
inline bool IsFinal(CampaignState s) {
  return s == CampaignState::kCancelled || s == CampaignState::kDone;
}
// STOPPED_EARLY counts as final: nothing runs for it, and a campaign with nothing open is DONE.
inline bool IsFinal(CandidateState s) {
  return s == CandidateState::kSucceeded || s == CandidateState::kFailed ||
         s == CandidateState::kCancelled || s == CandidateState::kStoppedEarly;
}

struct StateCounts {
  int64_t pending = 0, leased = 0, succeeded = 0, failed = 0, cancelled = 0, stopped_early = 0;

  int64_t total() const { return pending + leased + final_count(); }
  int64_t final_count() const { return succeeded + failed + cancelled + stopped_early; }
  int64_t& at(CandidateState s);
  int64_t at(CandidateState s) const;
  bool operator==(const StateCounts& o) const {
    return pending == o.pending && leased == o.leased && succeeded == o.succeeded &&
           failed == o.failed && cancelled == o.cancelled && stopped_early == o.stopped_early;
  }
};

struct CampaignRecord {
  // Assigned by the store.
  int64_t id = 0;
  // Complete config: defaults filled, pool resolved to model names in catalog order, recipe with
  // every field set. The fields below repeat what the store indexes or the hot paths need.
  quartet::v1::CampaignConfig config;
  std::string name;
  int k = 4;
  int64_t budget = 0;
  int max_attempts = 3;
  // Graceful hand-backs (PREEMPTED) a candidate may take before it is FAILED; they cost no attempt.
  int max_preemptions = 20;
  int priority = 0;
  CampaignState state = CampaignState::kRunning;
  // Candidates created so far (<= budget) and their states.
  int64_t issued = 0;
  StateCounts counts;
  // Best succeeded candidate (0 / -1 when none).
  double best_accuracy = 0;
  int64_t best_candidate_id = 0;
  // Sum of wall seconds of succeeded candidates (and of rungs completed, multi-fidelity).
  double succeeded_seconds = 0;
  // Resumes that found their checkpoint missing or corrupt, plus checkpoint writes that failed
  // (Result.resume_error, Result.checkpoint_error).
  int64_t checkpoint_failures = 0;
  absl::Time created_at = absl::InfinitePast();
  absl::Time updated_at = absl::InfinitePast();
  // InfinitePast while not final.
  absl::Time finished_at = absl::InfinitePast();
};

// A candidate to create.
struct NewCandidate {
  uint64_t rank = 0;
  int repeat = 0;
  // Model names of the combination, in pool (catalog) order.
  std::vector<std::string> families;
  // Estimated device memory to train it (coordinator/core/memory_estimate.h); 0 = unknown.
  int64_t est_memory_bytes = 0;
  // Its level on every parameter axis of the campaign (config order), and the value applied on
  // each as text; both empty for a campaign without axes.
  std::vector<int> levels;
  std::vector<std::string> axis_values;
};

struct CandidateRecord {
  int64_t id = 0;
  int64_t campaign_id = 0;
  uint64_t rank = 0;
  int repeat = 0;
  std::vector<std::string> families;
  // Estimated device memory to train it; 0 = unknown.
  int64_t est_memory_bytes = 0;
  // Level and applied value per parameter axis (see NewCandidate).
  std::vector<int> levels;
  std::vector<std::string> axis_values;
  CandidateState state = CandidateState::kPending;
  // Leases taken so far; the current (or last) lease's attempt number. Metric points are keyed by
  // it.
  int attempt = 0;
  // Leases of those that ended in a graceful hand-back (PREEMPTED); attempts used = attempt -
  // preemptions.
  int preemptions = 0;
  // Current (or last) lease: fencing token, holder, expiry.
  int64_t lease_token = 0;
  std::string worker_id;
  absl::Time lease_deadline = absl::InfinitePast();
  // Set by CancelCampaign for a leased candidate: the next heartbeat tells the worker to stop.
  bool cancel_requested = false;
  // Present when SUCCEEDED.
  std::optional<quartet::v1::Result> result;
  double test_accuracy = 0;
  // Multi-fidelity: the rung it trains toward or stopped at (0 otherwise), and its result at every
  // rung completed, in order.
  int rung = 0;
  std::vector<quartet::v1::RungResult> rungs;
  // Its newest checkpoint and exported model not deleted (unset when none).
  std::optional<quartet::v1::Artifact> checkpoint;
  std::optional<quartet::v1::Artifact> exported_model;
  // The lease token of its last completion (0 when none): a repeat of that completion answers OK
  // even after the candidate moved on (promoted, requeued at the next rung).
  int64_t completed_token = 0;
  // Set when FAILED (or the last failed attempt's when requeued).
  quartet::v1::ErrorClass error_class = quartet::v1::ERROR_CLASS_UNSPECIFIED;
  std::string error_message;
  absl::Time created_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
};

// A promotion to the next rung (multi-fidelity): STOPPED_EARLY (or the completing candidate) ->
// PENDING at `to_rung`.
struct Promotion {
  int64_t candidate_id = 0;
  int to_rung = 0;
  // By the coverage guard rather than the top-1/eta rule.
  bool guard = false;
};

// What the core decided for a completion at a rung (coordinator/core/asha.h).
struct RungCompletion {
  // The rung completed and its epochs.
  int rung = 0;
  int epochs = 0;
  // The last rung: SUCCEEDED; else STOPPED_EARLY unless a promotion names the candidate.
  bool last_rung = false;
  std::vector<Promotion> promotions;
};

// A checkpoint or exported model a candidate reported.
enum class ArtifactKind { kCheckpoint = 1, kExportedModel = 2 };
struct ArtifactRecord {
  int64_t id = 0;
  int64_t candidate_id = 0;
  int64_t campaign_id = 0;
  ArtifactKind kind = ArtifactKind::kCheckpoint;
  quartet::v1::Artifact artifact;
  absl::Time created_at = absl::InfinitePast();
};

// A lease just granted.
struct LeaseGrant {
  CandidateRecord candidate;
  // The campaign's stored config (recipe, data) to build the spec from.
  quartet::v1::CampaignConfig config;
};

struct LeaseRenewal {
  absl::Time deadline;
  bool cancel = false;
};

// A lease the expiry sweep ended.
struct ExpiredLease {
  int64_t candidate_id = 0;
  int64_t campaign_id = 0;
  std::string worker_id;
  int attempt = 0;
  // PENDING (requeued), FAILED (attempts used up) or CANCELLED (campaign cancelled).
  CandidateState new_state = CandidateState::kPending;
};

struct MetricRecord {
  int64_t candidate_id = 0;
  int attempt = 0;
  int64_t step = 0;
  int epoch = 0;
  std::string name;
  double value = 0;
  int64_t time_unix_ms = 0;
};

struct WorkerRecord {
  std::string id;
  std::string host;
  std::string device;
  std::string gpu_name;
  int64_t gpu_memory_bytes = 0;
  std::vector<std::string> families;
  std::string version;
  // SHA-256 (hex) of the worker's session secret.
  std::string secret_hash;
  absl::Time registered_at = absl::InfinitePast();
  absl::Time last_seen_at = absl::InfinitePast();
  // Set by an operator (Store::SetWorkerDraining): the worker finishes the candidates it holds,
  // is leased nothing more and exits. Kept when the worker re-attaches under the same id.
  bool draining = false;
};

// A candidate a worker holds, and how far its current attempt got.
struct HeldCandidate {
  CandidateRecord candidate;
  // The largest epoch among the metric points of its current attempt; 0 when it has none.
  int epoch = 0;
};

// A worker and what it is doing, for the operator's fleet view (Store::ListWorkers).
struct WorkerActivity {
  WorkerRecord worker;
  // Candidates LEASED to it now, by id.
  std::vector<HeldCandidate> leased;
  // Candidates whose last holder it was that SUCCEEDED, and that FAILED.
  int64_t succeeded = 0;
  int64_t failed = 0;
};

// What Store::UpdateCampaign changes; an unset field stays as it is.
struct CampaignUpdate {
  std::optional<int> priority;
  std::optional<int64_t> budget;
};

// Coverage counters of one campaign, by candidate state.
struct FamilyCounter {
  std::string family;
  StateCounts counts;
};
struct PairCounter {
  std::string family_a, family_b;  // family_a before family_b in pool order
  StateCounts counts;
};
struct TripleCounter {
  std::string family_a, family_b, family_c;
  int64_t issued = 0;
};
// One level of a parameter axis (family empty), or one (family, level) cell.
struct LevelCounter {
  int axis = 0;
  int level = 0;
  std::string family;
  StateCounts counts;
};
struct CoverageCounters {
  // Every pool family, in pool order.
  std::vector<FamilyCounter> families;
  // Every pair of pool families, in pool order.
  std::vector<PairCounter> pairs;
  // Triples seen at least once.
  std::vector<TripleCounter> triples;
  // Every axis level and every (family, level) cell: by axis, then level, then family (the level
  // row, family "", first; then pool order).
  std::vector<LevelCounter> levels;
};

// Strata of a CONTINUOUS axis when ContinuousRange.strata is unset.
inline constexpr int kDefaultAxisStrata = 8;

// Levels of every parameter axis of a campaign, in config order: the number of values of a
// CATEGORICAL axis, the strata of a CONTINUOUS one (kDefaultAxisStrata when unset).
std::vector<int> AxisLevelCounts(const quartet::v1::CampaignConfig& config);

// The axis-coverage cells a candidate counts in: (axis, level, "") and (axis, level, family) for
// each of its families, for every axis. The one place these keys are formed.
std::vector<std::tuple<int, int, std::string>> LevelCells(const std::vector<int>& levels,
                                                          const std::vector<std::string>& families);

// INVALID_ARGUMENT unless k is in [0, pool size], and the pool is empty for a campaign without
// families (config.without_families). A pool of one family (k = 1) or none (k = 0) is allowed.
absl::Status CheckCampaignShape(const CampaignRecord& campaign);

// INVALID_ARGUMENT unless the candidate has one level per axis of `level_counts` (AxisLevelCounts),
// each in [0, count), and one axis value per level.
absl::Status CheckAxisLevels(const NewCandidate& candidate, const std::vector<int>& level_counts);

// ---- Rules both stores apply (written once here)
// -------------------------------------------------

// What a call naming a lease wants to do with it.
enum class LeaseUse { kRenew, kMetrics, kComplete, kFail };

// How a call naming (token, worker) stands against the candidate's current lease.
enum class LeaseVerdict {
  // The candidate is LEASED under this lease: go ahead.
  kLive,
  // The lease ran out and the sweep ended it (PENDING, or FAILED with attempts used up), and no
  // newer lease was granted: the holder is still working on it. Take the candidate back to LEASED
  // under the same lease, then go ahead. A result is never refused for an outage it did not cause.
  kRevive,
  // The same report arrived again (its answer was lost): answer OK and change nothing. For
  // metrics: store the points (they are idempotent), change no state.
  kRepeat,
};

// The candidate's side of the fencing check.
struct LeaseFacts {
  CandidateState state = CandidateState::kPending;
  int64_t token = 0;
  std::string holder;
  quartet::v1::ErrorClass error_class = quartet::v1::ERROR_CLASS_UNSPECIFIED;
  // CandidateRecord::completed_token.
  int64_t completed_token = 0;
};

// The fencing rule. FAILED_PRECONDITION, naming neither the current token nor the holder, when the
// token is not the candidate's current lease or `worker_id` does not hold it, or when the lease
// ended in a way `use` cannot follow (a heartbeat after completion, a completion after a failure).
// A completion or metrics naming the lease of the candidate's last completion (completed_token)
// are a kRepeat whatever state the candidate moved on to (promoted to the next rung).
absl::StatusOr<LeaseVerdict> JudgeLease(int64_t candidate_id, const LeaseFacts& current,
                                        int64_t token, const std::string& worker_id, LeaseUse use);

// Where a candidate goes when its lease ends without a result: CANCELLED when the campaign was
// cancelled; PENDING when `retryable` and attempts remain (a preemption, counted in `preemptions`
// already, costs no attempt but is capped at `max_preemptions`); FAILED otherwise.
CandidateState AfterLeaseEnds(CampaignState campaign, bool retryable, bool preempted, int attempt,
                              int preemptions, int max_attempts, int max_preemptions);

// The budget rule of Store::UpdateCampaign (both stores): INVALID_ARGUMENT for a budget below 1,
// FAILED_PRECONDITION for one below `issued`, naming the issued count. OK without a budget.
absl::Status CheckBudgetUpdate(int64_t campaign_id, const CampaignUpdate& update, int64_t issued);

// Capability-aware leasing: whether `worker` can train a candidate of `families` estimated at
// `est_memory_bytes` (every family in worker.families unless that is empty; the estimate within
// worker.gpu_memory_bytes unless either is 0). PgStore applies the same rule in SQL.
bool WorkerCanTake(const WorkerRecord& worker, const std::vector<std::string>& families,
                   int64_t est_memory_bytes);

// A new fencing token: 64 random bits from the kernel's CSPRNG (getrandom; any sign), never 0 and
// never `previous`, so a token can be neither guessed nor derived from another lease's.
int64_t NewLeaseToken(int64_t previous);

// Per-family, per-pair, per-triple and per-axis-level counts of a set of candidates, in key order.
// The one place candidates are tallied into coverage deltas.
struct FamilyTally {
  std::map<std::string, int64_t> families;
  std::map<std::pair<std::string, std::string>, int64_t> pairs;
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> triples;
  // Axis-coverage cells (axis, level, family; family "" for the level row), see LevelCells.
  std::map<std::tuple<int, int, std::string>, int64_t> cells;

  // Counts one combination (families in pool order) `n` times; triples only with `triples`.
  void Add(const std::vector<std::string>& combination, int64_t n = 1, bool with_triples = false);
  // Counts one candidate `n` times: its combination (as Add) and its LevelCells.
  void AddCandidate(const std::vector<std::string>& families, const std::vector<int>& levels,
                    int64_t n = 1, bool with_triples = false);
};

// ---- Multi-fidelity and artifact rules both stores apply ----

// 1 for each of a result's resume_error and checkpoint_error that is set (the campaign's
// checkpoint_failures).
int64_t CheckpointFailures(const quartet::v1::Result& result);
// The RungResult a completion at plan.rung appends to the candidate's rungs (promoted when a
// promotion of plan names the candidate itself is applied by MarkPromoted).
quartet::v1::RungResult NewRungResult(const RungCompletion& plan, const quartet::v1::Result& result,
                                      absl::Time now);
// Marks the RungResult of the rung below p.to_rung promoted (and guard).
void MarkPromoted(std::vector<quartet::v1::RungResult>& rungs, const Promotion& p);
// FAILED_PRECONDITION for a promotion naming a candidate that is not STOPPED_EARLY in
// `campaign_id`.
absl::Status PromotionRefused(int64_t candidate_id, int64_t campaign_id);

struct CandidateQuery {
  int64_t campaign_id = 0;
  // Empty means every state.
  std::vector<CandidateState> states;
  // Best test accuracy first (else id order).
  bool by_accuracy = false;
  // 0 means no limit.
  int64_t limit = 0;
  // Only candidates with a larger id (a page after this id); 0 means from the first. Only with
  // id order (by_accuracy false).
  int64_t after_id = 0;
  // Leave CandidateRecord::result unset: the stored result document is neither read nor parsed
  // (test_accuracy, state, times and identity remain). For reports over many candidates.
  bool without_results = false;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_RECORDS_H_
