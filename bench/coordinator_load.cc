// Coordinator load: asynchronous gRPC clients (one CompletionQueue per client thread, one channel
// and connection per fake worker) act as workers against a running quartet-coordinator. Each fake
// worker registers, then runs LeaseCandidate -> CompleteCandidate cycles with no training (a small
// valid Result with three epochs), or streams metric points (StreamMetrics) into its lease before
// completing it. Phases, in this order:
//   growth   --growth_workers workers from the campaign's first completion to --growth_candidates
//            completions, cycles/s and latencies in --growth_windows successive windows;
//   sweep    --workers concurrencies for --seconds each (a worker finishes the cycle it is in at
//            the deadline): cycles/s (every completion over the level's wall time), p50/p99 of
//            LeaseCandidate and CompleteCandidate, and the CPU each process used;
//   metrics  --metric_workers fake workers for --metric_seconds, each leasing a candidate,
//            streaming --metric_batches batches of --metric_batch points into it, then
//            completing it.
// CPU is read from /proc/<pid>/stat: the coordinator (--coordinator_pid), PostgreSQL (the
// postmaster --postgres_pid and its children) and this process; "other" is the rest of the
// machine's busy time (/proc/stat), which on a shared machine is someone else's load.
// --memory_results names a file of the same sweep's rates against a --memory_store coordinator
// (written by --rates_out), set beside this one to show what the store costs.
// --optuna_results names a file of `workers trials_per_second` lines (bench/optuna_load.py) that
// the sweep table sets side by side. Prints `completed N` (every CompleteCandidate answered OK) as
// its last line, after `metric_points N` (points stored); any RPC error makes the exit status 1.
//   coordinator_load --coordinator=ADDR --worker_token_file=FILE [--record] [flags]
// bench/coordinator_load.sh starts PostgreSQL, the coordinator and a campaign, and runs it.
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "quartet/v1/worker.grpc.pb.h"
#include "tests/common/fake_result.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "Coordinator address.");
ABSL_FLAG(std::string, worker_token_file, "",
          "File whose first line is a worker (or admin) token; empty: no credentials.");
ABSL_FLAG(std::vector<std::string>, workers,
          std::vector<std::string>({"1", "8", "32", "128", "256"}),
          "Concurrent fake workers of the sweep, one level after the other.");
ABSL_FLAG(absl::Duration, seconds, absl::Seconds(10), "Length of each sweep level.");
ABSL_FLAG(int64_t, growth_candidates, 100000,
          "Completions of the growth phase (0: no growth phase).");
ABSL_FLAG(int, growth_windows, 10, "Windows the growth phase is reported in.");
ABSL_FLAG(int, growth_workers, 32, "Concurrent fake workers of the growth phase.");
ABSL_FLAG(int, metric_workers, 8, "Concurrent metric streams (0: no metrics phase).");
ABSL_FLAG(int, metric_batch, 100, "Points a MetricBatch.");
ABSL_FLAG(int, metric_batches, 10,
          "MetricBatches a stream writes before it ends (then the lease is completed and the "
          "next one streamed), so no stream buffers more than the coordinator stores in time.");
ABSL_FLAG(absl::Duration, metric_seconds, absl::Seconds(10), "Length of the metrics phase.");
ABSL_FLAG(int, client_threads, 2, "Client threads, each polling its own CompletionQueue.");
ABSL_FLAG(int, coordinator_pid, 0, "Coordinator process, for the CPU split (0: not measured).");
ABSL_FLAG(int, postgres_pid, 0, "PostgreSQL postmaster, for the CPU split (0: not measured).");
ABSL_FLAG(std::string, optuna_results, "",
          "File of `workers trials_per_second` lines from bench/optuna_load.py.");
ABSL_FLAG(std::string, memory_results, "",
          "File of `workers cycles_per_second` lines of the same sweep against a --memory_store "
          "coordinator (--rates_out of that run): the cost of the store, side by side.");
ABSL_FLAG(std::string, rates_out, "", "Write the sweep's `workers cycles_per_second` lines here.");
ABSL_FLAG(std::string, note, "", "A line recorded under the tables (for example the load).");
ABSL_FLAG(bool, record, false, "Append the tables to bench/RESULTS.md.");

