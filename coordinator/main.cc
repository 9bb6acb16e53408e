// quartet-coordinator: owns the combination space, leases candidates to workers and keeps every
// fact in PostgreSQL. The composition root: flags -> Store -> CoordinatorCore -> gRPC services.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/flag_names.h"
#include "common/http_listen.h"
#include "common/logging.h"
#include "common/spec_io.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/http/coordinator_metrics.h"
#include "coordinator/http/http_server.h"
#include "coordinator/service/auth.h"
#include "coordinator/service/services.h"
#include "coordinator/storage/memory_store.h"
#include "coordinator/storage/pg_store.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve gRPC on (host:port; port 0 picks a free one).");
ABSL_FLAG(std::string, port_file, "",
          "When set, the chosen port is written to this file once the server is up.");
ABSL_FLAG(std::string, database_url, "",
          "PostgreSQL URL. Prefer QUARTET_DATABASE_URL or --database_url_file so a password "
          "never shows in ps.");
ABSL_FLAG(std::string, database_url_file, "", "File whose first line is the PostgreSQL URL.");
ABSL_FLAG(std::string, database_schema, "", "Schema for Quartet's tables (default: public).");
ABSL_FLAG(int, database_pool_size, 4, "PostgreSQL connections kept open.");
ABSL_FLAG(absl::Duration, group_commit_window, absl::Milliseconds(2),
          "Group commit: how long a lease, heartbeat, completion or failure waits at most for "
          "others to share its PostgreSQL transaction (one writer, one commit per group); a call "
          "that finds the writer idle goes at once. 0 = a transaction per call.");
ABSL_FLAG(bool, memory_store, false,
          "Keep everything in memory instead of PostgreSQL (lost at exit; for trials only).");
ABSL_FLAG(absl::Duration, lease, absl::Seconds(60),
          "A lease not renewed by a heartbeat for this long expires; its candidate is retried.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::ZeroDuration(),
          "Heartbeat interval suggested to workers (default: lease / 4).");
ABSL_FLAG(int, issue_ahead, 4, "Pending candidates each running campaign keeps ready.");
ABSL_FLAG(std::string, credentials_file, "",
          "File of `role token` lines (role admin, worker or viewer; # comments and blank lines "
          "allowed). admin may make every call, worker the WorkerService calls, viewer the "
          "read-only CampaignService calls.");
ABSL_FLAG(std::string, admin_token_file, "", "File whose first non-blank line is an admin token.");
ABSL_FLAG(std::string, worker_token_file, "", "File whose first non-blank line is a worker token.");
ABSL_FLAG(std::string, viewer_token_file, "", "File whose first non-blank line is a viewer token.");
ABSL_FLAG(std::string, token_file, "",
          "Deprecated: the same as --admin_token_file. QUARTET_TOKEN, also deprecated, is an "
          "admin token read only when no credential flag is given. With no credential source at "
          "all, calls are not authenticated.");
ABSL_FLAG(std::optional<bool>, reflection, std::nullopt,
          "Serve gRPC server reflection (it lists every service and message, to anyone who can "
          "connect). Default: on when calls are not authenticated, off when they are.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key, serve TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert; with --tls_cert, serve TLS.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM roots for mutual TLS: every client must present a certificate signed by one of "
          "them (needs --tls_cert and --tls_key).");
ABSL_FLAG(int, max_watch_streams, 256,
          "Concurrent WatchCampaign streams; more get RESOURCE_EXHAUSTED. Each holds a server "
          "thread.");
ABSL_FLAG(std::string, http_listen, "",
          "Serve the live dashboard, its JSON API and Prometheus /metrics on this HOST:PORT "
          "(off when empty). With credentials, the API and /metrics need a viewer or admin token.");
