// The coordinator's business logic: campaigns, candidate issuing through samplers, the worker
// protocol (leases, heartbeats, metrics, completion), the lease-expiry sweep, and the coverage and
// yield reports. No gRPC and no SQL here: the service layer adapts gRPC to this class, the Store
// persists.
//
// State. PostgreSQL (the Store) holds every fact. In memory the core keeps, per running campaign,
// its combination space and sampler, rebuilt from the store by Create() after a restart (the
// drawn combinations and the succeeded results), so the samplers carry on exactly.
//
// Issuing. Candidates are created lazily: each running campaign keeps `issue_ahead` candidates
// PENDING (a drawn combination yields `repeats` candidates at once), topped up when candidates are
// leased and when results arrive, so adaptive sampling sees results before it draws again. Above 4,
// the top-up waits until a quarter of issue_ahead is used (or the queue is empty, or the rest of
// the budget fits), so issuing costs one transaction per batch rather than one per completion.
// The core counts the leases it grants against the last count it read, so a lease or a result
// reads the store only when a batch may be due; with Options::issue_in_background the batch is
// then written on a thread of its own.
//
// Thread safety: every public method is thread-safe. Each campaign's sampler has its own mutex,
// held while drawing and inserting the draws (issuing is serialised per campaign).
#ifndef QUARTET_COORDINATOR_CORE_COORDINATOR_CORE_H_
#define QUARTET_COORDINATOR_CORE_COORDINATOR_CORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "coordinator/core/asha.h"
#include "coordinator/core/campaign_config.h"
#include "coordinator/core/core_events.h"
#include "coordinator/storage/store.h"
#include "quartet/v1/campaign.pb.h"
#include "quartet/v1/worker.pb.h"

namespace quartet::coordinator {

class CoordinatorCore {
 public:
  struct Options {
    // A lease not renewed for this long expires and its candidate returns to PENDING.
    absl::Duration lease = absl::Seconds(60);
    // Heartbeat interval suggested to workers (default lease / 4).
    absl::Duration heartbeat_interval = absl::ZeroDuration();
    // How often the expiry sweep runs and the database is checked (default lease / 4, between
    // 100 ms and 1 s).
    absl::Duration sweep_interval = absl::ZeroDuration();
    // No lease expires until this long after Start() and after the database comes back from an
    // outage, so workers cut off by the outage can renew first (default: one lease).
    absl::Duration grace = absl::ZeroDuration();
    // PENDING candidates each running campaign keeps ready.
    int issue_ahead = 4;
    // Tops queues up after leases and results on a thread of its own (started by Start()), so
    // those calls do not wait for the insert; a lease that finds no work still tops up at once.
    // Off: they top up before they return.
    bool issue_in_background = false;
    // What LeaseCandidate tells a worker when there is no work.
    absl::Duration retry_after = absl::Seconds(2);
    // Told of leases and worker calls as they happen (metrics). Not owned; must outlive the core.
    // nullptr: nobody is told.
    CoreEvents* events = nullptr;
  };

  // Rebuilds the samplers of running campaigns from `store`. Neither pointer is owned; both must
  // outlive the core.
  static absl::StatusOr<std::unique_ptr<CoordinatorCore>> Create(const Options& options,
                                                                 Store* store,
                                                                 common::Clock* clock);
  ~CoordinatorCore();

  // Starts / stops the background lease-expiry sweep. Stop() is idempotent and waits.
  void Start();
  void Stop();

  // Runs one expiry sweep now, whatever the grace period. Returns how many leases ended.
  absl::StatusOr<int> SweepExpiredLeases();

  // One tick of the background loop: checks the database, then sweeps unless the database is
  // unreachable or a grace period is running. Returns how many leases ended.
  absl::StatusOr<int> Tick();

  // False while the database cannot be reached (health reports NOT_SERVING then).
  bool serving();

  // Change notification for watchers: a counter raised by every change the core makes to a
  // campaign or its candidates (submit, lease, report, expiry, cancel). WaitForChange blocks until
  // the counter passes `seen` or `timeout` passes (real time) and returns the counter; Wake() ends
  // every wait at once (shutdown).
  uint64_t change_version();
  uint64_t WaitForChange(uint64_t seen, absl::Duration timeout);
  void Wake();

