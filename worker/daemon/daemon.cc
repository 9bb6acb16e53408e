#include "worker/daemon/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/error_class.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace quartet::worker::daemon {
namespace {

// Metric points waiting before a batch is sent early, and the most one batch carries.
constexpr size_t kFlushPoints = 64;
constexpr size_t kMaxBatchPoints = 512;
// How long the end of a training waits for its metric batches before the report carries the
// rest.
constexpr absl::Duration kMetricDrainWait = absl::Seconds(5);
// Per-step metric names start with this; every other point is a per-epoch point.
constexpr char kStepMetricPrefix[] = "step/";
constexpr char kSpoolDir[] = "spool";
// The worker's id and session secret, one a line (mode 0600).
constexpr char kIdentityFile[] = "identity";

bool Transient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded || s.code() == absl::StatusCode::kAborted;
}

// The coordinator says this lease is no longer ours (a newer lease, or an unknown candidate).
bool LeaseGone(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kNotFound;
}

// The lease a heartbeat or metric batch names, with the worker's identity.
struct LeaseRef {
  std::string worker_id;
  std::string secret;
  int64_t candidate_id = 0;
  int64_t token = 0;
};

// Renews one lease on its own thread, every `interval`, until Stop(): through training and until
// the report is acknowledged, so an outage after training cannot expire the lease.
class Heartbeater {
 public:
  Heartbeater(CoordinatorClient* client, common::Clock* clock, LeaseRef lease,
              absl::Duration interval)
      : client_(client),
        clock_(clock),
        lease_(std::move(lease)),
        interval_(interval),
        thread_([this] { Loop(); }) {}
  ~Heartbeater() { Stop(); }

  void SetProgress(const train::TrainProgress& p) {
    absl::MutexLock lock(&mu_);
    progress_ = p;
  }
  // The campaign was cancelled: the worker should stop and report CANCELLED.
  bool cancel_requested() const { return cancel_.load(); }
  // The coordinator refused the lease: it is not ours any more.
  bool lease_lost() const { return lease_lost_.load(); }
  // An operator drained this worker: finish this candidate, then lease nothing more.
  bool drain_requested() const { return drain_.load(); }

  // Stops renewing; idempotent; waits for the thread.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    while (true) {
      quartet::v1::HeartbeatRequest req;
      {
        absl::MutexLock lock(&mu_);
        auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; };
        if (clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopped), interval_)) return;
        req.mutable_progress()->set_epoch(progress_.epoch);
        req.mutable_progress()->set_step(progress_.step);
        req.mutable_progress()->set_total_steps(progress_.total_steps);
      }
      req.set_worker_id(lease_.worker_id);
      req.set_session_secret(lease_.secret);
      req.set_candidate_id(lease_.candidate_id);
      req.set_lease_token(lease_.token);
      Record(client_->Heartbeat(req));
    }
  }

  void Record(const absl::StatusOr<quartet::v1::HeartbeatResponse>& resp) {
    if (resp.ok()) {
      if (resp->cancel() && !cancel_.exchange(true)) {
        spdlog::info("candidate {}: coordinator asked to stop (campaign cancelled)",
                     lease_.candidate_id);
      }
      if (resp->drain() && !drain_.exchange(true)) {
        spdlog::info("worker drained by an operator: finishing candidate {}, then exiting",
                     lease_.candidate_id);
      }
    } else if (LeaseGone(resp.status())) {
      if (!lease_lost_.exchange(true)) {
        spdlog::warn("candidate {}: lease lost ({})", lease_.candidate_id,
                     std::string(resp.status().message()));
      }
    } else {
      spdlog::warn("candidate {}: heartbeat failed ({}); will retry", lease_.candidate_id,
                   resp.status().ToString());
    }
  }

  CoordinatorClient* const client_;
  common::Clock* const clock_;
  const LeaseRef lease_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  train::TrainProgress progress_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> cancel_{false}, lease_lost_{false}, drain_{false};
  std::thread thread_;
};

