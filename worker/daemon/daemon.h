// The worker daemon: registers, pulls candidates, trains them, streams metrics, reports the
// outcome, and loses nothing finished.
//
//   start: re-attach with the id and session secret kept in state_dir (else register anew);
//          deliver reports spooled by an earlier run
//   loop:  LeaseCandidate -> (nothing: sleep retry_after) | train with
//          [Heartbeater: renews the lease until the report is acknowledged]
//          [MetricSender: batches points onto StreamMetrics, retried until acknowledged]
//          -> CompleteCandidate (carrying the per-epoch points) | FailCandidate(error class)
//
// Nothing finished is lost. The lease is renewed until the coordinator acknowledges the report, so
// an outage after training cannot expire it. A report is retried with back-off while the
// coordinator is unreachable. When the worker must stop first (SIGTERM) or has retried for
// max_report_time, the report and its unacknowledged metric batches are written to
// state_dir/spool/ (temporary file, fsync, rename) and delivered first at the next start: accepted
// when the lease is still current, otherwise logged and discarded.
//
// Back-off: unreachable-coordinator retries double from initial_backoff up to max_backoff and reset
// on the first success; while there is no work, polls slow down from the coordinator's
// retry_after up to max_idle_poll. Stop() (SIGTERM/SIGINT) makes training stop at its next step;
// the candidate is handed back as PREEMPTED, which costs it no attempt. Stop is honoured within
// stop_report_budget plus one training step: a report that cannot be delivered by then is spooled.
//
// Draining. When an operator drains the worker (quartetctl workers drain), the coordinator answers
// its lease request with drain and no candidate, and its heartbeats carry drain: the candidate in
// hand is trained and reported as usual, nothing more is leased, and Run() returns OK (exit 0).
//
// A trainer that throws is caught: the candidate fails with ERROR_CLASS_INTERNAL and the daemon
// carries on.
//
// Every wait (back-off, heartbeat and flush intervals, the stop budget) goes through the injected
// Clock, so tests run the real schedule on a FakeClock without sleeping.
//
// Thread safety: Run() on one thread; Stop() from any thread (a signal-handling thread).
#ifndef QUARTET_WORKER_DAEMON_DAEMON_H_
#define QUARTET_WORKER_DAEMON_DAEMON_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/metrics/worker_metrics.h"
#include "worker/train/trainer.h"

namespace quartet::worker::daemon {

// Candidates that several daemons may still lease together: the slots of one worker process under
// --max_candidates. A daemon takes one before each lease request and gives it back when the
// request brought no candidate. Thread-safe.
class LeaseBudget {
 public:
  explicit LeaseBudget(int candidates) : left_(candidates) {}
  // False when none is left.
  bool Take();
  void GiveBack() { ++left_; }

 private:
  std::atomic<int> left_;
};

class WorkerDaemon {
 public:
  struct Options {
    // A label for the worker id the coordinator assigns (the id starts with it). A worker with an
    // identity in state_dir re-attaches as that id instead.
    std::string worker_id;
    std::string host;
    std::string version;
    // Directory for the worker's id and its undelivered reports (spool/). Empty: nothing is kept
    // across restarts.
    std::string state_dir;
    // Overrides the coordinator's suggested heartbeat interval when > 0.
    absl::Duration heartbeat_interval = absl::ZeroDuration();
    // Back-off while the coordinator is unreachable: doubling from initial to max, reset on the
    // first success.
    absl::Duration initial_backoff = absl::Milliseconds(250);
    absl::Duration max_backoff = absl::Seconds(1);
    // While there is no work, polls start at the coordinator's retry_after and double up to this.
    absl::Duration max_idle_poll = absl::Seconds(5);
    // Metric points are sent at least this often (and whenever 64 are waiting).
    absl::Duration metric_flush_interval = absl::Seconds(1);
    // After Stop(), how long a report may still be retried before it is spooled.
    absl::Duration stop_report_budget = absl::Seconds(3);
    // How long a report is retried while the worker runs before it is spooled and the worker
    // moves on.
    absl::Duration max_report_time = absl::Minutes(30);
    // Stop after this many candidates (0 = never); for tests and batch jobs. Ignored when
    // lease_budget is set.
    int max_candidates = 0;
    // Shared with the other slots of the process (not owned; must outlive the daemon): the
    // daemons stop once together they leased this many candidates. nullptr: max_candidates.
    LeaseBudget* lease_budget = nullptr;
    // The device memory this daemon may use, told to the coordinator at registration so that it
    // leases only candidates whose estimate fits (a slot's share of the GPU). 0: the trainer's
    // whole device.
    int64_t gpu_memory_bytes = 0;
    // Only re-attach and deliver the reports spooled in state_dir, then return (a slot's state
    // left by an earlier run with more slots).
    bool deliver_only = false;
    // Told of each candidate's start, its trainer's metric points and its outcome (Prometheus, see
    // --metrics_listen). Not owned; must outlive the daemon. nullptr: nobody is told.
    WorkerMetrics* metrics = nullptr;
  };