namespace {

using Clock = std::chrono::steady_clock;
using quartet::v1::WorkerService;

constexpr int kEpochs = 3;
constexpr auto kRpcDeadline = std::chrono::seconds(30);
constexpr int kMaxErrorsPrinted = 5;

// ---- CPU accounting -----------------------------------------------------------------------------

// Clock ticks of utime + stime of a process, or 0 when it is gone.
int64_t ProcessTicks(int pid, int* parent = nullptr) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ');
  // After "pid (comm) ": state is field 0, ppid 1, utime 11, stime 12.
  if (f.size() < 13) return 0;
  int64_t utime = 0, stime = 0;
  if (parent != nullptr && !absl::SimpleAtoi(f[1], parent)) *parent = 0;
  if (!absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime)) return 0;
  return utime + stime;
}

// Ticks of `postmaster` and its children (the backends and background processes). Backends that
// exit during a phase take their ticks with them; the bench's connections stay open throughout.
int64_t PostgresTicks(int postmaster) {
  if (postmaster <= 0) return 0;
  int64_t total = ProcessTicks(postmaster);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0, parent = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    const int64_t ticks = ProcessTicks(pid, &parent);
    if (parent == postmaster) total += ticks;
  }
  return total;
}

// Busy ticks of the whole machine (everything but idle and iowait).
int64_t MachineBusyTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  int64_t user, nice, system, idle, iowait, irq, softirq, steal;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return user + nice + system + irq + softirq + steal;
}

struct CpuSample {
  Clock::time_point at;
  int64_t coordinator, postgres, client, machine;
};

CpuSample SampleCpu() {
  return {Clock::now(), ProcessTicks(absl::GetFlag(FLAGS_coordinator_pid)),
          PostgresTicks(absl::GetFlag(FLAGS_postgres_pid)), ProcessTicks(getpid()),
          MachineBusyTicks()};
}

// CPU of each party over an interval, in cores (CPU seconds per second).
struct CpuSplit {
  double coordinator, postgres, client, other;
};

CpuSplit SplitOf(const CpuSample& a, const CpuSample& b) {
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double secs = std::chrono::duration<double>(b.at - a.at).count();
  auto cores = [&](int64_t d) { return secs > 0 ? d / tick / secs : 0.0; };
  CpuSplit s{cores(b.coordinator - a.coordinator), cores(b.postgres - a.postgres),
             cores(b.client - a.client), cores(b.machine - a.machine)};
  s.other = std::max(0.0, s.other - s.coordinator - s.postgres - s.client);
  return s;
}

// ---- Measurements -------------------------------------------------------------------------------

// What the fake workers of one client thread measured in one phase window. Touched only by that
// thread while a phase runs, and by the main thread between phases.
struct Stats {
  std::vector<int32_t> lease_us, complete_us;
  int64_t empty_leases = 0;  // LeaseCandidate answered with nothing to lease
  int64_t metric_points = 0;
  int64_t errors = 0;
};

double Percentile(std::vector<int32_t> v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i] / 1000.0;
}

enum class Mode { kCycles, kMetrics };

// One phase as the fake workers see it. Set by the main thread before any worker starts.
struct Phase {
  Mode mode = Mode::kCycles;
  Clock::time_point deadline;
  // Completions after which the phase stops (0: none); windows of the growth phase.
  int64_t completion_limit = 0;
  int64_t window_size = 0;
  std::atomic<int64_t> completed{0};
  std::vector<std::atomic<int64_t>>* window_ends = nullptr;  // ns since `start`, per window
  Clock::time_point start;
  std::atomic<int> active{0};

  bool Over() const {
    return Clock::now() >= deadline ||
           (completion_limit > 0 && completed.load(std::memory_order_relaxed) >= completion_limit);
  }
  int Window(int64_t n) const {
    return window_size > 0
               ? static_cast<int>(std::min<int64_t>((n - 1) / window_size,
                                                    static_cast<int64_t>(window_ends->size()) - 1))
               : 0;
  }
};

