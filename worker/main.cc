// quartet-worker: one per GPU (or one per CPU box). Pulls candidates from the coordinator, trains
// them with LibTorch and streams metrics back, up to --slots candidates at once
// (worker/daemon/slots.h). SIGTERM/SIGINT: every running candidate stops at its next step and is
// handed back for another worker; exit status 0.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/artifacts.h"
#include "common/clock.h"
#include "common/flag_names.h"
#include "common/grpc_client.h"
#include "common/logging.h"
#include "common/metrics_server.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/daemon/daemon.h"
#include "worker/daemon/slots.h"
#include "worker/metrics/worker_metrics.h"
#include "worker/train/torch_trainer.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "Coordinator address (host:port).");
ABSL_FLAG(std::string, device, "cpu", "Training device: cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, data_root, "/var/lib/quartet/data",
          "Directory with cifar-10/, mnist/, fashion-mnist/ for specs that name no data_dir.");
ABSL_FLAG(
    std::string, worker_id, "",
    "A label for this worker: the coordinator assigns an id that starts with it. With "
    "--state_dir the worker keeps its id and session secret and re-attaches after a restart.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first non-blank line is a worker-role (or admin) token (default: "
          "$QUARTET_TOKEN).");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificates: connect with TLS.");
ABSL_FLAG(std::string, tls_client_cert, "",
          "PEM client certificate, for a coordinator run with --tls_client_ca (needs --tls_ca "
          "and --tls_client_key).");
ABSL_FLAG(std::string, tls_client_key, "", "PEM private key of --tls_client_cert.");
ABSL_FLAG(std::string, artifacts, "",
          "Artifact root for checkpoints and TorchScript exports: file:///abs/dir or a directory "
          "(made absolute). Checked writable at start. Empty: none are written, and multi-fidelity "
          "rungs train from scratch.");
ABSL_FLAG(int, slots, 0,
          "Candidates trained at once, each with its own lease, heartbeat, metric stream and "
          "threads (CPU) or CUDA stream (GPU). 0 = automatic: on CPU one per online CPU (or as "
          "many as --threads allows), at most one per 4 GiB of available memory; on a GPU one per "
          "16 GiB of device memory, at most 8, the "
          "memory shared evenly (the coordinator leases each slot only candidates whose estimate "
          "fits its share).");
ABSL_FLAG(int, threads, 0,
          "CPU threads for LibTorch per slot (0 = the online CPUs shared among the slots).");
ABSL_FLAG(bool, parallel_experts, true,
          "On CPU, run the gate and experts concurrently, one thread each (false: one after "
          "another on all threads).");
ABSL_FLAG(bool, cache_host_memory, true,
          "On CPU, keep freed memory in the process for reuse instead of unmapping large blocks "
          "(faster at large inputs; resident memory stays at its peak).");
ABSL_FLAG(std::string, state_dir, "",
          "Directory of this worker alone (one per worker process) for its id and undelivered "
          "reports (spool/); reports spooled at a stop are delivered first at the next start. "
          "Empty: nothing is kept across restarts.");
ABSL_FLAG(int, max_candidates, 0, "Exit after this many candidates (0 = run until stopped).");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::ZeroDuration(),
          "Override the coordinator's suggested heartbeat interval.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve this worker's Prometheus /metrics (samples/s, step time, device memory, current "
          "candidate) on HOST:PORT, without a token (off when empty).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(std::string, log_file, "", "Append logs to this file instead of stderr.");
ABSL_FLAG(std::string, log_format, "text",
          "text (readable lines) or json (one JSON object per line, for log shippers).");

namespace {

using quartet::worker::WorkerMetrics;
using quartet::worker::daemon::SlotPlan;
using quartet::worker::train::TorchTrainer;

int Fail(const absl::Status& s) {
  std::cerr << "quartet-worker: " << s.message() << "\n";
  return 1;
}

// The trainer settings every slot shares; the artifact root is checked writable here.
absl::StatusOr<TorchTrainer::Options> TrainerOptions() {
  TorchTrainer::Options topts;
  if (const std::string root = absl::GetFlag(FLAGS_artifacts); !root.empty()) {
    auto store = quartet::common::ArtifactStore::Open(root);
    absl::Status usable = store.ok() ? store->CheckWritable() : store.status();
    if (!usable.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--artifacts=", root, ": ", usable.message()));
    }
    spdlog::info("artifacts (checkpoints, exports) under {}", store->uri());
    topts.artifacts_uri = store->uri();
  }
  topts.device = absl::GetFlag(FLAGS_device);
  topts.data_root = absl::GetFlag(FLAGS_data_root);
  topts.parallel_experts = absl::GetFlag(FLAGS_parallel_experts);
  topts.cache_host_memory = absl::GetFlag(FLAGS_cache_host_memory);
  return topts;
}

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
int64_t AvailableHostMemory() {
  std::ifstream meminfo("/proc/meminfo");
  long long kib = 0;
  for (std::string line; std::getline(meminfo, line);) {
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1) return kib * 1024;
  }
  return 0;
}

