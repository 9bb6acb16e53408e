#include "worker/daemon/daemon.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/error_class.h"
#include "spdlog/spdlog.h"

namespace quartet::worker::daemon {
namespace {

bool Transient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded || s.code() == absl::StatusCode::kAborted;
}

// Batches metric points onto one StreamMetrics call per lease, from its own thread. A broken stream
// is reopened (points are idempotent on the server); a stale lease ends sending.
class MetricSender {
 public:
  MetricSender(CoordinatorClient* client, std::string worker_id, int64_t candidate_id,
               int64_t token, absl::Duration flush_interval)
      : client_(client),
        worker_id_(std::move(worker_id)),
        candidate_id_(candidate_id),
        token_(token),
        flush_interval_(flush_interval),
        thread_([this] { Loop(); }) {}

  ~MetricSender() { Close(); }

  void Add(const std::vector<quartet::v1::MetricPoint>& points) {
    absl::MutexLock lock(&mu_);
    for (const auto& p : points) pending_.push_back(p);
  }

  // Sends what is left and ends the stream. Returns the last stream error, if any.
  absl::Status Close() {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return status_;
      closed_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return status_;
  }

  // True once the server said the lease is gone.
  bool lease_lost() const { return lease_lost_.load(); }

 private:
  void Loop() {
    std::unique_ptr<MetricStream> stream;
    while (true) {
      std::vector<quartet::v1::MetricPoint> batch;
      bool closing;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return closed_ || pending_.size() >= 64;
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), flush_interval_);
        closing = closed_;
        while (!pending_.empty() && batch.size() < 512) {
          batch.push_back(std::move(pending_.front()));
          pending_.pop_front();
        }
      }
      if (!batch.empty() && !lease_lost_) {
        quartet::v1::MetricBatch msg;
        msg.set_worker_id(worker_id_);
        msg.set_candidate_id(candidate_id_);
        msg.set_lease_token(token_);
        for (auto& p : batch) *msg.add_points() = std::move(p);
        for (int attempt = 0; attempt < 2; ++attempt) {
          if (!stream) stream = client_->OpenMetricStream();
          if (stream->Write(msg)) break;
          absl::Status s = stream->Finish();
          stream.reset();
          Record(s);
          if (lease_lost_) break;
        }
      }
      bool more;
      {
        absl::MutexLock lock(&mu_);
        more = !pending_.empty();
      }
      if (closing && !more) break;
    }
    if (stream) Record(stream->Finish());
  }

  void Record(const absl::Status& s) {
    if (s.ok()) return;
    if (s.code() == absl::StatusCode::kFailedPrecondition ||
        s.code() == absl::StatusCode::kNotFound) {
      lease_lost_ = true;
    }
    spdlog::warn("metric stream of candidate {}: {}", candidate_id_, s.ToString());
    absl::MutexLock lock(&mu_);
    status_ = s;
  }

  CoordinatorClient* const client_;
  const std::string worker_id_;
  const int64_t candidate_id_, token_;
  const absl::Duration flush_interval_;
  absl::Mutex mu_;
  std::deque<quartet::v1::MetricPoint> pending_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> lease_lost_{false};
  std::thread thread_;
};

}  // namespace

WorkerDaemon::WorkerDaemon(const Options& options, CoordinatorClient* client,
                           train::Trainer* trainer, common::Clock* clock)
    : options_(options), client_(client), trainer_(trainer), clock_(clock) {}

void WorkerDaemon::Stop() {
  stopping_ = true;
  absl::MutexLock lock(&sleep_mu_);  // wake SleepUnlessStopping
}

bool WorkerDaemon::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&sleep_mu_);
  auto stop = [this]() { return stopping_.load(); };
  sleep_mu_.AwaitWithTimeout(absl::Condition(&stop), d);
  return !stopping_.load();
}