  // ---- Operator API ----

  // Validates (see ResolveCampaign), stores and starts issuing. Nothing is stored on error.
  absl::StatusOr<quartet::v1::Campaign> SubmitCampaign(const quartet::v1::CampaignConfig& config);
  absl::StatusOr<quartet::v1::Campaign> GetCampaign(int64_t campaign_id);
  absl::StatusOr<std::vector<quartet::v1::Campaign>> ListCampaigns(
      const std::vector<quartet::v1::CampaignState>& states, int limit);
  absl::StatusOr<quartet::v1::Campaign> CancelCampaign(int64_t campaign_id);
  absl::StatusOr<quartet::v1::CoverageReport> GetCoverageReport(int64_t campaign_id,
                                                                bool include_all_pairs);
  absl::StatusOr<quartet::v1::YieldReport> GetYieldReport(int64_t campaign_id, int min_samples,
                                                          int top);
  absl::StatusOr<std::vector<quartet::v1::CandidateSummary>> ListResults(
      const quartet::v1::ListResultsRequest& request);
  // One candidate with its result and axis values. INVALID_ARGUMENT for an id <= 0, NOT_FOUND for
  // an unknown one.
  absl::StatusOr<quartet::v1::CandidateSummary> GetCandidate(int64_t candidate_id);
  // RUNNING -> PAUSED (nothing more is leased or issued; leased candidates finish) and back
  // (issuing resumes). OK when already in that state; FAILED_PRECONDITION for a CANCELLED or DONE
  // campaign.
  absl::StatusOr<quartet::v1::Campaign> PauseCampaign(int64_t campaign_id);
  absl::StatusOr<quartet::v1::Campaign> ResumeCampaign(int64_t campaign_id);
  // Priority and budget (Store::UpdateCampaign). INVALID_ARGUMENT when neither is set or the
  // budget is more than the space holds; a raised budget issues more candidates at once.
  absl::StatusOr<quartet::v1::Campaign> UpdateCampaign(
      const quartet::v1::UpdateCampaignRequest& request);

  // The candidate's exported model (TorchScript) and its bytes, read from the artifact store and
  // checked against its size and sha256. NOT_FOUND when the candidate has none kept; DATA_LOSS
  // (the message names the file) when the file is missing or damaged.
  absl::StatusOr<std::pair<quartet::v1::Artifact, std::string>> ExportedModel(int64_t candidate_id);

  // ---- Fleet ----

  // Every registered worker with the candidates it holds (epoch from their metrics).
  absl::StatusOr<std::vector<quartet::v1::WorkerInfo>> ListWorkers();
  // Sets (drain) or clears the worker's draining mark; see LeaseCandidateResponse.drain.
  // INVALID_ARGUMENT for an empty id, NOT_FOUND for an unknown one.
  absl::StatusOr<quartet::v1::WorkerInfo> DrainWorker(const std::string& worker_id, bool drain);

  // ---- Worker API ----

  absl::StatusOr<quartet::v1::RegisterWorkerResponse> RegisterWorker(
      const quartet::v1::RegisterWorkerRequest& request);
  // Worker calls carry (worker_id, session_secret) from RegisterWorker: NOT_FOUND for an unknown
  // worker, PERMISSION_DENIED when the secret does not match.
  absl::StatusOr<quartet::v1::LeaseCandidateResponse> LeaseCandidate(
      const quartet::v1::LeaseCandidateRequest& request);
  absl::StatusOr<quartet::v1::HeartbeatResponse> Heartbeat(
      const quartet::v1::HeartbeatRequest& request);
  // Stores one metric batch; returns how many points were new.
  absl::StatusOr<int64_t> AppendMetrics(const quartet::v1::MetricBatch& batch);
  absl::Status CompleteCandidate(const quartet::v1::CompleteCandidateRequest& request);
  absl::StatusOr<quartet::v1::FailCandidateResponse> FailCandidate(
      const quartet::v1::FailCandidateRequest& request);

