// The worker daemon against a real CoordinatorCore (MemoryStore) through an in-process client, with
// a scripted trainer: completion, metric streaming, SIGTERM-style stop, cancellation, failures,
// and an unreachable coordinator.
#include "worker/daemon/daemon.h"

#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/error_class.h"
#include "common/metrics_server.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/storage/memory_store.h"
#include "gtest/gtest.h"
#include "worker/daemon/slots.h"

namespace quartet::worker::daemon {
namespace {

using coordinator::CoordinatorCore;

// CoordinatorClient calling the core directly; can pretend to be unreachable.
class InProcessClient : public CoordinatorClient {
 public:
  explicit InProcessClient(CoordinatorCore* core) : core_(core) {}

  std::atomic<int> unavailable_calls{0};  // fail this many calls with UNAVAILABLE first

  absl::StatusOr<quartet::v1::RegisterWorkerResponse> Register(
      const quartet::v1::RegisterWorkerRequest& request) override {
    if (Unavailable()) return absl::UnavailableError("down");
    return core_->RegisterWorker(request);
  }
  absl::StatusOr<quartet::v1::LeaseCandidateResponse> Lease(
      const quartet::v1::LeaseCandidateRequest& request) override {
    if (Unavailable()) return absl::UnavailableError("down");
    return core_->LeaseCandidate(request);
  }
  absl::StatusOr<quartet::v1::HeartbeatResponse> Heartbeat(
      const quartet::v1::HeartbeatRequest& request) override {
    heartbeats++;
    return core_->Heartbeat(request);
  }
  std::unique_ptr<MetricStream> OpenMetricStream() override {
    return std::make_unique<Stream>(core_, Take(broken_streams));
  }
  absl::Status Complete(const quartet::v1::CompleteCandidateRequest& request) override {
    if (Take(unavailable_reports)) return absl::UnavailableError("down");
    return core_->CompleteCandidate(request);
  }
  absl::StatusOr<quartet::v1::FailCandidateResponse> Fail(
      const quartet::v1::FailCandidateRequest& request) override {
    if (Take(unavailable_reports)) return absl::UnavailableError("down");
    return core_->FailCandidate(request);
  }

  std::atomic<int> heartbeats{0};
  // Fail this many Complete/Fail calls, and this many metric streams, with UNAVAILABLE.
  std::atomic<int> unavailable_reports{0};
  std::atomic<int> broken_streams{0};
  // While true, every report fails with UNAVAILABLE.
  std::atomic<bool> reports_down{false};

 private:
  class Stream : public MetricStream {
   public:
    Stream(CoordinatorCore* core, bool broken) : core_(core) {
      if (broken) status_ = absl::UnavailableError("stream broke");
    }
    bool Write(const quartet::v1::MetricBatch& batch) override {
      if (!status_.ok()) return false;
      auto r = core_->AppendMetrics(batch);
      if (!r.ok()) status_ = r.status();
      return r.ok();
    }
    absl::Status Finish() override { return status_; }

   private:
    CoordinatorCore* core_;
    absl::Status status_;
  };

  bool Unavailable() { return Take(unavailable_calls); }
  bool Take(std::atomic<int>& budget) {
    if (&budget == &unavailable_reports && reports_down.load()) return true;
    int left = budget.load();
    while (left > 0) {
      if (budget.compare_exchange_weak(left, left - 1)) return true;
    }
    return false;
  }

  CoordinatorCore* core_;
};

// A trainer whose behaviour the test scripts.
class ScriptedTrainer : public train::Trainer {
 public:
  enum class Mode {
    kSucceed,
    kFailNumeric,
    kRunUntilStopped,
    kThrowOnce,
    kSucceedOnRelease,
    // The first training waits (up to 10 s) until `peers` trainings run at once (counted in
    // *running, shared by the trainers of several slots), then succeeds; later ones just succeed.
    kMeetPeers,
  };
  Mode mode = Mode::kSucceed;
  // With kThrowOnce: where the exception comes from (0 preparing, 1 training, 2 reporting).
  int throw_phase = 0;
  std::atomic<int> started{0};
  // With kSucceedOnRelease: training runs until this is set (or it is asked to stop).
  std::atomic<bool> release{false};
  // With kMeetPeers.
  std::atomic<int>* running = nullptr;
  int peers = 0;

