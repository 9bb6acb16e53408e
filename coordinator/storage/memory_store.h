// Store kept in process memory. Same semantics as PgStore (the conformance suite holds both to
// them); for unit tests and for running a coordinator without PostgreSQL. Thread-safe: one mutex.
#ifndef QUARTET_COORDINATOR_STORAGE_MEMORY_STORE_H_
#define QUARTET_COORDINATOR_STORAGE_MEMORY_STORE_H_

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/storage/store.h"

namespace quartet::coordinator {

class MemoryStore : public Store {
 public:
  MemoryStore() = default;

  absl::StatusOr<CampaignRecord> CreateCampaign(const CampaignRecord& campaign,
                                                absl::Time now) override;
  absl::StatusOr<CampaignRecord> GetCampaign(int64_t campaign_id) override;
  absl::StatusOr<std::vector<CampaignRecord>> ListCampaigns(
      const std::vector<CampaignState>& states, int64_t limit) override;
  absl::StatusOr<CampaignRecord> CancelCampaign(int64_t campaign_id, absl::Time now) override;
  absl::StatusOr<CampaignRecord> SetCampaignPaused(int64_t campaign_id, bool paused,
                                                   absl::Time now) override;
  absl::StatusOr<CampaignRecord> UpdateCampaign(int64_t campaign_id, const CampaignUpdate& update,
                                                absl::Time now) override;
  absl::Status InsertCandidates(int64_t campaign_id, const std::vector<NewCandidate>& candidates,
                                absl::Time now) override;
  absl::StatusOr<std::optional<LeaseGrant>> LeaseNext(const std::string& worker_id, absl::Time now,
                                                      absl::Duration lease) override;
  absl::StatusOr<LeaseRenewal> RenewLease(int64_t candidate_id, int64_t token,
                                          const std::string& worker_id, absl::Time now,
                                          absl::Duration lease) override;
  absl::StatusOr<int64_t> AppendMetrics(int64_t candidate_id, int64_t token,
                                        const std::string& worker_id,
                                        const std::vector<MetricRecord>& points) override;
  absl::Status CompleteCandidate(int64_t candidate_id, int64_t token, const std::string& worker_id,
                                 const quartet::v1::Result& result,
                                 const std::vector<MetricRecord>& final_metrics,
                                 absl::Time now) override;
  absl::Status CompleteRung(int64_t candidate_id, int64_t token, const std::string& worker_id,
                            const quartet::v1::Result& result,
                            const std::vector<MetricRecord>& final_metrics,
                            const RungCompletion& plan, absl::Time now) override;
  absl::StatusOr<std::vector<ArtifactRecord>> ListArtifacts(int64_t campaign_id) override;
  absl::Status MarkArtifactsDeleted(const std::vector<int64_t>& artifact_ids,
                                    absl::Time now) override;
  absl::StatusOr<CandidateState> FailCandidate(int64_t candidate_id, int64_t token,
                                               const std::string& worker_id,
                                               quartet::v1::ErrorClass error_class,
                                               const std::string& message, bool retryable,
                                               absl::Time now) override;
  absl::StatusOr<std::vector<ExpiredLease>> ExpireLeases(absl::Time now) override;
  absl::StatusOr<CandidateRecord> GetCandidate(int64_t candidate_id) override;
  absl::StatusOr<std::vector<CandidateRecord>> ListCandidates(const CandidateQuery& query) override;
  absl::StatusOr<std::vector<MetricRecord>> GetMetrics(int64_t candidate_id) override;
  absl::StatusOr<CoverageCounters> GetCoverage(int64_t campaign_id) override;
  absl::StatusOr<WorkerRecord> RegisterWorker(const WorkerRecord& worker, absl::Time now) override;
  absl::StatusOr<WorkerRecord> GetWorker(const std::string& worker_id) override;
  absl::StatusOr<std::vector<WorkerActivity>> ListWorkers() override;
  absl::StatusOr<WorkerRecord> SetWorkerDraining(const std::string& worker_id,
                                                 bool draining) override;
  absl::Status Ping() override { return absl::OkStatus(); }

 private:
  struct CampaignData {
    CampaignRecord record;
    std::map<std::string, StateCounts> family;  // by family name
    std::map<std::pair<std::string, std::string>, StateCounts> pair;
    std::map<std::tuple<std::string, std::string, std::string>, int64_t> triple;
    // Levels per parameter axis (AxisLevelCounts) and the axis-coverage cells, by (axis, level,
    // family); family "" is the level row.
    std::vector<int> level_counts;
    std::map<std::tuple<int, int, std::string>, StateCounts> cell;
    std::set<std::pair<uint64_t, int>> keys;  // (rank, repeat)
  };

  // Moves a candidate between states, keeping campaign and coverage counters in step.
  void Transition(CandidateRecord& c, CandidateState to, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct CheckedLease {
    CandidateRecord* candidate;
    LeaseVerdict verdict;
  };
  // NOT_FOUND, or JudgeLease's verdict; a kRevive candidate is already back to LEASED.
  absl::StatusOr<CheckedLease> CheckLease(int64_t candidate_id, int64_t token,
                                          const std::string& worker_id, LeaseUse use,
                                          absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores points of the candidate's current attempt, ignoring ones already stored.
  int64_t StoreMetrics(const CandidateRecord& c, const std::vector<MetricRecord>& points)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The campaign, or NOT_FOUND / FAILED_PRECONDITION (CANCELLED or DONE) saying what was asked.
  absl::StatusOr<CampaignData*> OpenCampaign(int64_t campaign_id, const char* action)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The completion steps CompleteCandidate and CompleteRung share: metrics, result, best,
  // artifacts and checkpoint failures; the candidate moves to `to`.
  void StoreCompletion(CandidateRecord& c, const quartet::v1::Result& result,
                       const std::vector<MetricRecord>& final_metrics, CandidateState to,
                       int64_t token, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the campaign DONE when its budget is issued and nothing is open.
  void MaybeFinish(CampaignData& c, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  int64_t next_campaign_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_candidate_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_worker_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, CampaignData> campaigns_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, CandidateRecord> candidates_ ABSL_GUARDED_BY(mu_);
  // Queue of pending candidates: (-priority, -rung, candidate id); promoted work (a higher rung)
  // before new candidates of the same priority.
  using QueueKey = std::tuple<int, int, int64_t>;
  static QueueKey KeyOf(int priority, const CandidateRecord& c) {
    return {-priority, -c.rung, c.id};
  }
  std::set<QueueKey> queue_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, ArtifactRecord> artifacts_ ABSL_GUARDED_BY(mu_);
  int64_t next_artifact_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::tuple<int64_t, int, int64_t, std::string>, MetricRecord> metrics_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_MEMORY_STORE_H_