  // Pointers are not owned and must outlive the daemon.
  WorkerDaemon(const Options& options, CoordinatorClient* client, train::Trainer* trainer,
               common::Clock* clock);

  // Runs until Stop(), max_candidates or a drain. OK on a clean stop.
  absl::Status Run();
  // Asks Run() to finish: a running candidate stops at its next step and is handed back.
  void Stop();

  // Candidates this daemon finished (completed or failed), for tests and logs.
  int candidates_done() const { return done_.load(); }
  // Reports written to the spool, and spooled reports delivered (or discarded) at start.
  int reports_spooled() const { return spooled_.load(); }
  int spooled_delivered() const { return spool_delivered_.load(); }
  const std::string& worker_id() const { return worker_id_; }
  // The coordinator drained this worker (Run() returned or is about to return because of it).
  bool drained() const { return drained_.load(); }

 private:
  absl::Status RegisterWithRetry();
  // Leases and trains candidates until stopped, drained or out of budget.
  absl::Status LeaseLoop();
  // Trains one leased candidate and reports its outcome.
  void RunCandidate(const quartet::v1::LeaseCandidateResponse& lease);
  // Runs the trainer, turning an exception into an INTERNAL error.
  absl::StatusOr<quartet::v1::Result> TrainSafely(const quartet::v1::CandidateSpec& spec,
                                                  const train::TrainCallbacks& callbacks);
  // Builds the Complete or Fail request of a finished training.
  quartet::v1::SpooledReport MakeReport(int64_t candidate_id, int64_t token,
                                        const absl::StatusOr<quartet::v1::Result>& result,
                                        std::vector<quartet::v1::MetricPoint> epoch_points,
                                        bool cancelled);
  // Sends a report until acknowledged, refused, or it must be spooled. OK when acknowledged.
  absl::Status Deliver(const quartet::v1::SpooledReport& report);
  // One attempt at sending a report (metric batches first, then the outcome).
  absl::Status SendOnce(const quartet::v1::SpooledReport& report);
  // Spool: write one report / deliver every spooled report (keeps those still undeliverable).
  void Spool(const quartet::v1::SpooledReport& report);
  void DeliverSpooled();
  // Worker id and session secret kept in state_dir (read into worker_id_ and session_secret_).
  void LoadIdentity();
  void SaveIdentity() const;

  // Sleeps up to `d`, waking early on Stop(). Returns false when stopping.
  bool SleepUnlessStopping(absl::Duration d);
  bool stopping() const { return stopping_.load(); }

  const Options options_;
  CoordinatorClient* const client_;
  train::Trainer* const trainer_;
  common::Clock* const clock_;
  std::string worker_id_;
  // Proves worker_id_ to the coordinator on every call (from RegisterWorker).
  std::string session_secret_;
  absl::Duration heartbeat_interval_ = absl::Seconds(10);
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drained_{false};
  std::atomic<int> done_{0};
  std::atomic<int> spooled_{0};
  std::atomic<int> spool_delivered_{0};
  absl::Mutex sleep_mu_;
  // Options::lease_budget, or one of the daemon's own for max_candidates (none when 0).
  std::unique_ptr<LeaseBudget> own_budget_;
  LeaseBudget* budget_ = nullptr;
};

}  // namespace quartet::worker::daemon

#endif  // QUARTET_WORKER_DAEMON_DAEMON_H_