  absl::StatusOr<quartet::v1::Result> Train(const quartet::v1::CandidateSpec& spec,
                                            const train::TrainCallbacks& cb) override {
    started++;
    if (mode == Mode::kThrowOnce && throw_phase == 0) Throw();
    quartet::v1::MetricPoint p;
    p.set_step(1);
    p.set_epoch(1);
    p.set_name("test_accuracy");
    p.set_value(0.5);
    cb.on_metrics({p});
    cb.on_progress({1, 1, 10});
    switch (mode) {
      case Mode::kMeetPeers: {
        mode = Mode::kSucceed;
        ++*running;
        for (int i = 0; i < 2000 && running->load() < peers && !cb.should_stop(); ++i) {
          absl::SleepFor(absl::Milliseconds(5));
        }
        if (running->load() < peers) return absl::DeadlineExceededError("peers never came");
        quartet::v1::Result r;
        r.set_test_accuracy(0.6);
        r.set_wall_seconds(1);
        return r;
      }
      case Mode::kSucceed: {
        quartet::v1::Result r;
        r.set_test_accuracy(0.5 + 0.01 * spec.repeat());
        r.set_wall_seconds(1);
        return r;
      }
      case Mode::kFailNumeric:
        return common::WithErrorClass(absl::AbortedError("loss is nan"),
                                      quartet::v1::ERROR_CLASS_NUMERIC);
      case Mode::kThrowOnce:
        if (throw_phase == 1) Throw();
        if (cb.should_stop()) return absl::CancelledError("stopped");
        Throw();
      case Mode::kSucceedOnRelease: {
        for (int i = 0; i < 2000 && !release && !cb.should_stop(); ++i) {
          absl::SleepFor(absl::Milliseconds(5));
        }
        if (!release) return absl::CancelledError("stopped before release");
        quartet::v1::Result r;
        r.set_test_accuracy(0.7);
        r.set_wall_seconds(1);
        return r;
      }
      case Mode::kRunUntilStopped:
        for (int i = 0; i < 2000 && !cb.should_stop(); ++i) absl::SleepFor(absl::Milliseconds(5));
        return common::WithErrorClass(absl::CancelledError("stopped"),
                                      quartet::v1::ERROR_CLASS_PREEMPTED);
    }
    return absl::InternalError("unreachable");
  }
  [[noreturn]] void Throw() {
    mode = Mode::kSucceed;
    throw std::runtime_error("CUDA error: an illegal memory access was encountered");
  }
  std::vector<std::string> Families() const override {
    return {"AirNet", "BagNet", "ResNet", "VGG"};
  }
  std::string Device() const override { return "cpu"; }
  std::string GpuName() const override { return ""; }
  int64_t GpuMemoryBytes() const override { return 0; }
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorCore::Options o;
    o.lease = absl::Seconds(30);
    o.heartbeat_interval = absl::Milliseconds(20);
    core_ = std::move(*CoordinatorCore::Create(o, &store_, common::Clock::Real()));
    client_ = std::make_unique<InProcessClient>(core_.get());
  }

  int64_t Submit(int64_t budget) {
    quartet::v1::CampaignConfig c;
    c.set_name("daemon");
    for (const char* f : {"AirNet", "BagNet", "ResNet", "VGG"}) c.add_pool(f);
    c.set_k(2);
    c.set_budget(budget);
    c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
    auto campaign = core_->SubmitCampaign(c);
    EXPECT_TRUE(campaign.ok()) << campaign.status();
    return campaign->id();
  }

  // The production schedule (back-off, flush interval, stop budget): the daemon waits on clock_,
  // a FakeClock, so none of it is slept in real time.
  WorkerDaemon::Options Fast(int max_candidates = 0) {
    WorkerDaemon::Options o;
    o.host = "test";
    o.max_candidates = max_candidates;
    return o;
  }