 private:
  // A running campaign's combination space and sampler.
  struct Runtime {
    ResolvedCampaign campaign;
    std::unique_ptr<space::ProductSpace> space;
    absl::Mutex mu;
    std::unique_ptr<space::Sampler> sampler ABSL_GUARDED_BY(mu);
    // Combinations the sampler could not supply any more (space exhausted).
    bool exhausted ABSL_GUARDED_BY(mu) = false;
    // Multi-fidelity campaigns: the promotion state (null otherwise).
    std::unique_ptr<Asha> asha ABSL_GUARDED_BY(mu);
    // A multi-fidelity campaign (asha is set). Written before the runtime is shared.
    bool fidelity = false;
    // Serialises issuing (the store read, the draws and their insert); taken before mu, which is
    // held only while drawing, so results are observed while an insert runs.
    absl::Mutex issue_mu ABSL_ACQUIRED_BEFORE(mu);
    // A lower bound of the campaign's PENDING candidates: the count Refill last read plus what it
    // issued, less the leases granted since (failures and expiries only add to the true count);
    // -1 when unknown. Lets a top-up after a lease or a result skip the store while the queue is
    // full enough.
    std::atomic<int64_t> pending_floor{-1};
  };

  // What a lease handed out: the facts of its candidate that never change, so the completion of
  // the lease need not read the candidate first.
  struct LeasedCandidate {
    int64_t campaign_id = 0;
    int64_t token = 0;
    uint64_t rank = 0;
    std::vector<std::string> families;
  };

  CoordinatorCore(const Options& options, Store* store, common::Clock* clock);

  // Builds the runtime of a stored campaign, replaying its drawn combinations and results.
  absl::StatusOr<std::shared_ptr<Runtime>> Rebuild(const CampaignRecord& record);
  std::shared_ptr<Runtime> RuntimeOf(int64_t campaign_id);
  void DropRuntime(int64_t campaign_id);
  // Tops the campaign's PENDING candidates up to issue_ahead (bounded by the budget). With
  // `may_skip`, returns without reading the store while Runtime::pending_floor shows the queue
  // full enough (after a lease or a result; the operator's changes pass false).
  absl::Status Refill(int64_t campaign_id, bool may_skip = false);
  // Whether Runtime::pending_floor shows the queue full enough that a top-up would issue nothing.
  bool FullEnough(const Runtime& rt) const;
  // Draws the next `need` candidates (at most `remaining`) from the campaign's sampler.
  absl::StatusOr<std::vector<NewCandidate>> Draw(Runtime& rt, int64_t need, int64_t remaining)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rt.mu);
  // Refill(campaign_id, may_skip = true) after a lease or a result: on the issuing thread when
  // Options::issue_in_background (and Start() ran), else at once. Failures are logged.
  void RefillSoon(int64_t campaign_id);
  void IssueLoop();
  absl::Status RefillAll();
  // Multi-fidelity: the epoch budget cannot pay another new candidate; the candidate budget
  // becomes what was issued, so the campaign is DONE once nothing is open.
  absl::Status CloseIssuing(const CampaignRecord& record, const Asha& asha);
  absl::StatusOr<quartet::v1::Campaign> ToProto(const CampaignRecord& record);
  quartet::v1::CandidateSpec SpecOf(const LeaseGrant& grant) const;
  // The worker identity check of every worker call (see LeaseCandidate).
  absl::Status CheckWorker(const std::string& worker_id, const std::string& session_secret);
  // Whether a worker that passed CheckWorker is draining (from the cache CheckWorker fills).
  bool Draining(const std::string& worker_id);
  // Stores the pause or resume and logs it.
  absl::StatusOr<quartet::v1::Campaign> SetPaused(int64_t campaign_id, bool paused);
  // A worker and its candidates as the operator sees them.
  absl::StatusOr<quartet::v1::WorkerInfo> ToWorkerInfo(const WorkerActivity& activity);
  // Metric points as records; a point without time gets now. INVALID_ARGUMENT names `field`.
  absl::StatusOr<std::vector<MetricRecord>> ToMetricRecords(
      const google::protobuf::RepeatedPtrField<quartet::v1::MetricPoint>& points,
      const char* field);
  void SweepLoop();
  // Multi-fidelity completion: decides promotions under the campaign's lock, stores them with the
  // result in one transaction, then applies them.
  absl::Status CompleteAtRung(const quartet::v1::CompleteCandidateRequest& request,
                              const std::vector<MetricRecord>& final_metrics,
                              const std::shared_ptr<Runtime>& rt);
  // Deletes the campaign's artifacts it no longer needs: checkpoints and exports superseded by a
  // newer one of the same candidate, and those of candidates outside the best
  // keep_best_checkpoints (by accuracy) that cannot be promoted any more (STOPPED_EARLY ones are
  // kept while Asha::MayStillPromote; open ones keep their newest checkpoint to resume from).
  // Logs what it removed. Failures are logged, never returned: a file left behind costs space,
  // not correctness.
  void PruneArtifacts(int64_t campaign_id);
  // The runtime of a campaign for its reports: the live one, or one rebuilt from the store for a
  // finished campaign (nullptr when that fails).
  std::shared_ptr<Runtime> ReportRuntime(int64_t campaign_id);
  // Multi-fidelity: per family and pair of the yield report, completions and mean accuracy per
  // rung.
  void FillRungYield(int64_t campaign_id, quartet::v1::YieldReport* out);
  // Multi-fidelity: the epochs a campaign was granted (rebuilt from the store once it is final).
  int64_t EpochsCommitted(const CampaignRecord& record);
  // Multi-fidelity: the epochs, the promotion state and the rung rows of a campaign's reports.
  void FillFidelity(int64_t campaign_id, const StateCounts& counts,
                    quartet::v1::CoverageReport* report);