std::atomic<int64_t> g_completed_total{0};
std::atomic<int> g_errors_printed{0};

// ---- A fake worker ------------------------------------------------------------------------------

// A state machine driven by its CompletionQueue: one operation in flight at a time, its own tag.
// Only its client thread touches it while a phase runs.
class FakeWorker {
 public:
  FakeWorker(const std::string& address, std::string token, grpc::CompletionQueue* cq,
             std::vector<Stats>* stats)
      : token_(std::move(token)), cq_(cq), stats_(stats) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own, as a worker has
    stub_ = WorkerService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }

  bool Register(int index) {
    quartet::v1::RegisterWorkerRequest req;
    req.set_host("coordinator-load");
    req.set_device("cpu");
    req.set_version("bench");
    req.set_worker_id(absl::StrCat("load", index));
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    grpc::Status s = stub_->RegisterWorker(&ctx, req, &resp);
    if (!s.ok()) {
      std::cerr << "RegisterWorker: " << s.error_message() << "\n";
      return false;
    }
    id_ = resp.worker_id();
    secret_ = resp.session_secret();
    return true;
  }

  // Starts the worker in `phase`; it decrements phase->active when it stops.
  void Start(Phase* phase) {
    phase_ = phase;
    Lease();
  }

  // Called by the client thread with this worker's tag.
  void Proceed(bool ok) {
    switch (op_) {
      case Op::kLease:
        return OnLease(ok);
      case Op::kSleep:
        return Lease();
      case Op::kComplete:
        return OnComplete(ok);
      case Op::kStreamStart:
      case Op::kStreamWrite:
        return OnStreamWritten(ok);
      case Op::kStreamWritesDone:
        op_ = Op::kStreamFinish;
        writer_->Finish(&status_, this);
        return;
      case Op::kStreamFinish:
        return OnStreamFinished();
    }
  }

 private:
  enum class Op {
    kLease,
    kSleep,
    kComplete,
    kStreamStart,
    kStreamWrite,
    kStreamWritesDone,
    kStreamFinish
  };

  Stats& stats() {
    const int64_t n = phase_->completed.load(std::memory_order_relaxed);
    return (*stats_)[phase_->Window(std::max<int64_t>(n, 1))];
  }

  void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }

  // The previous call's readers and writer live in its arena: they go before its context.
  void NewContext() {
    lease_rpc_.reset();
    complete_rpc_.reset();
    writer_.reset();
    ctx_ = std::make_unique<grpc::ClientContext>();
    Prepare(ctx_.get());
    started_ = Clock::now();
  }

  int32_t ElapsedUs() const {
    return static_cast<int32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count());
  }

  void Error(const char* call, const grpc::Status& s) {
    ++stats().errors;
    if (g_errors_printed.fetch_add(1) < kMaxErrorsPrinted) {
      std::cerr << id_ << ": " << call << ": " << s.error_code() << " " << s.error_message()
                << "\n";
    }
    Stop();
  }

  void Stop() { phase_->active.fetch_sub(1, std::memory_order_release); }

  void Lease() {
    if (phase_->Over()) return Stop();
    op_ = Op::kLease;
    NewContext();
    quartet::v1::LeaseCandidateRequest req;
    req.set_worker_id(id_);
    req.set_session_secret(secret_);
    lease_resp_.Clear();
    lease_rpc_ = stub_->PrepareAsyncLeaseCandidate(ctx_.get(), req, cq_);
    lease_rpc_->StartCall();
    lease_rpc_->Finish(&lease_resp_, &status_, this);
  }

  void OnLease(bool ok) {
    if (!ok || !status_.ok()) return Error("LeaseCandidate", status_);
    const int32_t us = ElapsedUs();
    if (!lease_resp_.has_lease()) {
      ++stats().empty_leases;
      if (phase_->Over()) return Stop();
      op_ = Op::kSleep;
      alarm_.Set(cq_,
                 std::chrono::system_clock::now() +
                     std::chrono::milliseconds(std::max(1, lease_resp_.retry_after_ms())),
                 this);
      return;
    }
    stats().lease_us.push_back(us);
    lease_ = lease_resp_.lease();
    if (phase_->mode == Mode::kMetrics) return StartStream();
    Complete();
  }

  void Complete() {
    op_ = Op::kComplete;
    NewContext();
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(id_);
    req.set_session_secret(secret_);
    req.set_candidate_id(lease_.candidate_id());
    req.set_lease_token(lease_.lease_token());
    const double accuracy = 0.5 + 0.4 * ((lease_.candidate_id() * 37) % 100) / 100.0;
    quartet::testing::FillFakeResult(accuracy, kEpochs, req.mutable_result());
    complete_rpc_ = stub_->PrepareAsyncCompleteCandidate(ctx_.get(), req, cq_);
    complete_rpc_->StartCall();
    complete_rpc_->Finish(&complete_resp_, &status_, this);
  }

  void OnComplete(bool ok) {
    if (!ok || !status_.ok()) return Error("CompleteCandidate", status_);
    const int32_t us = ElapsedUs();
    const int64_t n = phase_->completed.fetch_add(1, std::memory_order_relaxed) + 1;
    g_completed_total.fetch_add(1, std::memory_order_relaxed);
    Stats& s = (*stats_)[phase_->Window(n)];
    s.complete_us.push_back(us);
    if (phase_->window_size > 0 && n % phase_->window_size == 0 &&
        n / phase_->window_size <= static_cast<int64_t>(phase_->window_ends->size())) {
      (*phase_->window_ends)[n / phase_->window_size - 1].store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - phase_->start)
              .count());
    }
    Lease();
  }

  void StartStream() {
    op_ = Op::kStreamStart;
    NewContext();
    stream_resp_.Clear();
    batches_written_ = 0;
    writer_ = stub_->PrepareAsyncStreamMetrics(ctx_.get(), &stream_resp_, cq_);
    writer_->StartCall(this);
  }

  void OnStreamWritten(bool ok) {
    if (!ok) {  // the server ended the stream: Finish says why
      op_ = Op::kStreamFinish;
      writer_->Finish(&status_, this);
      return;
    }
    if (batches_written_ >= absl::GetFlag(FLAGS_metric_batches) || phase_->Over()) {
      op_ = Op::kStreamWritesDone;
      writer_->WritesDone(this);
      return;
    }
    quartet::v1::MetricBatch batch;
    batch.set_worker_id(id_);
    batch.set_session_secret(secret_);
    batch.set_candidate_id(lease_.candidate_id());
    batch.set_lease_token(lease_.lease_token());
    for (int i = 0; i < absl::GetFlag(FLAGS_metric_batch); ++i) {
      auto* p = batch.add_points();
      p->set_step(next_step_++);
      p->set_name("step/train_loss");
      p->set_value(1.0 / (1 + next_step_));
    }
    op_ = Op::kStreamWrite;
    ++batches_written_;
    writer_->Write(batch, this);
  }

  void OnStreamFinished() {
    if (!status_.ok()) return Error("StreamMetrics", status_);
    stats().metric_points += stream_resp_.accepted();
    Complete();
  }

  const std::string token_;
  grpc::CompletionQueue* const cq_;
  std::vector<Stats>* const stats_;  // of its client thread, one per window
  std::unique_ptr<WorkerService::Stub> stub_;
  std::string id_, secret_;
  Phase* phase_ = nullptr;
  Op op_ = Op::kLease;

  std::unique_ptr<grpc::ClientContext> ctx_;
  Clock::time_point started_;
  grpc::Status status_;
  grpc::Alarm alarm_;
  quartet::v1::Lease lease_;
  int64_t next_step_ = 0;
  int batches_written_ = 0;
  quartet::v1::LeaseCandidateResponse lease_resp_;
  quartet::v1::CompleteCandidateResponse complete_resp_;
  quartet::v1::StreamMetricsResponse stream_resp_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<quartet::v1::LeaseCandidateResponse>> lease_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<quartet::v1::CompleteCandidateResponse>>
      complete_rpc_;
  std::unique_ptr<grpc::ClientAsyncWriter<quartet::v1::MetricBatch>> writer_;
};

