// The coordinator's persistence, behind an interface: PgStore (PostgreSQL, the source of truth in
// production) and MemoryStore (tests). tests/unit/store_conformance.h runs one suite against both.
//
// Every method is one atomic transaction: the state change, the campaign's counters and the
// coverage counters (per family, per pair, and per axis level and (family, level) cell of the
// candidate's LevelCells, by candidate state) change together or not at all.
// Implementations are thread-safe.
//
// Leases and fencing. LeaseNext gives the candidate a new, random lease token (NewLeaseToken):
// unguessable, and different from the candidate's previous one. RenewLease, AppendMetrics,
// CompleteCandidate and FailCandidate name (candidate, token, worker) and follow JudgeLease
// (records.h): NOT_FOUND when the candidate does not exist; FAILED_PRECONDITION, changing nothing,
// when the token is not its current lease or the worker is not the holder. A lease ended by
// ExpireLeases, with no newer lease granted since, is taken back by its holder's next call (the
// holder was cut off by an outage, not gone). Complete and Fail are idempotent: the same report
// again answers OK and changes nothing.
//
// Attempts and preemptions. Every lease raises `attempt` (metric points are keyed by it); a
// PREEMPTED failure also raises `preemptions`, so a graceful hand-back costs no attempt. Requeueing
// follows AfterLeaseEnds (records.h).
//
// Lock order (PgStore): campaign row, then candidate rows, then work-queue rows, in every
// transaction, so concurrent cancels, leases and reports cannot deadlock.
//
// Error codes: INVALID_ARGUMENT for malformed input, NOT_FOUND for unknown ids,
// FAILED_PRECONDITION for wrong states, UNAVAILABLE when the database cannot be reached (retry),
// ABORTED when a transaction lost a conflict after retries (retry), INTERNAL otherwise.
#ifndef QUARTET_COORDINATOR_STORAGE_STORE_H_
#define QUARTET_COORDINATOR_STORAGE_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/storage/records.h"

namespace quartet::coordinator {

class Store {
 public:
  virtual ~Store() = default;

  // ---- Campaigns ----

  // Stores a new RUNNING campaign (id, counters and times are assigned; issued = 0) and zero
  // coverage rows for every family of config.pool and every pair of them, and for every level of
  // every parameter axis (AxisLevelCounts) and every (level, pool family). INVALID_ARGUMENT when
  // CheckCampaignShape refuses it (k = 1 and k = 0 without families are allowed).
  virtual absl::StatusOr<CampaignRecord> CreateCampaign(const CampaignRecord& campaign,
                                                        absl::Time now) = 0;
  virtual absl::StatusOr<CampaignRecord> GetCampaign(int64_t campaign_id) = 0;
  // Newest first; `states` empty means all; `limit` 0 means no limit.
  virtual absl::StatusOr<std::vector<CampaignRecord>> ListCampaigns(
      const std::vector<CampaignState>& states, int64_t limit) = 0;
  // RUNNING or PAUSED -> CANCELLED: pending candidates become CANCELLED and leave the queue; leased
  // ones get cancel_requested (their worker is told at its next heartbeat). FAILED_PRECONDITION
  // when the campaign is already CANCELLED or DONE.
  virtual absl::StatusOr<CampaignRecord> CancelCampaign(int64_t campaign_id, absl::Time now) = 0;
  // RUNNING -> PAUSED (`paused` true) or PAUSED -> RUNNING (false). A paused campaign's candidates
  // are not leased (LeaseNext skips them); leased ones run on and report as usual, and a paused
  // campaign whose whole budget becomes final is DONE. Asking for the state the campaign is in
  // already changes nothing and answers OK. FAILED_PRECONDITION when the campaign is CANCELLED or
  // DONE.
  virtual absl::StatusOr<CampaignRecord> SetCampaignPaused(int64_t campaign_id, bool paused,
                                                           absl::Time now) = 0;
  // Changes the priority (queued candidates follow it at once) and the budget, in the record and
  // in its config. FAILED_PRECONDITION, changing nothing, when the campaign is CANCELLED or DONE or
  // the new budget is below the candidates issued already (the message says how many);
  // INVALID_ARGUMENT for a budget below 1. A budget equal to `issued` with no candidate open makes
  // the campaign DONE.
  virtual absl::StatusOr<CampaignRecord> UpdateCampaign(int64_t campaign_id,
                                                        const CampaignUpdate& update,
                                                        absl::Time now) = 0;

  // ---- Candidates ----

  // Creates PENDING candidates of a RUNNING campaign and queues them. FAILED_PRECONDITION when the
  // campaign is final or issued + candidates.size() would exceed its budget; ALREADY_EXISTS when a
  // (rank, repeat) exists already; INVALID_ARGUMENT for a family outside the pool or levels that
  // do not fit the campaign's axes (CheckAxisLevels). Nothing is inserted then.
  virtual absl::Status InsertCandidates(int64_t campaign_id,
                                        const std::vector<NewCandidate>& candidates,
                                        absl::Time now) = 0;

  // Leases the queued candidate of the highest-priority RUNNING campaign (then lowest candidate
  // id) to `worker_id` until now + lease, among those the worker can take: every family in its
  // registered families (an empty list means any), and est_memory_bytes within its
  // gpu_memory_bytes (0 means no limit). nullopt when the queue holds nothing leasable for it.
  // NOT_FOUND for an unregistered worker.
  virtual absl::StatusOr<std::optional<LeaseGrant>> LeaseNext(const std::string& worker_id,
                                                              absl::Time now,
                                                              absl::Duration lease) = 0;