ABSL_FLAG(std::string, http_port_file, "",
          "When set, the port --http_listen bound is written to this file once it serves.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(std::string, log_file, "", "Append logs to this file instead of stderr.");
ABSL_FLAG(std::string, log_format, "text",
          "text (readable lines) or json (one JSON object per line, for log shippers).");

namespace {

using quartet::common::ReadFile;

constexpr absl::Duration kHealthPollInterval = absl::Milliseconds(250);
// Server threads for calls other than watch streams.
constexpr int kCallThreads = 64;

// First line of a file, trimmed; empty when path is empty.
absl::StatusOr<std::string> FirstLine(const std::string& path) {
  if (path.empty()) return std::string();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::string line = text->substr(0, text->find('\n'));
  return std::string(absl::StripAsciiWhitespace(line));
}

// Writes `port` to `path` atomically (a temporary file, then a rename); nothing when path is empty.
void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  std::ofstream(path + ".tmp") << port << "\n";
  std::rename((path + ".tmp").c_str(), path.c_str());
}

int Fail(const absl::Status& status) {
  std::cerr << "quartet-coordinator: " << status.message() << "\n";
  spdlog::error("{}", status.ToString());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> normalized_flags;
  quartet::common::ParseFlags(
      argc, argv,
      "quartet-coordinator --listen=127.0.0.1:50051 [--database_url_file=FILE]\n"
      "Serves CampaignService and WorkerService; state lives in PostgreSQL.",
      normalized_flags);
  if (auto s = quartet::common::InitLogging("coordinator", absl::GetFlag(FLAGS_log_level),
                                            absl::GetFlag(FLAGS_log_file),
                                            absl::GetFlag(FLAGS_log_format));
      !s.ok()) {
    return Fail(s);
  }

  // Lock-order graphs cost a global lock per mutex created and destroyed (every call waits on
  // one); the lock order is documented and tested instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Signals are handled by one thread with sigwait; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string http_listen = absl::GetFlag(FLAGS_http_listen);
  if (!http_listen.empty()) {
    if (auto address = quartet::common::ParseHttpListen("--http_listen", http_listen);
        !address.ok()) {
      return Fail(address.status());
    }
  }

  // ---- Credentials and transport, checked before anything is opened ----
  quartet::coordinator::CredentialSources sources;
  sources.credentials_file = absl::GetFlag(FLAGS_credentials_file);
  sources.admin_token_file = absl::GetFlag(FLAGS_admin_token_file);
  sources.worker_token_file = absl::GetFlag(FLAGS_worker_token_file);
  sources.viewer_token_file = absl::GetFlag(FLAGS_viewer_token_file);
  sources.legacy_token_file = absl::GetFlag(FLAGS_token_file);
  if (const char* env = std::getenv("QUARTET_TOKEN")) sources.legacy_env_token = env;
  auto credentials = quartet::coordinator::LoadCredentials(sources);
  if (!credentials.ok()) return Fail(credentials.status());
  if (!sources.legacy_token_file.empty()) {
    spdlog::warn(
        "--token_file is deprecated: it is an admin token; use --admin_token_file, and "
        "give workers and viewers their own roles");
  }
  for (const auto& c : *credentials) {
    if (c.source == "QUARTET_TOKEN") {
      spdlog::warn(
          "QUARTET_TOKEN on the coordinator is deprecated: it is an admin token; use "
          "--admin_token_file or --credentials_file");
    }
  }
  const size_t credential_count = credentials->size();
  quartet::coordinator::Authenticator auth(std::move(*credentials));
  if (auth.enabled()) {
    spdlog::info("authentication on: {} credential(s) loaded", credential_count);
  } else {
    spdlog::warn(
        "no credentials (--credentials_file, --admin_token_file, --worker_token_file, "
        "--viewer_token_file, --token_file or QUARTET_TOKEN): every call is allowed without a "
        "token; serve on loopback or a trusted network only");
  }

  quartet::coordinator::ServerTlsOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  auto creds = quartet::coordinator::MakeServerCredentials(tls);
  if (!creds.ok()) return Fail(creds.status());
  if (tls.cert_file.empty()) {
    if (auth.enabled()) {
      spdlog::warn("no --tls_cert: serving plaintext; tokens cross the network in the clear");
    }
  } else {
    spdlog::info("serving TLS{}", tls.client_ca_file.empty() ? "" : " with client certificates");
  }
  const bool reflection = absl::GetFlag(FLAGS_reflection).value_or(!auth.enabled());

  // ---- Metrics: only when they are served ----
  std::unique_ptr<quartet::coordinator::CoordinatorMetrics> metrics;
  if (!http_listen.empty()) {
    quartet::coordinator::CoordinatorMetrics::Options mo;
    mo.live_window = absl::GetFlag(FLAGS_lease);
    metrics = std::make_unique<quartet::coordinator::CoordinatorMetrics>(
        mo, quartet::common::Clock::Real());
  }

  // ---- Store ----
  std::unique_ptr<quartet::coordinator::Store> store;
  if (absl::GetFlag(FLAGS_memory_store)) {
    spdlog::warn("--memory_store: nothing survives this process");
    store = std::make_unique<quartet::coordinator::MemoryStore>();
  } else {
    std::string url = absl::GetFlag(FLAGS_database_url);
    if (url.empty()) {
      auto from_file = FirstLine(absl::GetFlag(FLAGS_database_url_file));
      if (!from_file.ok()) return Fail(from_file.status());
      url = *from_file;
    }
    if (url.empty()) {
      const char* env = std::getenv("QUARTET_DATABASE_URL");
      if (env) url = env;
    }
    if (url.empty()) {
      return Fail(absl::InvalidArgumentError(
          "no database: pass --database_url_file=FILE, set QUARTET_DATABASE_URL, or use "
          "--memory_store for a throwaway trial"));
    }
    quartet::coordinator::PgStore::Options o;
    o.url = url;
    if (absl::GetFlag(FLAGS_database_url).empty() &&
        !absl::GetFlag(FLAGS_database_url_file).empty()) {
      // Re-read at every reconnection: a database restarted elsewhere is found without a restart.
      o.url_source = [path = absl::GetFlag(FLAGS_database_url_file)]() { return FirstLine(path); };
    }
    o.schema = absl::GetFlag(FLAGS_database_schema);
    o.pool_size = absl::GetFlag(FLAGS_database_pool_size);
    o.group_commit_window = absl::GetFlag(FLAGS_group_commit_window);
    if (metrics != nullptr) {
      o.on_transaction = [m = metrics.get()](absl::Duration elapsed, const absl::Status& status) {
        m->ObserveTransaction(elapsed, status);
      };
    }
    auto pg = quartet::coordinator::PgStore::Create(o);
    if (!pg.ok()) return Fail(pg.status());
    spdlog::info("PostgreSQL schema at version {}", (*pg)->schema_version());
    store = std::move(*pg);
  }

  // ---- Core ----
  quartet::coordinator::CoordinatorCore::Options core_options;
  core_options.lease = absl::GetFlag(FLAGS_lease);
  core_options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  core_options.issue_ahead = absl::GetFlag(FLAGS_issue_ahead);
  core_options.issue_in_background = true;
  core_options.events = metrics.get();
  auto core = quartet::coordinator::CoordinatorCore::Create(core_options, store.get(),
                                                            quartet::common::Clock::Real());
  if (!core.ok()) return Fail(core.status());

  // ---- Services ----
  const int max_watch_streams = absl::GetFlag(FLAGS_max_watch_streams);
  if (max_watch_streams < 1) {
    return Fail(absl::InvalidArgumentError("--max_watch_streams: must be at least 1"));
  }
  quartet::coordinator::CampaignServiceImpl campaigns(core->get(), &auth, max_watch_streams);
  quartet::coordinator::WorkerServiceImpl workers(core->get(), &auth);

  grpc::EnableDefaultHealthCheckService(true);
  if (reflection) {
    // Reflection is not role-checked: it is served to anyone who can connect.
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    if (auth.enabled()) spdlog::warn("--reflection: server reflection is served without a token");
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *creds, &port);
  builder.RegisterService(&campaigns);
  builder.RegisterService(&workers);
  builder.SetMaxReceiveMessageSize(64 << 20);
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(
        std::make_unique<quartet::coordinator::RpcMetricsInterceptorFactory>(metrics.get()));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  // Bounded server threads: every watch stream holds one, and the other calls get their own share.
  // Past the bound, calls get RESOURCE_EXHAUSTED instead of a new thread.
  grpc::ResourceQuota quota("quartet-coordinator");
  const int max_threads = max_watch_streams + kCallThreads;
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  // Idle server threads stay (up to that bound) instead of ending after each call and being
  // started again for the next.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, max_threads);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot listen on ", absl::GetFlag(FLAGS_listen), " (address in use or not local?)")));
  }
  // The dashboard before the port files, so a caller that waits for them finds both servers up.
  std::unique_ptr<quartet::coordinator::HttpServer> http;
  if (!http_listen.empty()) {
    quartet::coordinator::HttpServer::Options ho;
    ho.listen = http_listen;
    auto started = quartet::coordinator::HttpServer::Start(ho, core->get(), &auth, metrics.get());
    if (!started.ok()) {
      server->Shutdown();
      return Fail(started.status());
    }
    http = std::move(*started);
    spdlog::info("dashboard and /metrics on port {}{}", http->port(),
                 auth.enabled() ? " (the API and /metrics need a viewer or admin token)" : "");
    WritePortFile(absl::GetFlag(FLAGS_http_port_file), http->port());
  }
  (*core)->Start();
  // Health follows the database: NOT_SERVING while PostgreSQL cannot be reached.
  std::atomic<bool> health_stop{false};
  std::thread health([&] {
    bool last = true;
    while (!health_stop.load()) {
      const bool serving = (*core)->serving();
      if (serving != last) {
        server->GetHealthCheckService()->SetServingStatus(serving);
        last = serving;
      }
      absl::SleepFor(kHealthPollInterval);
    }
  });
  spdlog::info("quartet-coordinator serving on port {} (lease {}, issue ahead {})", port,
               absl::FormatDuration(core_options.lease), core_options.issue_ahead);
  WritePortFile(absl::GetFlag(FLAGS_port_file), port);

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    campaigns.Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  if (http != nullptr) http->Stop();
  health_stop = true;
  health.join();
  (*core)->Stop();
  waiter.join();
  spdlog::info("quartet-coordinator stopped");
  return 0;
}
