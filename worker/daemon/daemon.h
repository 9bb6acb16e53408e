// The worker daemon: registers, pulls candidates, trains them, streams metrics, reports the
// outcome.
//
//   loop: LeaseCandidate -> (nothing: sleep retry_after) | train with
//         [heartbeat thread: renews the lease; "cancel" or a lost lease stops training]
//         [metric sender: batches points onto a StreamMetrics call]
//         -> CompleteCandidate | FailCandidate(error class, retryable)
//
// Back-off: when the coordinator is unreachable, calls are retried with exponential back-off
// (initial_backoff doubling up to max_backoff); while there is no work, polls slow down from the
// coordinator's retry_after up to max_idle_poll and speed up again with the first lease. Stop()
// (SIGTERM/SIGINT) makes training stop at its next step; the candidate is handed back as PREEMPTED
// and retryable so another worker takes it; Run() then returns OK.
//
// Thread safety: Run() on one thread; Stop() from any thread (a signal-handling thread).
#ifndef QUARTET_WORKER_DAEMON_DAEMON_H_
#define QUARTET_WORKER_DAEMON_DAEMON_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/train/trainer.h"

namespace quartet::worker::daemon {

class WorkerDaemon {
 public:
  struct Options {
    // Worker id to re-attach as; empty lets the coordinator assign one.
    std::string worker_id;
    std::string host;
    std::string version;
    // Overrides the coordinator's suggested heartbeat interval when > 0.
    absl::Duration heartbeat_interval = absl::ZeroDuration();
    // Back-off while the coordinator is unreachable: doubling from initial to max.
    absl::Duration initial_backoff = absl::Milliseconds(500);
    absl::Duration max_backoff = absl::Seconds(30);
    // While there is no work, polls start at the coordinator's retry_after and double up to this.
    absl::Duration max_idle_poll = absl::Seconds(5);
    // Metric points are sent at least this often (and whenever 64 are waiting).
    absl::Duration metric_flush_interval = absl::Seconds(1);
    // Stop after this many candidates (0 = never); for tests and batch jobs.
    int max_candidates = 0;
  };

  // Pointers are not owned and must outlive the daemon.
  WorkerDaemon(const Options& options, CoordinatorClient* client, train::Trainer* trainer,
               common::Clock* clock);

  // Runs until Stop() or max_candidates. OK on a clean stop.
  absl::Status Run();
  // Asks Run() to finish: a running candidate stops at its next step and is handed back.
  void Stop();

  // Candidates this daemon finished (completed or failed), for tests and logs.
  int candidates_done() const { return done_.load(); }
  const std::string& worker_id() const { return worker_id_; }

 private:
  absl::Status RegisterWithRetry();
  // Trains one leased candidate and reports its outcome.
  void RunCandidate(const quartet::v1::LeaseCandidateResponse& lease);
  // Sleeps up to `d`, waking early on Stop(). Returns false when stopping.
  bool SleepUnlessStopping(absl::Duration d);
  bool stopping() const { return stopping_.load(); }

  const Options options_;
  CoordinatorClient* const client_;
  train::Trainer* const trainer_;
  common::Clock* const clock_;
  std::string worker_id_;
  absl::Duration heartbeat_interval_ = absl::Seconds(10);
  std::atomic<bool> stopping_{false};
  std::atomic<int> done_{0};
  absl::Mutex sleep_mu_;
};

}  // namespace quartet::worker::daemon

#endif  // QUARTET_WORKER_DAEMON_DAEMON_H_