  // Extends a live lease to now + lease; `cancel` says the campaign was cancelled.
  virtual absl::StatusOr<LeaseRenewal> RenewLease(int64_t candidate_id, int64_t token,
                                                  const std::string& worker_id, absl::Time now,
                                                  absl::Duration lease) = 0;

  // Stores metric points of the current attempt; points already stored (same attempt, step, name)
  // are ignored. Returns how many were new.
  virtual absl::StatusOr<int64_t> AppendMetrics(int64_t candidate_id, int64_t token,
                                                const std::string& worker_id,
                                                const std::vector<MetricRecord>& points) = 0;

  // LEASED -> SUCCEEDED with the result; updates the campaign's best and DONE when this was its
  // last open candidate of a fully issued budget. `final_metrics` (the per-epoch points) are stored
  // in the same transaction, so no SUCCEEDED candidate lacks them. The result's checkpoint and
  // exported model become the candidate's and are recorded as artifacts; a result with a
  // resume_error or checkpoint_error raises the campaign's checkpoint_failures.
  virtual absl::Status CompleteCandidate(int64_t candidate_id, int64_t token,
                                         const std::string& worker_id,
                                         const quartet::v1::Result& result,
                                         const std::vector<MetricRecord>& final_metrics,
                                         absl::Time now) = 0;

  // Multi-fidelity completion of the rung `plan.rung`: LEASED -> SUCCEEDED (plan.last_rung) or
  // STOPPED_EARLY with the result; a RungResult is appended to the candidate's rungs; then every
  // promotion of plan.promotions: STOPPED_EARLY (or the completing candidate) -> PENDING at
  // to_rung, queued ahead of the campaign's new candidates, its RungResult at the rung below marked
  // promoted (and guard). All in one transaction with the counters, so the campaign is not DONE
  // while a promotion is open. FAILED_PRECONDITION, changing nothing, when a promoted candidate of
  // another campaign or in another state is named. Otherwise as CompleteCandidate (fencing,
  // repeats, metrics, best, artifacts).
  virtual absl::Status CompleteRung(int64_t candidate_id, int64_t token,
                                    const std::string& worker_id, const quartet::v1::Result& result,
                                    const std::vector<MetricRecord>& final_metrics,
                                    const RungCompletion& plan, absl::Time now) = 0;

  // LEASED -> PENDING, CANCELLED or FAILED per AfterLeaseEnds; ERROR_CLASS_PREEMPTED counts a
  // preemption instead of an attempt. Returns the new state (the stored one for a repeat).
  virtual absl::StatusOr<CandidateState> FailCandidate(int64_t candidate_id, int64_t token,
                                                       const std::string& worker_id,
                                                       quartet::v1::ErrorClass error_class,
                                                       const std::string& message, bool retryable,
                                                       absl::Time now) = 0;

  // Ends every lease whose deadline is before `now` (ERROR_CLASS_LOST): back to PENDING while
  // attempts remain, FAILED when they are used up, CANCELLED when the campaign was cancelled.
  virtual absl::StatusOr<std::vector<ExpiredLease>> ExpireLeases(absl::Time now) = 0;

  virtual absl::StatusOr<CandidateRecord> GetCandidate(int64_t candidate_id) = 0;
  virtual absl::StatusOr<std::vector<CandidateRecord>> ListCandidates(
      const CandidateQuery& query) = 0;
  // Every stored point of a candidate, by (attempt, step, name).
  virtual absl::StatusOr<std::vector<MetricRecord>> GetMetrics(int64_t candidate_id) = 0;

  // ---- Artifacts ----

  // The campaign's artifacts not deleted, by id. NOT_FOUND for an unknown campaign.
  virtual absl::StatusOr<std::vector<ArtifactRecord>> ListArtifacts(int64_t campaign_id) = 0;
  // Marks artifacts deleted (their files are gone); a candidate whose checkpoint or exported model
  // was one of them no longer has it. Unknown or already deleted ids are skipped.
  virtual absl::Status MarkArtifactsDeleted(const std::vector<int64_t>& artifact_ids,
                                            absl::Time now) = 0;

  // ---- Coverage ----
  // Families and pairs in pool order, triples seen, and axis levels (CoverageCounters.levels).
  virtual absl::StatusOr<CoverageCounters> GetCoverage(int64_t campaign_id) = 0;

  // ---- Health ----

  // OK when the store can serve; UNAVAILABLE while its database cannot be reached.
  virtual absl::Status Ping() = 0;

  // ---- Workers ----

  // Stores a worker under worker.id (the core chooses ids): a new row, or, when the id exists, its
  // fields (secret_hash included) replaced and registered_at and draining kept. An empty id gets
  // "worker-N".
  virtual absl::StatusOr<WorkerRecord> RegisterWorker(const WorkerRecord& worker,
                                                      absl::Time now) = 0;
  // NOT_FOUND for an unknown id.
  virtual absl::StatusOr<WorkerRecord> GetWorker(const std::string& worker_id) = 0;
  // Every registered worker, by id, with the candidates it holds (and the latest epoch in their
  // current attempt's metrics) and its finished counts.
  virtual absl::StatusOr<std::vector<WorkerActivity>> ListWorkers() = 0;
  // Sets or clears the worker's draining mark. NOT_FOUND for an unknown id.
  virtual absl::StatusOr<WorkerRecord> SetWorkerDraining(const std::string& worker_id,
                                                         bool draining) = 0;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_STORE_H_