absl::Status WorkerDaemon::RegisterWithRetry() {
  quartet::v1::RegisterWorkerRequest req;
  req.set_worker_id(worker_id_.empty() ? options_.worker_id : worker_id_);
  req.set_host(options_.host);
  req.set_device(trainer_->Device());
  req.set_gpu_name(trainer_->GpuName());
  req.set_gpu_memory_bytes(trainer_->GpuMemoryBytes());
  for (const auto& f : trainer_->Families()) req.add_families(f);
  req.set_version(options_.version);
  absl::Duration backoff = options_.initial_backoff;
  while (!stopping()) {
    auto resp = client_->Register(req);
    if (resp.ok()) {
      worker_id_ = resp->worker_id();
      heartbeat_interval_ = options_.heartbeat_interval > absl::ZeroDuration()
                                ? options_.heartbeat_interval
                                : absl::Milliseconds(std::max(100, resp->heartbeat_interval_ms()));
      spdlog::info("registered as {} (device {}, heartbeat every {})", worker_id_,
                   trainer_->Device(), absl::FormatDuration(heartbeat_interval_));
      return absl::OkStatus();
    }
    if (!Transient(resp.status())) return resp.status();
    spdlog::warn("coordinator unreachable ({}); retrying in {}",
                 std::string(resp.status().message()), absl::FormatDuration(backoff));
    if (!SleepUnlessStopping(backoff)) break;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  return absl::OkStatus();
}

absl::Status WorkerDaemon::Run() {
  if (absl::Status s = RegisterWithRetry(); !s.ok()) return s;
  absl::Duration backoff = options_.initial_backoff;
  int idle_polls = 0;
  while (!stopping()) {
    if (options_.max_candidates > 0 && done_ >= options_.max_candidates) break;
    auto resp = client_->Lease(worker_id_);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kNotFound) {
        // The coordinator no longer knows this worker (for example a new database): re-register.
        spdlog::warn("coordinator does not know worker {}: registering again", worker_id_);
        worker_id_.clear();
        if (absl::Status s = RegisterWithRetry(); !s.ok()) return s;
        continue;
      }
      spdlog::warn("lease request failed ({}); retrying in {}", resp.status().ToString(),
                   absl::FormatDuration(backoff));
      SleepUnlessStopping(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    backoff = options_.initial_backoff;
    if (!resp->has_lease()) {
      const absl::Duration base = absl::Milliseconds(std::max(100, resp->retry_after_ms()));
      SleepUnlessStopping(std::min(base * (1 << std::min(idle_polls++, 6)),
                                   std::max(base, options_.max_idle_poll)));
      continue;
    }
    idle_polls = 0;
    RunCandidate(*resp);
  }
  spdlog::info("worker {} stopping after {} candidates", worker_id_, done_.load());
  return absl::OkStatus();
}

void WorkerDaemon::RunCandidate(const quartet::v1::LeaseCandidateResponse& lease) {
  const quartet::v1::CandidateSpec& spec = lease.spec();
  const int64_t id = lease.lease().candidate_id();
  const int64_t token = lease.lease().lease_token();
  spdlog::info("candidate {} ({}, attempt {}): training", id,
               absl::StrJoin(spec.combination().families(), "+"), spec.attempt());

  std::atomic<bool> cancel{false}, lease_lost{false}, training_done{false};
  absl::Mutex progress_mu;
  train::TrainProgress progress;
  MetricSender metrics(client_, worker_id_, id, token, options_.metric_flush_interval);

  // Heartbeats on their own thread, so a long step never lets the lease lapse.
  absl::Mutex hb_mu;
  std::thread heartbeat([&] {
    while (true) {
      {
        absl::MutexLock lock(&hb_mu);
        auto done = [&]() { return training_done.load(); };
        if (hb_mu.AwaitWithTimeout(absl::Condition(&done), heartbeat_interval_)) return;
      }
      quartet::v1::HeartbeatRequest req;
      req.set_worker_id(worker_id_);
      req.set_candidate_id(id);
      req.set_lease_token(token);
      {
        absl::MutexLock lock(&progress_mu);
        req.mutable_progress()->set_epoch(progress.epoch);
        req.mutable_progress()->set_step(progress.step);
        req.mutable_progress()->set_total_steps(progress.total_steps);
      }
      auto resp = client_->Heartbeat(req);
      if (resp.ok()) {
        if (resp->cancel() && !cancel.exchange(true)) {
          spdlog::info("candidate {}: coordinator asked to stop (campaign cancelled)", id);
        }
      } else if (resp.status().code() == absl::StatusCode::kFailedPrecondition ||
                 resp.status().code() == absl::StatusCode::kNotFound) {
        spdlog::warn("candidate {}: lease lost ({}); abandoning it", id,
                     std::string(resp.status().message()));
        lease_lost = true;
      } else {
        spdlog::warn("candidate {}: heartbeat failed ({}); will retry", id,
                     resp.status().ToString());
      }
    }
  });

  train::TrainCallbacks callbacks;
  callbacks.on_metrics = [&](const std::vector<quartet::v1::MetricPoint>& points) {
    metrics.Add(points);
  };
  callbacks.on_progress = [&](const train::TrainProgress& p) {
    absl::MutexLock lock(&progress_mu);
    progress = p;
  };
  callbacks.should_stop = [&] {
    return stopping() || cancel.load() || lease_lost.load() || metrics.lease_lost();
  };

  absl::StatusOr<quartet::v1::Result> result = trainer_->Train(spec, callbacks);
  {
    absl::MutexLock lock(&hb_mu);
    training_done = true;
  }
  heartbeat.join();
  (void)metrics.Close();
  ++done_;

  if (lease_lost || metrics.lease_lost()) {
    spdlog::warn("candidate {}: not reported, its lease is no longer ours", id);
    return;
  }
  // Reports are retried while the coordinator is unreachable (bounded), so a coordinator restart
  // does not lose a finished candidate.
  auto with_retry = [&](auto call) {
    absl::Duration backoff = options_.initial_backoff;
    absl::Status s;
    for (int attempt = 0; attempt < 12; ++attempt) {
      s = call();
      if (!Transient(s)) return s;
      spdlog::warn("candidate {}: report failed ({}); retrying in {}", id, s.ToString(),
                   absl::FormatDuration(backoff));
      absl::SleepFor(backoff);  // not interruptible: the report must be delivered
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    return s;
  };
  if (result.ok()) {
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(worker_id_);
    req.set_candidate_id(id);
    req.set_lease_token(token);
    *req.mutable_result() = *result;
    absl::Status s = with_retry([&] { return client_->Complete(req); });
    if (s.ok()) {
      spdlog::info("candidate {}: completed, test accuracy {:.4f} in {:.1f} s", id,
                   result->test_accuracy(), result->wall_seconds());
    } else {
      spdlog::error("candidate {}: completion refused: {}", id, s.ToString());
    }
    return;
  }
  quartet::v1::ErrorClass cls = common::ErrorClassOf(result.status());
  if (cancel.load()) {
    cls = quartet::v1::ERROR_CLASS_CANCELLED;
  } else if (stopping()) {
    cls = quartet::v1::ERROR_CLASS_PREEMPTED;
  }
  quartet::v1::FailCandidateRequest req;
  req.set_worker_id(worker_id_);
  req.set_candidate_id(id);
  req.set_lease_token(token);
  req.set_error_class(cls);
  req.set_message(std::string(result.status().message()));
  req.set_retryable(common::IsRetryable(cls));
  absl::Status s = with_retry([&]() -> absl::Status { return client_->Fail(req).status(); });
  spdlog::info(
      "candidate {}: failed ({}: {}), handed back {}", id, quartet::v1::ErrorClass_Name(cls),
      std::string(result.status().message()),
      s.ok() ? (req.retryable() ? "for retry" : "as final") : "unsuccessfully: " + s.ToString());
}

}  // namespace quartet::worker::daemon
