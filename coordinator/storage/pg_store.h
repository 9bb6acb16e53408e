// Store on PostgreSQL (libpqxx), the coordinator's source of truth.
//
// Create() connects, takes an advisory lock and applies every migration the database lacks
// (coordinator/storage/migrations/*.sql, compiled in), each in its own transaction, so several
// coordinators starting at once migrate exactly once. Every Store method is one transaction on a
// pooled connection; serialization failures and deadlocks are retried (then ABORTED). A connection
// found broken before commit (a database restart) is replaced, with the whole pool, and the
// transaction runs once more; when that fails too the call gets UNAVAILABLE. Every new connection
// asks Options::url_source for the URL, so a database that moved is found without a restart.
// libpqxx exceptions never leave this class. Thread-safe.
//
// Group commit. With Options::group_commit_window above zero, LeaseNext, RenewLease,
// CompleteCandidate, CompleteRung and FailCandidate are queued and written by one writer thread,
// many calls to one transaction: a call that finds the writer idle is written at once; calls that
// arrive while it writes wait at most the window for the next transaction. Each call still
// returns only after the transaction holding it committed, with its own answer. The leases of a
// group are written together (one claim per kind of worker) and so are its completions (one read,
// one update), each batch under one savepoint; the other calls run under a savepoint each. A
// refusal (NOT_FOUND, FAILED_PRECONDITION, ...) changes nothing of its call; a batch that fails
// otherwise is rolled back and written again a call at a time. An error that ends the whole
// transaction (a lost conflict after retries, a broken connection, a commit whose outcome is
// unknown) is every call's answer, with the codes above. Campaign counters, coverage rows and the
// campaign's best are written once per transaction with the summed changes, in one round trip.
// The statements of lease transitions are prepared on every pooled connection.
// Lock order, in every transaction: campaign rows (a group locks all it needs first, by id), then
// candidate rows, then work-queue rows; the claim skips queue rows another transaction holds.
#ifndef QUARTET_COORDINATOR_STORAGE_PG_STORE_H_
#define QUARTET_COORDINATOR_STORAGE_PG_STORE_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/storage/store.h"

namespace pqxx {
class connection_base;
class dbtransaction;
}  // namespace pqxx

namespace quartet::coordinator {

class PgStore : public Store {
 public:
  struct Options {
    // libpq connection string or URI, e.g. "postgresql://quartet@127.0.0.1:5432/quartet".
    std::string url;
    // When set, asked for the URL at every new connection (for example: re-read a URL file), so a
    // database that came back elsewhere is found without a restart. `url` is then unused.
    std::function<absl::StatusOr<std::string>()> url_source;
    // Schema holding the tables; created when missing. Empty means the connection's default
    // (public). Tests use a fresh schema each.
    std::string schema;
    // Connections kept open; calls beyond that wait for a free one.
    int pool_size = 4;
    // Attempts of a transaction that lost a serialization conflict or a deadlock.
    int max_retries = 5;
    // When set, told after every transaction (Store call) how long it took from acquiring a
    // connection to its end, retries included, and how it ended. Called on the calling thread, with
    // no lock held; must be thread-safe and quick (metrics).
    std::function<void(absl::Duration elapsed, const absl::Status& status)> on_transaction;
    // Group commit (see above): how long a lease, heartbeat, completion or failure waits at most
    // for others to share its transaction. Zero: each call is its own transaction.
    absl::Duration group_commit_window = absl::Milliseconds(2);
    // Calls one group transaction holds at most.
    int group_commit_max_calls = 256;
  };

  // Connects and migrates. UNAVAILABLE when the database cannot be reached (the message names the
  // host, never the password), INVALID_ARGUMENT for a malformed URL.
  static absl::StatusOr<std::unique_ptr<PgStore>> Create(const Options& options);
  ~PgStore() override;

  // Schema version after migration (the highest applied migration).
  int schema_version() const { return schema_version_; }

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
  // Runs SELECT 1; UNAVAILABLE while the database cannot be reached.
  absl::Status Ping() override;

 private:
  explicit PgStore(const Options& options);

  // A transaction body: returns OK to commit, anything else to roll back and return it.
  using TxBody = std::function<absl::Status(pqxx::dbtransaction&)>;
  // Runs `body` in a transaction on a pooled connection, retrying conflicts; maps exceptions.
  absl::Status Run(const TxBody& body);
  // Run without the on_transaction report.
  absl::Status RunOnce(const TxBody& body);