// Batches metric points of one lease onto StreamMetrics calls from its own thread. A batch counts
// as delivered only when the stream that carried it finished OK; batches of a broken stream are
// sent again on a new one (points are idempotent on the server), with back-off, until delivered or
// the lease is gone. Nothing is dropped while the lease is ours.
class MetricSender {
 public:
  MetricSender(CoordinatorClient* client, common::Clock* clock, LeaseRef lease,
               absl::Duration flush_interval, absl::Duration initial_backoff,
               absl::Duration max_backoff)
      : client_(client),
        clock_(clock),
        lease_(std::move(lease)),
        flush_interval_(flush_interval),
        initial_backoff_(initial_backoff),
        max_backoff_(max_backoff),
        thread_([this] { Loop(); }) {}

  ~MetricSender() { Close(absl::ZeroDuration()); }

  void Add(const std::vector<quartet::v1::MetricPoint>& points) {
    absl::MutexLock lock(&mu_);
    for (const auto& p : points) pending_.push_back(p);
  }

  // Delivers what is left within `wait`, then stops; Unsent() has what was not delivered.
  void Close(absl::Duration wait) {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; };
      if (!clock_->AwaitWithTimeout(&mu_, absl::Condition(&finished), wait)) abandoned_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // Batches not delivered (after Close()), to spool.
  std::vector<quartet::v1::MetricBatch> Unsent() {
    absl::MutexLock lock(&mu_);
    std::vector<quartet::v1::MetricBatch> out(unconfirmed_.begin(), unconfirmed_.end());
    if (!pending_.empty()) {
      out.push_back(MakeBatch());
      for (auto& p : pending_) *out.back().add_points() = std::move(p);
      pending_.clear();
    }
    return out;
  }

  bool lease_lost() const { return lease_lost_.load(); }

 private:
  quartet::v1::MetricBatch MakeBatch() const {
    quartet::v1::MetricBatch b;
    b.set_worker_id(lease_.worker_id);
    b.set_session_secret(lease_.secret);
    b.set_candidate_id(lease_.candidate_id);
    b.set_lease_token(lease_.token);
    return b;
  }

  // Takes up to a batch of pending points once enough wait, the flush interval passed, or on
  // close. Returns false when there is nothing more to do.
  bool NextBatch(quartet::v1::MetricBatch* batch) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || abandoned_ || pending_.size() >= kFlushPoints;
    };
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&ready), flush_interval_);
    if (abandoned_) return false;
    *batch = MakeBatch();
    while (!pending_.empty() && static_cast<size_t>(batch->points_size()) < kMaxBatchPoints) {
      *batch->add_points() = std::move(pending_.front());
      pending_.pop_front();
    }
    return !(closed_ && batch->points_size() == 0);
  }

  void Loop() {
    quartet::v1::MetricBatch batch;
    while (!lease_lost_ && NextBatch(&batch)) {
      if (batch.points_size() == 0) continue;
      {
        absl::MutexLock lock(&mu_);
        unconfirmed_.push_back(std::move(batch));
      }
      Flush();
    }
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }

  // Sends every unconfirmed batch on a fresh stream and finishes it; on a transient error, waits
  // and tries again until delivered, the lease is lost, or the sender is abandoned.
  void Flush() {
    absl::Duration backoff = initial_backoff_;
    while (true) {
      std::vector<quartet::v1::MetricBatch> batches;
      {
        absl::MutexLock lock(&mu_);
        if (abandoned_ || unconfirmed_.empty()) return;
        batches.assign(unconfirmed_.begin(), unconfirmed_.end());
      }
      std::unique_ptr<MetricStream> stream = client_->OpenMetricStream();
      bool written = true;
      for (const auto& b : batches) {
        if (!stream->Write(b)) {
          written = false;
          break;
        }
      }
      const absl::Status s = stream->Finish();
      if (written && s.ok()) {
        absl::MutexLock lock(&mu_);
        unconfirmed_.erase(unconfirmed_.begin(), unconfirmed_.begin() + batches.size());
        return;
      }
      if (LeaseGone(s)) {
        spdlog::warn("metric stream of candidate {}: lease gone ({})", lease_.candidate_id,
                     std::string(s.message()));
        lease_lost_ = true;
        return;
      }
      spdlog::warn("metric stream of candidate {}: {}; {} batches kept, retrying in {}",
                   lease_.candidate_id, s.ToString(), batches.size(),
                   absl::FormatDuration(backoff));
      absl::MutexLock lock(&mu_);
      auto abandoned = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return abandoned_; };
      if (clock_->AwaitWithTimeout(&mu_, absl::Condition(&abandoned), backoff)) return;
      backoff = std::min(backoff * 2, max_backoff_);
    }
  }

  CoordinatorClient* const client_;
  common::Clock* const clock_;
  const LeaseRef lease_;
  const absl::Duration flush_interval_, initial_backoff_, max_backoff_;
  absl::Mutex mu_;
  std::deque<quartet::v1::MetricPoint> pending_ ABSL_GUARDED_BY(mu_);
  // Sent or to be sent, not yet confirmed by a stream that finished OK.
  std::deque<quartet::v1::MetricBatch> unconfirmed_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> lease_lost_{false};
  std::thread thread_;
};

