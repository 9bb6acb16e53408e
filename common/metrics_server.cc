#include "common/metrics_server.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/http_listen.h"
#include "prometheus/text_serializer.h"

namespace quartet::common {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(5);
constexpr absl::Duration kStartPoll = absl::Milliseconds(1);

}  // namespace

std::string SerializeMetrics(const prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

absl::StatusOr<int> StartHttpServer(httplib::Server* server, absl::string_view flag,
                                    absl::string_view listen, std::thread* thread) {
  auto address = ParseHttpListen(flag, listen);
  if (!address.ok()) return address.status();
  // httplib's default also sets SO_REUSEPORT, which lets two servers share a port silently.
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const int port = address->port == 0
                       ? server->bind_to_any_port(address->host)
                       : (server->bind_to_port(address->host, address->port) ? address->port : -1);
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat(flag, ": cannot listen on ", listen, " (address in use or not local?)"));
  }
  *thread = std::thread([server] { server->listen_after_bind(); });
  // stop() before the server runs would be lost, so wait until it does.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!server->is_running() && absl::Now() < deadline) absl::SleepFor(kStartPoll);
  if (!server->is_running()) {
    server->stop();
    thread->join();
    return absl::UnavailableError(
        absl::StrCat(flag, ": the HTTP server on ", listen, " did not start"));
  }
  return port;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<MetricsServer> out(new MetricsServer());
  out->registry_ = std::move(registry);
  out->server_ = std::make_unique<httplib::Server>();
  prometheus::Registry* reg = out->registry_.get();
  out->server_->Get("/metrics", [reg](const httplib::Request&, httplib::Response& res) {
    res.set_content(SerializeMetrics(*reg), kPrometheusContentType);
  });
  auto port = StartHttpServer(out->server_.get(), "--metrics_listen", listen, &out->thread_);
  if (!port.ok()) return port.status();
  out->port_ = *port;
  return out;
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace quartet::common
