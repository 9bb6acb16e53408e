// A small HTTP server that serves a Prometheus registry's text exposition at GET /metrics, on
// cpp-httplib. The worker runs one on --metrics_listen; the coordinator serves /metrics from its
// dashboard server instead. No LibTorch, no gRPC.
//
// Thread safety: Start and Stop from one thread; the registry is read on the server's threads
// (prometheus-cpp metrics are thread-safe).
#ifndef QUARTET_COMMON_METRICS_SERVER_H_
#define QUARTET_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/registry.h"

namespace httplib {
class Server;
}

namespace quartet::common {

// Content type of the Prometheus text format.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// The registry's metrics in the Prometheus text format.
std::string SerializeMetrics(const prometheus::Registry& registry);

// Parses `listen` (see ParseHttpListen), binds `server` to it without SO_REUSEPORT (so an address
// another server holds is refused, not shared), runs it on `*thread` and returns once it serves.
// Returns the bound port. INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot be
// bound or the server does not start; both name `flag`.
absl::StatusOr<int> StartHttpServer(httplib::Server* server, absl::string_view flag,
                                    absl::string_view listen, std::thread* thread);

class MetricsServer {
 public:
  // Binds `listen` ("HOST:PORT", port 0 picks one) and starts serving `registry` (shared, kept
  // alive by the server). INVALID_ARGUMENT for a malformed address, UNAVAILABLE when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();  // Stop()s

  // The bound port.
  int port() const { return port_; }
  // Stops serving and joins the server thread. Idempotent.
  void Stop();

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace quartet::common

#endif  // QUARTET_COMMON_METRICS_SERVER_H_