  // A lease transition (lease, heartbeat, completion, failure): its SQL, the campaign locks and
  // counter changes it shares with the others of its transaction (TxContext, pg_store.cc).
  struct TxContext;
  using TransitionBody = std::function<absl::Status(pqxx::dbtransaction&, TxContext&)>;
  struct Transition;
  // Runs a lease transition: queued for the writer under group commit, else in a transaction of
  // its own. `candidate_ids` name the candidates whose campaigns it locks; `leases` says it claims
  // from the queue (it locks every RUNNING campaign with queued work).
  // A LeaseNext call and a CompleteCandidate call. A group writes all its leases together
  // (LeaseBatch: one claim per kind of worker) and all its completions together (CompleteBatch),
  // each batch under one savepoint; a batch that fails is written again a call at a time.
  struct LeaseCall;
  struct CompleteCall;
  // `lease` or `complete`, when set, is the call `body` runs alone (a batch of one).
  absl::Status RunTransition(std::vector<int64_t> candidate_ids, bool leases,
                             const TransitionBody& body, LeaseCall* lease = nullptr,
                             CompleteCall* complete = nullptr);
  // Claims a candidate for each of `calls` (those of one transaction) and sets each call's answer.
  // An error return is every call's answer.
  absl::Status LeaseBatch(pqxx::dbtransaction& tx, TxContext& cx,
                          const std::vector<LeaseCall*>& calls);
  // Checks the lease of each of `calls` (distinct candidates) and stores the results of those it
  // accepts; sets each call's answer. An error return is every call's answer.
  absl::Status CompleteBatch(pqxx::dbtransaction& tx, TxContext& cx,
                             const std::vector<CompleteCall*>& calls);
  // A transaction of one transition with its own locks and counters (no group).
  absl::Status RunAlone(const std::vector<int64_t>& candidate_ids, bool leases,
                        const TransitionBody& body);
  // The transaction body of RunAlone (the arguments must outlive it).
  static TxBody AloneBody(const std::vector<int64_t>& candidate_ids, bool leases,
                          const TransitionBody& body);
  // The writer thread: takes queued transitions and writes them, a group per transaction.
  void WriteGroups();
  // One group in one transaction; sets every transition's status.
  void WriteGroup(const std::vector<Transition*>& group);
  // Runs `run` under a savepoint of a group's transaction (`open`: the previous savepoint is still
  // to be released); a refusal or a failed statement rolls back the savepoint alone, and locks
  // and counters of the rolled-back part are dropped. Errors that end the transaction (conflicts,
  // a lost connection) are thrown on.
  absl::Status RunUnderSavepoint(pqxx::dbtransaction& tx, TxContext& group, bool& open,
                                 const TransitionBody& run);
  // Writes `members` (leases or completions of a group) with `batch` under one savepoint and sets
  // each member's status; when the batch fails, each member is written alone.
  void WriteBatch(pqxx::dbtransaction& tx, TxContext& group, bool& open,
                  const std::vector<Transition*>& members, const TransitionBody& batch);

  absl::StatusOr<std::unique_ptr<pqxx::connection_base>> Connect();
  absl::StatusOr<std::string> CurrentUrl() const;
  absl::Status Migrate();
  std::unique_ptr<pqxx::connection_base> Acquire();
  void Release(std::unique_ptr<pqxx::connection_base> conn, bool healthy);
  // Closes every idle pooled connection (after one was found broken).
  void DropIdle();
  // The campaign's config parsed from its stored JSON `json`, parsed once per campaign and text.
  struct ParsedConfig;
  absl::StatusOr<std::shared_ptr<const ParsedConfig>> ConfigOf(int64_t campaign_id,
                                                               const std::string& json);

  const Options options_;
  int schema_version_ = 0;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection_base>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex config_mu_;
  std::map<int64_t, std::shared_ptr<const ParsedConfig>> configs_ ABSL_GUARDED_BY(config_mu_);

  // Group commit: transitions waiting for the writer, oldest first.
  absl::Mutex queue_mu_;
  std::deque<Transition*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread writer_;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_PG_STORE_H_