// ---- The client ---------------------------------------------------------------------------------

// Client threads, each polling its own CompletionQueue, and the fake workers spread over them.
class LoadClient {
 public:
  LoadClient(const std::string& address, const std::string& token, int threads, int workers)
      : queues_(threads), stats_(threads) {
    for (int i = 0; i < threads; ++i) queues_[i] = std::make_unique<grpc::CompletionQueue>();
    for (int i = 0; i < workers; ++i) {
      workers_.push_back(std::make_unique<FakeWorker>(address, token, queues_[i % threads].get(),
                                                      &stats_[i % threads]));
    }
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([cq = queues_[i].get()] {
        void* tag;
        bool ok;
        while (cq->Next(&tag, &ok)) static_cast<FakeWorker*>(tag)->Proceed(ok);
      });
    }
  }

  ~LoadClient() {
    for (auto& q : queues_) q->Shutdown();
    for (auto& t : threads_) t.join();
  }

  bool Register() {
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i]->Register(static_cast<int>(i))) return false;
    }
    return true;
  }

  // Runs the first `n` workers in `phase` until each stopped; returns the merged stats per window.
  std::vector<Stats> Run(int n, Phase* phase, int windows) {
    for (auto& per_thread : stats_) per_thread.assign(windows, Stats{});
    phase->start = Clock::now();
    phase->active.store(n);
    for (int i = 0; i < n; ++i) workers_[i]->Start(phase);
    while (phase->active.load(std::memory_order_acquire) > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::vector<Stats> merged(windows);
    for (const auto& per_thread : stats_) {
      for (int w = 0; w < windows; ++w) {
        const Stats& s = per_thread[w];
        Stats& m = merged[w];
        m.lease_us.insert(m.lease_us.end(), s.lease_us.begin(), s.lease_us.end());
        m.complete_us.insert(m.complete_us.end(), s.complete_us.begin(), s.complete_us.end());
        m.empty_leases += s.empty_leases;
        m.metric_points += s.metric_points;
        m.errors += s.errors;
      }
    }
    return merged;
  }

 private:
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::vector<Stats>> stats_;  // per thread, per window
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::vector<std::thread> threads_;
};