// Writes `data` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                 const std::string& data) {
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp");
  const std::string path = absl::StrCat(dir, "/", name);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      return absl::InternalError(absl::StrCat(tmp, ": ", err));
    }
    off += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (const auto& part : absl::StrSplit(path, '/')) {
    partial += std::string(part) + "/";
    if (part.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat(partial, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ListFiles(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name[0] != '.' && absl::EndsWith(name, suffix)) out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

int64_t CandidateOf(const quartet::v1::SpooledReport& r) {
  return r.has_complete() ? r.complete().candidate_id() : r.fail().candidate_id();
}

}  // namespace

bool LeaseBudget::Take() {
  int left = left_.load();
  while (left > 0) {
    if (left_.compare_exchange_weak(left, left - 1)) return true;
  }
  return false;
}

WorkerDaemon::WorkerDaemon(const Options& options, CoordinatorClient* client,
                           train::Trainer* trainer, common::Clock* clock)
    : options_(options), client_(client), trainer_(trainer), clock_(clock) {
  if (options_.lease_budget != nullptr) {
    budget_ = options_.lease_budget;
  } else if (options_.max_candidates > 0) {
    own_budget_ = std::make_unique<LeaseBudget>(options_.max_candidates);
    budget_ = own_budget_.get();
  }
}

void WorkerDaemon::Stop() {
  stopping_ = true;
  absl::MutexLock lock(&sleep_mu_);  // wake SleepUnlessStopping
}

bool WorkerDaemon::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&sleep_mu_);
  auto stop = [this]() { return stopping_.load(); };
  clock_->AwaitWithTimeout(&sleep_mu_, absl::Condition(&stop), d);
  return !stopping_.load();
}

// ---- Identity --------------------------------------------------------------------------------

void WorkerDaemon::LoadIdentity() {
  if (options_.state_dir.empty()) return;
  std::ifstream in(absl::StrCat(options_.state_dir, "/", kIdentityFile));
  std::string id, secret;
  std::getline(in, id);
  std::getline(in, secret);
  worker_id_ = std::string(absl::StripAsciiWhitespace(id));
  session_secret_ = std::string(absl::StripAsciiWhitespace(secret));
}

void WorkerDaemon::SaveIdentity() const {
  if (options_.state_dir.empty()) return;
  absl::Status s = WriteFileAtomically(options_.state_dir, kIdentityFile,
                                       absl::StrCat(worker_id_, "\n", session_secret_, "\n"));
  if (!s.ok()) spdlog::warn("cannot keep the worker identity in the state dir: {}", s.ToString());
}