  const Options options_;
  Store* const store_;
  common::Clock* const clock_;

  absl::Mutex mu_;
  std::map<int64_t, std::shared_ptr<Runtime>> runtimes_ ABSL_GUARDED_BY(mu_);
  // Multi-fidelity campaigns that are final: the epochs they were granted (they never change).
  std::map<int64_t, int64_t> final_epochs_ ABSL_GUARDED_BY(mu_);

  void Changed();

  // Per known worker, the SHA-256 of its session secret and its draining mark (a cache of the
  // store's; the core is the only writer of both).
  struct WorkerAuth {
    std::string secret_hash;
    bool draining = false;
  };
  absl::Mutex workers_mu_;
  std::map<std::string, WorkerAuth> workers_ ABSL_GUARDED_BY(workers_mu_);

  // Leases this core handed out and not yet saw end, by candidate id.
  absl::Mutex leased_mu_;
  std::map<int64_t, LeasedCandidate> leased_ ABSL_GUARDED_BY(leased_mu_);
  // The lease's entry of leased_, removed; nullopt when there is none for this token.
  std::optional<LeasedCandidate> TakeLeased(int64_t candidate_id, int64_t token);

  absl::Mutex change_mu_;
  uint64_t change_version_ ABSL_GUARDED_BY(change_mu_) = 0;
  bool woken_ ABSL_GUARDED_BY(change_mu_) = false;

  absl::Mutex health_mu_;
  bool store_available_ ABSL_GUARDED_BY(health_mu_) = true;
  // Leases expire only from this time on (grace after start and after a database outage).
  absl::Time expire_not_before_ ABSL_GUARDED_BY(health_mu_) = absl::InfinitePast();

  absl::Mutex sweep_mu_;
  bool stopping_ ABSL_GUARDED_BY(sweep_mu_) = false;
  std::thread sweeper_;

  // Background issuing (Options::issue_in_background): campaigns to top up.
  absl::Mutex issuer_mu_;
  std::set<int64_t> to_issue_ ABSL_GUARDED_BY(issuer_mu_);
  bool issuing_ ABSL_GUARDED_BY(issuer_mu_) = false;  // the issuer runs
  std::thread issuer_;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_COORDINATOR_CORE_H_