std::string CpuCells(const CpuSplit& c) {
  return absl::StrFormat("%.2f | %.2f | %.2f | %.2f", c.coordinator, c.postgres, c.client, c.other);
}

std::map<int, double> ReadRates(const std::string& path) {
  std::map<int, double> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  int workers;
  double rate;
  while (in >> workers >> rate) out[workers] = rate;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string token;
  if (const std::string file = absl::GetFlag(FLAGS_worker_token_file); !file.empty()) {
    std::ifstream in(file);
    std::getline(in >> std::ws, token);
    if (token.empty()) {
      std::cerr << "--worker_token_file: no token in " << file << "\n";
      return 2;
    }
  }
  std::vector<int> levels;
  for (const std::string& w : absl::GetFlag(FLAGS_workers)) {
    int n = 0;
    if (!absl::SimpleAtoi(w, &n) || n < 1) {
      std::cerr << "--workers: '" << w << "' is not a positive number\n";
      return 2;
    }
    levels.push_back(n);
  }
  const int64_t growth_n = absl::GetFlag(FLAGS_growth_candidates);
  const int growth_workers = absl::GetFlag(FLAGS_growth_workers);
  const int windows = std::max(1, absl::GetFlag(FLAGS_growth_windows));
  const int metric_workers = absl::GetFlag(FLAGS_metric_workers);
  int max_workers = std::max(growth_n > 0 ? growth_workers : 0, metric_workers);
  for (int n : levels) max_workers = std::max(max_workers, n);

  LoadClient client(absl::GetFlag(FLAGS_coordinator), token,
                    std::max(1, absl::GetFlag(FLAGS_client_threads)), max_workers);
  if (!client.Register()) return 1;
  std::cout << "registered " << max_workers << " fake workers at "
            << absl::GetFlag(FLAGS_coordinator) << "\n";
  int64_t errors = 0, metric_points = 0;
  std::string body;

  // ---- Growth ----
  if (growth_n > 0) {
    std::vector<std::atomic<int64_t>> ends(windows);
    Phase phase;
    phase.deadline = Clock::time_point::max();
    phase.completion_limit = growth_n;
    phase.window_size = std::max<int64_t>(1, growth_n / windows);
    phase.window_ends = &ends;
    const CpuSample a = SampleCpu();
    std::vector<Stats> w = client.Run(growth_workers, &phase, windows);
    const CpuSample b = SampleCpu();
    std::string table = absl::StrCat(
        "| COMPLETED | CYCLES/S | LEASE P50 MS | LEASE P99 MS | COMPLETE P50 MS | COMPLETE P99 MS "
        "|\n|---|---|---|---|---|---|\n");
    int64_t prev_ns = 0;
    for (int i = 0; i < windows; ++i) {
      errors += w[i].errors;
      const int64_t end_ns = ends[i].load();
      if (end_ns == 0) break;
      const double secs = (end_ns - prev_ns) / 1e9;
      absl::StrAppendFormat(&table, "| %d-%d | %.0f | %.1f | %.1f | %.1f | %.1f |\n",
                            i * phase.window_size, (i + 1) * phase.window_size,
                            phase.window_size / secs, Percentile(w[i].lease_us, 0.5),
                            Percentile(w[i].lease_us, 0.99), Percentile(w[i].complete_us, 0.5),
                            Percentile(w[i].complete_us, 0.99));
      prev_ns = end_ns;
    }
    const CpuSplit cpu = SplitOf(a, b);
    absl::StrAppendFormat(&table,
                          "\nGrowth phase, %d workers, %.0f s: CPU in cores: coordinator %.2f, "
                          "PostgreSQL %.2f, clients %.2f, other processes %.2f.\n",
                          growth_workers, std::chrono::duration<double>(b.at - a.at).count(),
                          cpu.coordinator, cpu.postgres, cpu.client, cpu.other);
    std::cout << "\nGrowth: " << growth_workers << " workers, completions 0 to " << growth_n << "\n"
              << table;
    absl::StrAppend(&body, "Growth: ", growth_workers, " fake workers from the campaign's first ",
                    "completion to ", growth_n, ".\n\n", table, "\n");
  }

  // ---- Sweep ----
  const std::map<int, double> optuna = ReadRates(absl::GetFlag(FLAGS_optuna_results));
  const std::map<int, double> memory = ReadRates(absl::GetFlag(FLAGS_memory_results));
  const int columns = 12 + (optuna.empty() ? 0 : 2) + (memory.empty() ? 0 : 2);
  std::string table = absl::StrCat(
      "| WORKERS | CYCLES/S | LEASE P50 MS | LEASE P99 MS | COMPLETE P50 MS | COMPLETE P99 MS | "
      "EMPTY LEASES | CPU COORD | CPU PG | CPU CLIENTS | CPU OTHER | CPU MS/CYCLE |",
      memory.empty() ? "" : " MEMORYSTORE CYCLES/S | PG/MEMORY |",
      optuna.empty() ? "" : " OPTUNA TRIALS/S | QUARTET/OPTUNA |", "\n|");
  std::ofstream rates_out;
  if (const std::string path = absl::GetFlag(FLAGS_rates_out); !path.empty()) rates_out.open(path);
  for (int i = 0; i < columns; ++i) table += "---|";
  table += "\n";
  const absl::Duration length = absl::GetFlag(FLAGS_seconds);
  for (int n : levels) {
    Phase phase;
    phase.deadline = Clock::now() + absl::ToChronoNanoseconds(length);
    const CpuSample a = SampleCpu();
    std::vector<Stats> w = client.Run(n, &phase, 1);
    const CpuSample b = SampleCpu();
    errors += w[0].errors;
    const CpuSplit cpu = SplitOf(a, b);
    const double secs = std::chrono::duration<double>(b.at - a.at).count();
    const int64_t cycles = static_cast<int64_t>(w[0].complete_us.size());
    const double rate = cycles / secs;
    const double ms_per_cycle =
        cycles > 0 ? (cpu.coordinator + cpu.postgres) * secs * 1000 / cycles : 0;
    absl::StrAppendFormat(&table, "| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %d | %s | %.2f |", n,
                          rate, Percentile(w[0].lease_us, 0.5), Percentile(w[0].lease_us, 0.99),
                          Percentile(w[0].complete_us, 0.5), Percentile(w[0].complete_us, 0.99),
                          w[0].empty_leases, CpuCells(cpu), ms_per_cycle);
    for (const auto* other : {&memory, &optuna}) {
      if (other->empty()) continue;
      auto it = other->find(n);
      if (it == other->end() || it->second <= 0) {
        table += " - | - |";
      } else {
        absl::StrAppendFormat(&table, " %.0f | %.3gx |", it->second, rate / it->second);
      }
    }
    if (rates_out.is_open()) rates_out << n << " " << rate << "\n";
    table += "\n";
    std::cout << "sweep: " << n << " workers: " << absl::StrFormat("%.0f", rate) << " cycles/s\n";
  }
  std::cout << "\nSweep: " << absl::FormatDuration(length) << " a level\n" << table;
  absl::StrAppend(&body, "Sweep: ", absl::FormatDuration(length),
                  " a level, after which each worker finishes the cycle it is in; CYCLES/S is "
                  "every completion over the level's wall time; CPU in cores over the level (COORD "
                  "the coordinator, PG every "
                  "PostgreSQL process, CLIENTS this bench, OTHER the rest of the machine); CPU "
                  "MS/CYCLE is coordinator + PostgreSQL CPU per cycle.\n\n",
                  table, "\n");

  // ---- Metrics ----
  if (metric_workers > 0) {
    const absl::Duration mlen = absl::GetFlag(FLAGS_metric_seconds);
    Phase phase;
    phase.mode = Mode::kMetrics;
    phase.deadline = Clock::now() + absl::ToChronoNanoseconds(mlen);
    const CpuSample a = SampleCpu();
    std::vector<Stats> w = client.Run(metric_workers, &phase, 1);
    const CpuSample b = SampleCpu();
    errors += w[0].errors;
    metric_points = w[0].metric_points;
    const double secs = std::chrono::duration<double>(b.at - a.at).count();
    const CpuSplit cpu = SplitOf(a, b);
    std::string mt = absl::StrFormat(
        "| STREAMS | POINTS/BATCH | POINTS STORED | SECONDS | POINTS/S | CPU COORD | CPU PG | "
        "CPU CLIENTS | CPU OTHER |\n|---|---|---|---|---|---|---|---|---|\n"
        "| %d | %d | %d | %.1f | %.0f | %s |\n",
        metric_workers, absl::GetFlag(FLAGS_metric_batch), w[0].metric_points, secs,
        w[0].metric_points / secs, CpuCells(cpu));
    std::cout << "\nMetrics: StreamMetrics\n" << mt;
    absl::StrAppend(&body, "Metrics: for ", absl::FormatDuration(mlen),
                    " each fake worker leases a ", "candidate, streams ",
                    absl::GetFlag(FLAGS_metric_batches),
                    " batches of step/* points into it (one StreamMetrics call), waits for its "
                    "answer and completes the candidate; POINTS/S is the points the coordinator "
                    "acknowledged storing over SECONDS, up to the last stream's answer.\n\n",
                    mt, "\n");
  }
  if (const std::string note = absl::GetFlag(FLAGS_note); !note.empty()) {
    absl::StrAppend(&body, note, "\n");
  }
  if (absl::GetFlag(FLAGS_record) && errors == 0) {
    if (!quartet::bench::AppendResults(
            quartet::bench::ResultsPath(),
            "Coordinator load: fake workers over gRPC, PostgreSQL with fsync on",
            quartet::bench::CommandLine(argc, argv), body)) {
      return 1;
    }
  }
  std::cout << "errors " << errors << "\nmetric_points " << metric_points << "\ncompleted "
            << g_completed_total.load() << "\n";
  return errors == 0 ? 0 : 1;
}