  common::FakeClock clock_;
  coordinator::MemoryStore store_;
  std::unique_ptr<CoordinatorCore> core_;
  std::unique_ptr<InProcessClient> client_;
  ScriptedTrainer trainer_;
};

TEST_F(DaemonTest, TrainsAndCompletesCandidatesAndStreamsTheirMetrics) {
  const int64_t id = Submit(3);
  WorkerDaemon d(Fast(3), client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(d.Run().ok());
  EXPECT_EQ(d.candidates_done(), 3);
  auto c = core_->GetCampaign(id);
  EXPECT_EQ(c->state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_EQ(c->counts().succeeded(), 3);
  auto cands = store_.ListCandidates({id, {}, false, 0});
  for (const auto& cand : *cands) {
    auto metrics = store_.GetMetrics(cand.id);
    ASSERT_TRUE(metrics.ok());
    ASSERT_EQ(metrics->size(), 1u) << "candidate " << cand.id;
    EXPECT_EQ((*metrics)[0].name, "test_accuracy");
  }
}

TEST_F(DaemonTest, ItsMetricsFollowTheCandidatesAndTheirOutcomes) {
  Submit(2);
  WorkerMetrics metrics;
  WorkerDaemon::Options o = Fast(1);
  o.metrics = &metrics;
  WorkerDaemon ok(o, client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(ok.Run().ok());
  trainer_.mode = ScriptedTrainer::Mode::kFailNumeric;
  WorkerDaemon failing(o, client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(failing.Run().ok());
  const std::string text = common::SerializeMetrics(*metrics.registry());
  EXPECT_NE(text.find("quartet_worker_candidates_total{outcome=\"succeeded\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("quartet_worker_candidates_total{outcome=\"failed\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("quartet_worker_current_candidate 0"), std::string::npos) << text;
}

TEST_F(DaemonTest, StopHandsTheRunningCandidateBackForRetry) {
  const int64_t id = Submit(2);
  trainer_.mode = ScriptedTrainer::Mode::kRunUntilStopped;
  WorkerDaemon d(Fast(), client_.get(), &trainer_, &clock_);
  std::thread stopper([&] {
    while (trainer_.started == 0) absl::SleepFor(absl::Milliseconds(5));
    absl::SleepFor(absl::Milliseconds(100));  // some heartbeats happen meanwhile
    d.Stop();
  });
  ASSERT_TRUE(d.Run().ok());
  stopper.join();
  EXPECT_GT(client_->heartbeats.load(), 0);
  auto cands = store_.ListCandidates({id, {}, false, 0});
  int pending = 0;
  for (const auto& c : *cands) {
    if (c.state == coordinator::CandidateState::kPending) ++pending;
    if (c.attempt == 1) EXPECT_EQ(c.error_class, quartet::v1::ERROR_CLASS_PREEMPTED);
  }
  EXPECT_EQ(pending, 2);  // the stopped one is back in the queue
  EXPECT_EQ(core_->GetCampaign(id)->counts().leased(), 0);
}

TEST_F(DaemonTest, CancellationStopsTraining) {
  const int64_t id = Submit(2);
  trainer_.mode = ScriptedTrainer::Mode::kRunUntilStopped;
  WorkerDaemon d(Fast(1), client_.get(), &trainer_, &clock_);
  std::thread canceller([&] {
    while (trainer_.started == 0) absl::SleepFor(absl::Milliseconds(5));
    ASSERT_TRUE(core_->CancelCampaign(id).ok());
  });
  ASSERT_TRUE(d.Run().ok());
  canceller.join();
  auto c = core_->GetCampaign(id);
  EXPECT_EQ(c->counts().cancelled(), 2);
  EXPECT_EQ(c->counts().leased(), 0);
}

// quartetctl workers drain: the heartbeat carries drain, the candidate in hand still completes,
// nothing more is leased, and Run() returns OK (the process exits 0).
TEST_F(DaemonTest, ADrainedWorkerFinishesItsCandidateAndStops) {
  const int64_t id = Submit(3);
  trainer_.mode = ScriptedTrainer::Mode::kSucceedOnRelease;
  WorkerDaemon d(Fast(), client_.get(), &trainer_, &clock_);
  std::thread drainer([&] {
    while (trainer_.started == 0) absl::SleepFor(absl::Milliseconds(5));
    auto cands = store_.ListCandidates({id, {coordinator::CandidateState::kLeased}, false, 0});
    ASSERT_EQ(cands->size(), 1u);
    auto drained = core_->DrainWorker(cands->front().worker_id, true);
    ASSERT_TRUE(drained.ok()) << drained.status();
    EXPECT_TRUE(drained->draining());
    // Two more heartbeats: the drain has reached the worker while it trains.
    const int seen = client_->heartbeats.load();
    while (client_->heartbeats.load() < seen + 2) absl::SleepFor(absl::Milliseconds(5));
    trainer_.release = true;
  });
  absl::Status run = d.Run();
  drainer.join();
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_TRUE(d.drained());
  EXPECT_EQ(trainer_.started.load(), 1);
  EXPECT_EQ(d.candidates_done(), 1);
  auto c = core_->GetCampaign(id);
  EXPECT_EQ(c->counts().succeeded(), 1);
  EXPECT_EQ(c->counts().leased(), 0);
  EXPECT_GE(c->counts().pending(), 1);
  EXPECT_EQ(c->state(), quartet::v1::CAMPAIGN_STATE_RUNNING);
}

TEST_F(DaemonTest, NumericFailureIsFinal) {
  const int64_t id = Submit(1);
  trainer_.mode = ScriptedTrainer::Mode::kFailNumeric;
  WorkerDaemon d(Fast(1), client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(d.Run().ok());
  auto cands = store_.ListCandidates({id, {}, false, 0});
  ASSERT_EQ(cands->size(), 1u);
  EXPECT_EQ((*cands)[0].state, coordinator::CandidateState::kFailed);
  EXPECT_EQ((*cands)[0].error_class, quartet::v1::ERROR_CLASS_NUMERIC);
  EXPECT_EQ(core_->GetCampaign(id)->state(), quartet::v1::CAMPAIGN_STATE_DONE);
}

TEST_F(DaemonTest, BacksOffWhileTheCoordinatorIsUnreachable) {
  Submit(1);
  client_->unavailable_calls = 5;
  WorkerDaemon d(Fast(1), client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(d.Run().ok());
  EXPECT_EQ(d.candidates_done(), 1);
  EXPECT_EQ(client_->unavailable_calls.load(), 0);
}

TEST_F(DaemonTest, ATrainerThatThrowsInAnyPhaseFailsOnlyThatCandidate) {
  for (int phase = 0; phase < 3; ++phase) {
    SCOPED_TRACE(phase);
    const int64_t id = Submit(2);
    trainer_.mode = ScriptedTrainer::Mode::kThrowOnce;
    trainer_.throw_phase = phase;
    // Three trainings: the one that throws (INTERNAL, retryable), its retry, the other candidate.
    WorkerDaemon d(Fast(3), client_.get(), &trainer_, &clock_);
    ASSERT_TRUE(d.Run().ok());  // the worker stays up
    EXPECT_EQ(d.candidates_done(), 3);
    auto cands = store_.ListCandidates({id, {}, false, 0});
    int internal = 0, succeeded = 0;
    for (const auto& c : *cands) {
      if (c.error_class == quartet::v1::ERROR_CLASS_INTERNAL && c.attempt == 2) ++internal;
      if (c.state == coordinator::CandidateState::kSucceeded) ++succeeded;
    }
    EXPECT_EQ(internal, 1);
    EXPECT_EQ(succeeded, 2);
    EXPECT_EQ(core_->GetCampaign(id)->state(), quartet::v1::CAMPAIGN_STATE_DONE);
  }
}

TEST_F(DaemonTest, BrokenMetricStreamsAreRetriedAndNothingIsLost) {
  const int64_t id = Submit(2);
  client_->broken_streams = 3;
  WorkerDaemon d(Fast(2), client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(d.Run().ok());
  EXPECT_EQ(client_->broken_streams.load(), 0);
  auto cands = store_.ListCandidates({id, {}, false, 0});
  ASSERT_TRUE(cands.ok());
  ASSERT_EQ(cands->size(), 2u);
  for (const auto& cand : *cands) {
    EXPECT_EQ(cand.state, coordinator::CandidateState::kSucceeded);
    auto metrics = store_.GetMetrics(cand.id);
    ASSERT_TRUE(metrics.ok());
    EXPECT_EQ(metrics->size(), 1u) << "candidate " << cand.id;
  }
}

TEST_F(DaemonTest, HeartbeatsGoOnUntilTheReportIsAcknowledged) {
  const int64_t id = Submit(1);
  client_->unavailable_reports = 40;  // the coordinator is away when training ends
  WorkerDaemon::Options o = Fast(1);
  o.heartbeat_interval = absl::Milliseconds(100);
  WorkerDaemon d(o, client_.get(), &trainer_, &clock_);
  ASSERT_TRUE(d.Run().ok());
  EXPECT_EQ(client_->unavailable_reports.load(), 0);
  // The scripted training takes no time, so heartbeats happened while the report was retried.
  EXPECT_GE(client_->heartbeats.load(), 5);
  EXPECT_EQ(core_->GetCampaign(id)->counts().succeeded(), 1);
}

TEST_F(DaemonTest, AReportThatCannotBeDeliveredAtStopIsSpooledAndDeliveredAtTheNextStart) {
  const int64_t id = Submit(1);
  char tmpl[] = "/tmp/quartet-daemon-state.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string state_dir = tmpl;
  client_->reports_down = true;
  WorkerDaemon::Options o = Fast(1);
  o.state_dir = state_dir;
  WorkerDaemon first(o, client_.get(), &trainer_, &clock_);
  std::thread stopper([&] {
    // Stop while the completion cannot be delivered.
    while (first.candidates_done() == 0) absl::SleepFor(absl::Milliseconds(5));
    absl::SleepFor(absl::Milliseconds(50));
    first.Stop();
  });
  ASSERT_TRUE(first.Run().ok());
  stopper.join();
  EXPECT_EQ(first.reports_spooled(), 1);
  EXPECT_EQ(core_->GetCampaign(id)->counts().succeeded(), 0);

  // The next start (same state dir) re-attaches under the same id and delivers it first.
  client_->reports_down = false;
  WorkerDaemon second(o, client_.get(), &trainer_, &clock_);
  std::thread stop_soon([&] {
    while (second.spooled_delivered() == 0) absl::SleepFor(absl::Milliseconds(5));
    second.Stop();
  });
  ASSERT_TRUE(second.Run().ok());
  stop_soon.join();
  EXPECT_EQ(second.worker_id(), first.worker_id());
  EXPECT_EQ(core_->GetCampaign(id)->counts().succeeded(), 1);
  EXPECT_EQ(trainer_.started.load(), 1);  // not trained twice
  std::system(("rm -rf " + state_dir).c_str());
}

// ---- Slots --------------------------------------------------------------------------------------

TEST(PlanSlotsTest, FollowsTheMachineAndTheFlags) {
  auto plan = [](SlotRequest r) {
    auto p = PlanSlots(r);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : SlotPlan{};
  };
  // CPU: one slot per CPU with one thread; --threads alone fits slots to the CPUs; --slots alone
  // shares the CPUs.
  SlotPlan p = plan({.online_cpus = 16});
  EXPECT_EQ(p.slots, 16);
  EXPECT_EQ(p.threads_per_slot, 1);
  EXPECT_EQ(p.memory_per_slot, 0);
  p = plan({.threads = 4, .online_cpus = 16});
  EXPECT_EQ(p.slots, 4);
  EXPECT_EQ(p.threads_per_slot, 4);
  p = plan({.slots = 3, .online_cpus = 16});
  EXPECT_EQ(p.slots, 3);
  EXPECT_EQ(p.threads_per_slot, 5);
  p = plan({.threads = 8, .online_cpus = 2});
  EXPECT_EQ(p.slots, 1);
  EXPECT_EQ(p.threads_per_slot, 8);
  // Automatic CPU slots fit the available host memory (4 GiB each); explicit ones are obeyed.
  const int64_t gib = int64_t{1} << 30;
  p = plan({.online_cpus = 64, .host_memory = 20 * gib});
  EXPECT_EQ(p.slots, 5);
  EXPECT_EQ(p.threads_per_slot, 12);
  p = plan({.online_cpus = 64, .host_memory = 2 * gib});
  EXPECT_EQ(p.slots, 1);
  p = plan({.slots = 16, .online_cpus = 64, .host_memory = 20 * gib});
  EXPECT_EQ(p.slots, 16);
  // GPU: a slot per 16 GiB of the usable 90%, at most 8; each slot gets an even share.
  p = plan({.online_cpus = 16, .gpu = true, .device_memory = 141 * gib});
  EXPECT_EQ(p.slots, 7);
  EXPECT_EQ(p.threads_per_slot, 2);
  EXPECT_EQ(p.memory_per_slot, static_cast<int64_t>(141 * gib * 0.9) / 7);
  p = plan({.online_cpus = 16, .gpu = true, .device_memory = 24 * gib});
  EXPECT_EQ(p.slots, 1);
  p = plan({.online_cpus = 16, .gpu = true, .device_memory = 640 * gib});
  EXPECT_EQ(p.slots, 8);
  p = plan({.slots = 4, .online_cpus = 16, .gpu = true, .device_memory = 80 * gib});
  EXPECT_EQ(p.slots, 4);
  EXPECT_EQ(p.memory_per_slot, static_cast<int64_t>(80 * gib * 0.9) / 4);
  // Bad counts name their flag.
  for (SlotRequest bad : {SlotRequest{.slots = -1}, SlotRequest{.slots = kMaxSlots + 1},
                          SlotRequest{.threads = -2}}) {
    auto refused = PlanSlots(bad);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "--")) << refused.status();
  }
}

TEST(PlanSlotsTest, SlotsKeepTheirOwnStateAndLabels) {
  EXPECT_EQ(SlotStateDir("/var/lib/w", 0), "/var/lib/w");  // a one-slot worker's layout
  EXPECT_EQ(SlotStateDir("/var/lib/w", 2), "/var/lib/w/slot-2");
  EXPECT_EQ(SlotStateDir("", 2), "");
  EXPECT_EQ(SlotLabel("gpu0", "box", 0, 1), "gpu0");
  EXPECT_EQ(SlotLabel("gpu0", "box", 1, 4), "gpu0-slot1");
  EXPECT_EQ(SlotLabel("", "box", 3, 4), "box-slot3");
}

class SlotsTest : public DaemonTest {
 protected:
  // `n` slots, each with a scripted trainer of its own in `mode`.
  std::unique_ptr<WorkerSlots> MakeSlots(int n, WorkerDaemon::Options o, ScriptedTrainer::Mode mode,
                                         SlotPlan plan = {}) {
    std::vector<WorkerSlots::Slot> slots;
    for (int k = 0; k < n; ++k) {
      trainers_.push_back(std::make_unique<ScriptedTrainer>());
      trainers_.back()->mode = mode;
      trainers_.back()->running = &running_;
      trainers_.back()->peers = n;
      slots.push_back({trainers_.back().get(), nullptr});
    }
    plan.slots = n;
    return std::make_unique<WorkerSlots>(o, plan, std::move(slots), client_.get(), &clock_);
  }

  std::vector<std::unique_ptr<ScriptedTrainer>> trainers_;
  std::atomic<int> running_{0};
};

TEST_F(SlotsTest, SlotsTrainAtOnceEachUnderItsOwnIdAndShareTheCandidateBudget) {
  const int64_t id = Submit(6);
  WorkerDaemon::Options o = Fast(5);  // --max_candidates=5 for the whole process
  o.worker_id = "box";
  auto slots = MakeSlots(3, o, ScriptedTrainer::Mode::kMeetPeers);
  ASSERT_TRUE(slots->Run().ok());
  EXPECT_EQ(running_.load(), 3);  // all three met: their first trainings ran at once
  EXPECT_EQ(slots->candidates_done(), 5);
  std::set<std::string> ids;
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(absl::StartsWith(slots->daemon(k).worker_id(), absl::StrCat("box-slot", k, "-")))
        << slots->daemon(k).worker_id();
    ids.insert(slots->daemon(k).worker_id());
  }
  EXPECT_EQ(ids.size(), 3u);
  auto c = core_->GetCampaign(id);
  EXPECT_EQ(c->counts().succeeded(), 5);
  EXPECT_EQ(c->counts().leased(), 0);
  std::set<std::string> completed_by;
  const auto cands = store_.ListCandidates({id, {}, false, 0});
  ASSERT_TRUE(cands.ok());
  for (const auto& cand : *cands) {
    if (cand.state == coordinator::CandidateState::kSucceeded) completed_by.insert(cand.worker_id);
  }
  EXPECT_EQ(completed_by, ids);
}

TEST_F(SlotsTest, StopHandsEverySlotsCandidateBack) {
  const int64_t id = Submit(4);
  auto slots = MakeSlots(2, Fast(), ScriptedTrainer::Mode::kRunUntilStopped);
  std::thread stopper([&] {
    for (int i = 0; i < 2000 && (trainers_[0]->started == 0 || trainers_[1]->started == 0); ++i) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    slots->Stop();
  });
  ASSERT_TRUE(slots->Run().ok());
  stopper.join();
  EXPECT_EQ(trainers_[0]->started.load(), 1);
  EXPECT_EQ(trainers_[1]->started.load(), 1);
  int preempted = 0;
  const auto cands = store_.ListCandidates({id, {}, false, 0});
  ASSERT_TRUE(cands.ok());
  for (const auto& c : *cands) {
    EXPECT_EQ(c.state, coordinator::CandidateState::kPending);
    if (c.error_class == quartet::v1::ERROR_CLASS_PREEMPTED) ++preempted;
  }
  EXPECT_EQ(preempted, 2);
  EXPECT_EQ(core_->GetCampaign(id)->counts().leased(), 0);
}

TEST_F(SlotsTest, ATrainerThatThrowsInOneSlotLeavesTheOthersRunning) {
  const int64_t id = Submit(3);
  auto slots = MakeSlots(2, Fast(4), ScriptedTrainer::Mode::kSucceed);
  trainers_[0]->mode = ScriptedTrainer::Mode::kThrowOnce;
  trainers_[0]->throw_phase = 1;
  ASSERT_TRUE(slots->Run().ok());
  EXPECT_EQ(slots->candidates_done(), 4);  // the throw, its retry and the two others
  auto c = core_->GetCampaign(id);
  EXPECT_EQ(c->counts().succeeded(), 3);
  EXPECT_EQ(c->state(), quartet::v1::CAMPAIGN_STATE_DONE);
}

// A worker once ran with 3 slots and stopped while slot 2's report could not be delivered; it now
// runs with one slot. Slot 2's spooled report is delivered under slot 2's identity, and its
// directory goes once empty.
TEST_F(SlotsTest, ASlotDirectoryBeyondTheSlotsIsDeliveredAndRemoved) {
  const int64_t id = Submit(1);
  char tmpl[] = "/tmp/quartet-slots-state.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string state_dir = tmpl;
  client_->reports_down = true;
  WorkerDaemon::Options old = Fast(1);
  old.state_dir = SlotStateDir(state_dir, 2);
  ASSERT_EQ(::mkdir(old.state_dir.c_str(), 0700), 0);
  WorkerDaemon slot2(old, client_.get(), &trainer_, &clock_);
  std::thread stopper([&] {
    while (slot2.candidates_done() == 0) absl::SleepFor(absl::Milliseconds(5));
    absl::SleepFor(absl::Milliseconds(50));
    slot2.Stop();
  });
  ASSERT_TRUE(slot2.Run().ok());
  stopper.join();
  ASSERT_EQ(slot2.reports_spooled(), 1);

  client_->reports_down = false;
  WorkerDaemon::Options o = Fast();
  o.state_dir = state_dir;
  auto slots = MakeSlots(1, o, ScriptedTrainer::Mode::kSucceed);
  std::thread stop_soon([&] {
    for (int i = 0; i < 2000 && core_->GetCampaign(id)->counts().succeeded() == 0; ++i) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    absl::SleepFor(absl::Milliseconds(50));
    slots->Stop();
  });
  ASSERT_TRUE(slots->Run().ok());
  stop_soon.join();
  EXPECT_EQ(core_->GetCampaign(id)->counts().succeeded(), 1);
  EXPECT_EQ(trainer_.started.load(), 1);  // delivered, not trained again
  EXPECT_EQ(trainers_[0]->started.load(), 0);
  DIR* gone = ::opendir(old.state_dir.c_str());
  EXPECT_EQ(gone, nullptr) << old.state_dir << " is still there";
  if (gone != nullptr) ::closedir(gone);
  std::system(("rm -rf " + state_dir).c_str());
}

}  // namespace
}  // namespace quartet::worker::daemon