// How many slots, with how many threads and how much device memory each. A probe trainer reads the
// device (and fails fast on a bad --device).
absl::StatusOr<SlotPlan> PlanSlots(const TorchTrainer::Options& topts) {
  TorchTrainer::Options probe_options = topts;
  probe_options.threads = 1;
  QUARTET_ASSIGN_OR_RETURN(std::unique_ptr<TorchTrainer> probe,
                           TorchTrainer::Create(probe_options));
  quartet::worker::daemon::SlotRequest request;
  request.slots = absl::GetFlag(FLAGS_slots);
  request.threads = absl::GetFlag(FLAGS_threads);
  request.online_cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  request.host_memory = AvailableHostMemory();
  request.gpu = probe->GpuMemoryBytes() > 0;
  request.device_memory = probe->GpuMemoryBytes();
  return quartet::worker::daemon::PlanSlots(request);
}

absl::StatusOr<quartet::common::ClientConnection> Connect() {
  quartet::common::ClientOptions copts;
  copts.address = absl::GetFlag(FLAGS_coordinator);
  copts.token_file = absl::GetFlag(FLAGS_token_file);
  copts.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  copts.tls_client_cert_file = absl::GetFlag(FLAGS_tls_client_cert);
  copts.tls_client_key_file = absl::GetFlag(FLAGS_tls_client_key);
  return quartet::common::ClientConnection::Create(copts);
}

quartet::worker::daemon::WorkerDaemon::Options DaemonOptions() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  quartet::worker::daemon::WorkerDaemon::Options dopts;
  dopts.worker_id = absl::GetFlag(FLAGS_worker_id);
  dopts.host = host;
  dopts.version = QUARTET_VERSION;
  dopts.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  dopts.max_candidates = absl::GetFlag(FLAGS_max_candidates);
  dopts.state_dir = absl::GetFlag(FLAGS_state_dir);
  return dopts;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> normalized_flags;
  quartet::common::ParseFlags(argc, argv,
                              "quartet-worker --coordinator=HOST:PORT --device=cuda:0\n"
                              "Pulls Quartet candidates, trains them, reports results.",
                              normalized_flags);
  if (auto s = quartet::common::InitLogging("worker", absl::GetFlag(FLAGS_log_level),
                                            absl::GetFlag(FLAGS_log_file),
                                            absl::GetFlag(FLAGS_log_format));
      !s.ok()) {
    return Fail(s);
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Metrics before the trainers load anything, so a bad address fails fast.
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<quartet::common::MetricsServer> metrics_server;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto started =
        quartet::common::MetricsServer::Start(absl::GetFlag(FLAGS_metrics_listen), registry);
    if (!started.ok()) return Fail(started.status());
    metrics_server = std::move(*started);
    spdlog::info("Prometheus /metrics on port {}", metrics_server->port());
  }

  absl::StatusOr<TorchTrainer::Options> topts = TrainerOptions();
  if (!topts.ok()) return Fail(topts.status());
  absl::StatusOr<SlotPlan> plan = PlanSlots(*topts);
  if (!plan.ok()) return Fail(plan.status());
  topts->threads = plan->threads_per_slot;
  std::vector<std::unique_ptr<TorchTrainer>> trainers;
  std::vector<std::unique_ptr<WorkerMetrics>> metrics;
  std::vector<quartet::worker::daemon::WorkerSlots::Slot> slots;
  for (int k = 0; k < plan->slots; ++k) {
    auto trainer = TorchTrainer::Create(*topts);
    if (!trainer.ok()) return Fail(trainer.status());
    trainers.push_back(std::move(*trainer));
    // One slot keeps the unlabelled series of a one-candidate worker.
    metrics.push_back(std::make_unique<WorkerMetrics>(
        registry, plan->slots > 1 ? std::to_string(k) : std::string()));
    slots.push_back({trainers.back().get(), metrics.back().get()});
  }
  spdlog::info("{} slot(s) on {}, {} thread(s) each{}", plan->slots, topts->device,
               plan->threads_per_slot,
               plan->memory_per_slot > 0
                   ? absl::StrCat(", ", plan->memory_per_slot >> 20, " MiB of device memory each")
                   : std::string());

  auto conn = Connect();
  if (!conn.ok()) return Fail(conn.status());
  quartet::worker::daemon::GrpcCoordinatorClient client(*conn);
  quartet::worker::daemon::WorkerSlots workers(DaemonOptions(), *plan, std::move(slots), &client,
                                               quartet::common::Clock::Real());

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: stopping every slot at its next step", sig);
    workers.Stop();
  });
  signal_thread.detach();  // it ends with the process

  absl::Status s = workers.Run();
  if (!s.ok()) {
    spdlog::error("{}", s.ToString());
    return Fail(s);
  }
  return 0;
}
