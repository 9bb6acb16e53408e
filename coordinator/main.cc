// quartet-coordinator: owns the combination space, leases candidates to workers and keeps every
// fact in PostgreSQL. The composition root: flags -> Store -> CoordinatorCore -> gRPC services.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/flag_names.h"
#include "common/logging.h"
#include "common/spec_io.h"
#include "coordinator/core/coordinator_core.h"
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
ABSL_FLAG(bool, memory_store, false,
          "Keep everything in memory instead of PostgreSQL (lost at exit; for trials only).");
ABSL_FLAG(absl::Duration, lease, absl::Seconds(60),
          "A lease not renewed by a heartbeat for this long expires; its candidate is retried.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::ZeroDuration(),
          "Heartbeat interval suggested to workers (default: lease / 4).");
ABSL_FLAG(int, issue_ahead, 4, "Pending candidates each running campaign keeps ready.");
ABSL_FLAG(std::string, token_file, "",
          "File holding a bearer token every client must present (also QUARTET_TOKEN). Without "
          "one, calls are not authenticated.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key, serve TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(std::string, log_file, "", "Append logs to this file instead of stderr.");

namespace {

using quartet::common::ReadFile;

constexpr absl::Duration kHealthPollInterval = absl::Milliseconds(250);

// First line of a file, trimmed; empty when path is empty.
absl::StatusOr<std::string> FirstLine(const std::string& path) {
  if (path.empty()) return std::string();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::string line = text->substr(0, text->find('\n'));
  return std::string(absl::StripAsciiWhitespace(line));
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
                                            absl::GetFlag(FLAGS_log_file));
      !s.ok()) {
    return Fail(s);
  }

  // Signals are handled by one thread with sigwait; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

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
      o.url_source = [path = absl::GetFlag(FLAGS_database_url_file)]() {
        return FirstLine(path);
      };
    }
    o.schema = absl::GetFlag(FLAGS_database_schema);
    o.pool_size = absl::GetFlag(FLAGS_database_pool_size);
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
  auto core = quartet::coordinator::CoordinatorCore::Create(core_options, store.get(),
                                                            quartet::common::Clock::Real());
  if (!core.ok()) return Fail(core.status());

  // ---- Services ----
  std::string token;
  {
    auto from_file = FirstLine(absl::GetFlag(FLAGS_token_file));
    if (!from_file.ok()) return Fail(from_file.status());
    token = *from_file;
    if (token.empty() && std::getenv("QUARTET_TOKEN")) token = std::getenv("QUARTET_TOKEN");
  }
  quartet::coordinator::TokenAuth auth(token);
  if (!auth.enabled()) {
    spdlog::warn(
        "no --token_file: calls are not authenticated; serve on loopback or a trusted "
        "network only");
  }
  quartet::coordinator::CampaignServiceImpl campaigns(core->get(), &auth);
  quartet::coordinator::WorkerServiceImpl workers(core->get(), &auth);

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    auto cert = ReadFile(absl::GetFlag(FLAGS_tls_cert));
    auto key = ReadFile(absl::GetFlag(FLAGS_tls_key));
    if (!cert.ok()) return Fail(cert.status());
    if (!key.ok()) return Fail(key.status());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), creds, &port);
  builder.RegisterService(&campaigns);
  builder.RegisterService(&workers);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot listen on ", absl::GetFlag(FLAGS_listen), " (address in use or not local?)")));
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
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    const std::string path = absl::GetFlag(FLAGS_port_file);
    std::ofstream(path + ".tmp") << port << "\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    campaigns.Shutdown();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  health_stop = true;
  health.join();
  (*core)->Stop();
  waiter.join();
  spdlog::info("quartet-coordinator stopped");
  return 0;
}