absl::Status WorkerDaemon::RegisterWithRetry() {
  quartet::v1::RegisterWorkerRequest req;
  if (worker_id_.empty()) LoadIdentity();
  if (!worker_id_.empty() && !session_secret_.empty()) {
    req.set_worker_id(worker_id_);  // re-attach
    req.set_session_secret(session_secret_);
  } else {
    req.set_worker_id(options_.worker_id);  // a label for a new id
  }
  req.set_host(options_.host);
  req.set_device(trainer_->Device());
  req.set_gpu_name(trainer_->GpuName());
  req.set_gpu_memory_bytes(options_.gpu_memory_bytes > 0 ? options_.gpu_memory_bytes
                                                         : trainer_->GpuMemoryBytes());
  for (const auto& f : trainer_->Families()) req.add_families(f);
  req.set_version(options_.version);
  absl::Duration backoff = options_.initial_backoff;
  while (!stopping()) {
    auto resp = client_->Register(req);
    if (resp.ok()) {
      worker_id_ = resp->worker_id();
      session_secret_ = resp->session_secret();
      heartbeat_interval_ = options_.heartbeat_interval > absl::ZeroDuration()
                                ? options_.heartbeat_interval
                                : absl::Milliseconds(std::max(100, resp->heartbeat_interval_ms()));
      SaveIdentity();
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

// ---- Main loop -------------------------------------------------------------------------------

absl::Status WorkerDaemon::Run() {
  if (!options_.state_dir.empty()) {
    QUARTET_RETURN_IF_ERROR(MakeDirs(absl::StrCat(options_.state_dir, "/", kSpoolDir)));
  }
  if (absl::Status s = RegisterWithRetry(); !s.ok()) return s;
  DeliverSpooled();
  if (options_.deliver_only) return absl::OkStatus();
  QUARTET_RETURN_IF_ERROR(LeaseLoop());
  spdlog::info("worker {} stopping after {} candidates{}", worker_id_, done_.load(),
               drained_ ? " (drained)" : "");
  return absl::OkStatus();
}

absl::Status WorkerDaemon::LeaseLoop() {
  absl::Duration backoff = options_.initial_backoff;
  int idle_polls = 0;
  while (!stopping() && !drained_) {
    if (budget_ != nullptr && !budget_->Take()) break;
    // The ticket goes back unless this request brings a candidate.
    bool leased = false;
    absl::Cleanup give_back = [&] {
      if (budget_ != nullptr && !leased) budget_->GiveBack();
    };
    quartet::v1::LeaseCandidateRequest lease_req;
    lease_req.set_worker_id(worker_id_);
    lease_req.set_session_secret(session_secret_);
    auto resp = client_->Lease(lease_req);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kNotFound ||
          resp.status().code() == absl::StatusCode::kPermissionDenied) {
        // The coordinator no longer knows this worker (for example a new database) or its secret:
        // register as a new worker.
        spdlog::warn("coordinator does not accept worker {} ({}): registering again", worker_id_,
                     std::string(resp.status().message()));
        worker_id_.clear();
        session_secret_.clear();
        SaveIdentity();
        if (absl::Status s = RegisterWithRetry(); !s.ok()) return s;
        continue;
      }
      spdlog::warn("lease request failed ({}); retrying in {}", resp.status().ToString(),
                   absl::FormatDuration(backoff));
      std::move(give_back).Invoke();  // other slots may use it meanwhile
      SleepUnlessStopping(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    if (backoff > options_.initial_backoff) {
      spdlog::info("coordinator reachable again");
      DeliverSpooled();  // reports spooled while it was away
    }
    backoff = options_.initial_backoff;
    if (resp->drain()) {
      spdlog::info("worker {} drained by an operator: leasing nothing more", worker_id_);
      drained_ = true;
      break;
    }
    if (!resp->has_lease()) {
      const absl::Duration base = absl::Milliseconds(std::max(100, resp->retry_after_ms()));
      std::move(give_back).Invoke();
      SleepUnlessStopping(std::min(base * (1 << std::min(idle_polls++, 6)),
                                   std::max(base, options_.max_idle_poll)));
      continue;
    }
    idle_polls = 0;
    leased = true;
    RunCandidate(*resp);
  }
  return absl::OkStatus();
}

absl::StatusOr<quartet::v1::Result> WorkerDaemon::TrainSafely(
    const quartet::v1::CandidateSpec& spec, const train::TrainCallbacks& callbacks) {
  try {
    return trainer_->Train(spec, callbacks);
  } catch (const std::exception& e) {
    return common::WithErrorClass(absl::InternalError(absl::StrCat("trainer threw: ", e.what())),
                                  quartet::v1::ERROR_CLASS_INTERNAL);
  } catch (...) {
    return common::WithErrorClass(absl::InternalError("trainer threw a non-standard exception"),
                                  quartet::v1::ERROR_CLASS_INTERNAL);
  }
}

void WorkerDaemon::RunCandidate(const quartet::v1::LeaseCandidateResponse& lease) {
  const quartet::v1::CandidateSpec& spec = lease.spec();
  const int64_t id = lease.lease().candidate_id();
  const int64_t token = lease.lease().lease_token();
  spdlog::info("candidate {} ({}, attempt {}): training", id,
               spec.combination().families().empty()
                   ? std::string("without families")
                   : absl::StrJoin(spec.combination().families(), "+"),
               spec.attempt());

  if (options_.metrics != nullptr) options_.metrics->CandidateStarted(id);
  const LeaseRef ref{worker_id_, session_secret_, id, token};
  Heartbeater heartbeat(client_, clock_, ref, heartbeat_interval_);
  MetricSender metrics(client_, clock_, ref, options_.metric_flush_interval,
                       options_.initial_backoff, options_.max_backoff);
  absl::Mutex epoch_mu;
  std::vector<quartet::v1::MetricPoint> epoch_points;

  train::TrainCallbacks callbacks;
  callbacks.on_metrics = [&](const std::vector<quartet::v1::MetricPoint>& points) {
    metrics.Add(points);
    if (options_.metrics != nullptr) options_.metrics->Observe(points);
    absl::MutexLock lock(&epoch_mu);
    for (const auto& p : points) {
      if (!absl::StartsWith(p.name(), kStepMetricPrefix)) epoch_points.push_back(p);
    }
  };
  callbacks.on_progress = [&](const train::TrainProgress& p) { heartbeat.SetProgress(p); };
  callbacks.should_stop = [&] {
    return stopping() || heartbeat.cancel_requested() || heartbeat.lease_lost() ||
           metrics.lease_lost();
  };

  absl::StatusOr<quartet::v1::Result> result = TrainSafely(spec, callbacks);
  ++done_;
  if (options_.metrics != nullptr) {
    const bool handed_back = stopping() || heartbeat.cancel_requested() || heartbeat.lease_lost() ||
                             metrics.lease_lost();
    options_.metrics->CandidateFinished(result.ok()   ? "succeeded"
                                        : handed_back ? "handed_back"
                                                      : "failed");
  }
  // Once asked to stop, no waiting for metric retries: the report carries what is left.
  metrics.Close(stopping() ? absl::ZeroDuration() : kMetricDrainWait);
  if (heartbeat.lease_lost() || metrics.lease_lost()) {
    spdlog::warn("candidate {}: not reported, its lease is no longer ours", id);
    return;
  }
  std::vector<quartet::v1::MetricPoint> final_points;
  {
    absl::MutexLock lock(&epoch_mu);
    final_points = std::move(epoch_points);
  }
  quartet::v1::SpooledReport report =
      MakeReport(id, token, result, std::move(final_points), heartbeat.cancel_requested());
  for (auto& b : metrics.Unsent()) *report.add_metrics() = std::move(b);
  // The heartbeat keeps the lease alive until the report is acknowledged.
  absl::Status s = Deliver(report);
  heartbeat.Stop();
  if (heartbeat.drain_requested()) drained_ = true;
  if (s.ok()) {
    if (result.ok()) {
      spdlog::info("candidate {}: completed, test accuracy {:.4f} in {:.1f} s", id,
                   result->test_accuracy(), result->wall_seconds());
    } else {
      spdlog::info("candidate {}: failed ({}: {}), handed back {}", id,
                   quartet::v1::ErrorClass_Name(report.fail().error_class()),
                   std::string(result.status().message()),
                   report.fail().retryable() ? "for retry" : "as final");
    }
  } else if (!absl::IsCancelled(s)) {
    spdlog::error("candidate {}: report refused: {}", id, s.ToString());
  }
}

quartet::v1::SpooledReport WorkerDaemon::MakeReport(
    int64_t candidate_id, int64_t token, const absl::StatusOr<quartet::v1::Result>& result,
    std::vector<quartet::v1::MetricPoint> epoch_points, bool cancelled) {
  quartet::v1::SpooledReport report;
  if (result.ok()) {
    auto* req = report.mutable_complete();
    req->set_worker_id(worker_id_);
    req->set_session_secret(session_secret_);
    req->set_candidate_id(candidate_id);
    req->set_lease_token(token);
    *req->mutable_result() = *result;
    for (auto& p : epoch_points) *req->add_final_metrics() = std::move(p);
    return report;
  }
  quartet::v1::ErrorClass cls = common::ErrorClassOf(result.status());
  if (cancelled) {
    cls = quartet::v1::ERROR_CLASS_CANCELLED;
  } else if (stopping()) {
    cls = quartet::v1::ERROR_CLASS_PREEMPTED;
  }
  auto* req = report.mutable_fail();
  req->set_worker_id(worker_id_);
  req->set_session_secret(session_secret_);
  req->set_candidate_id(candidate_id);
  req->set_lease_token(token);
  req->set_error_class(cls);
  req->set_message(std::string(result.status().message()));
  req->set_retryable(common::IsRetryable(cls));
  return report;
}

// ---- Reports ---------------------------------------------------------------------------------

absl::Status WorkerDaemon::SendOnce(const quartet::v1::SpooledReport& report) {
  if (report.metrics_size() > 0) {
    std::unique_ptr<MetricStream> stream = client_->OpenMetricStream();
    for (const auto& b : report.metrics()) {
      if (!stream->Write(b)) break;
    }
    absl::Status s = stream->Finish();
    // Metrics of a lease that is gone are discarded with it below; transient errors retry all.
    if (!s.ok() && !LeaseGone(s)) return s;
  }
  if (report.has_complete()) return client_->Complete(report.complete());
  return client_->Fail(report.fail()).status();
}

absl::Status WorkerDaemon::Deliver(const quartet::v1::SpooledReport& report) {
  const int64_t id = CandidateOf(report);
  const absl::Time start = clock_->Now();
  absl::Time stop_deadline = absl::InfiniteFuture();
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    absl::Status s = SendOnce(report);
    if (s.ok() || !Transient(s)) return s;
    const absl::Time now = clock_->Now();
    if (stopping() && stop_deadline == absl::InfiniteFuture()) {
      stop_deadline = now + options_.stop_report_budget;
    }
    if (now >= stop_deadline || now - start >= options_.max_report_time) {
      spdlog::warn("candidate {}: report not delivered ({}); spooled for the next start", id,
                   s.ToString());
      Spool(report);
      return absl::CancelledError("spooled");
    }
    spdlog::warn("candidate {}: report failed ({}); retrying in {}", id, s.ToString(),
                 absl::FormatDuration(backoff));
    // Not cut short by Stop(): the report gets its stop budget.
    absl::Mutex pause_mu;
    absl::MutexLock pause(&pause_mu);
    auto never = [] { return false; };
    clock_->AwaitWithTimeout(
        &pause_mu, absl::Condition(&never),
        std::min(backoff, std::max(absl::ZeroDuration(), stop_deadline - now)));
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

void WorkerDaemon::Spool(const quartet::v1::SpooledReport& report) {
  if (options_.state_dir.empty()) {
    spdlog::error("candidate {}: no --state_dir, the unreported result is lost",
                  CandidateOf(report));
    return;
  }
  quartet::v1::SpooledReport copy = report;
  copy.set_spooled_unix_ms(absl::ToUnixMillis(clock_->Now()));
  const std::string name = absl::StrCat("candidate-", CandidateOf(report), ".pb");
  absl::Status s = WriteFileAtomically(absl::StrCat(options_.state_dir, "/", kSpoolDir), name,
                                       copy.SerializeAsString());
  if (!s.ok()) {
    spdlog::error("candidate {}: cannot spool the report: {}", CandidateOf(report), s.ToString());
    return;
  }
  ++spooled_;
}

void WorkerDaemon::DeliverSpooled() {
  if (options_.state_dir.empty()) return;
  const std::string dir = absl::StrCat(options_.state_dir, "/", kSpoolDir);
  for (const std::string& name : ListFiles(dir, ".pb")) {
    const std::string path = absl::StrCat(dir, "/", name);
    std::ifstream in(path, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    quartet::v1::SpooledReport report;
    if (!report.ParseFromString(buf.str()) || (!report.has_complete() && !report.has_fail())) {
      spdlog::error("spooled report {} is unreadable; moved aside as {}.bad", path, path);
      std::rename(path.c_str(), (path + ".bad").c_str());
      continue;
    }
    absl::Status s = SendOnce(report);
    if (Transient(s)) {
      spdlog::warn("spooled report of candidate {} not delivered yet ({})", CandidateOf(report),
                   s.ToString());
      continue;
    }
    if (s.ok()) {
      spdlog::info("spooled report of candidate {} delivered ({})", CandidateOf(report),
                   report.has_complete() ? "completed" : "failed");
    } else {
      spdlog::warn("spooled report of candidate {} discarded: {}", CandidateOf(report),
                   s.ToString());
    }
    ++spool_delivered_;
    std::remove(path.c_str());
  }
}

}  // namespace quartet::worker::daemon
