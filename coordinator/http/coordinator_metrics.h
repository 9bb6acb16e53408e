// The coordinator's Prometheus metrics:
//   quartet_rpc_total{method,code}                 gRPC calls by full method name and status code
//   quartet_rpc_duration_seconds{method}           their latency (histogram)
//   quartet_leases_granted_total{campaign}         LeaseCandidate calls that got a candidate
//   quartet_lease_requests_refused_total           LeaseCandidate calls told "nothing now"
//   quartet_leases_expired_total{campaign}         leases the sweep ended
//   quartet_candidates{campaign,state}             candidates by state (at scrape time)
//   quartet_queue_depth                            PENDING candidates of every campaign
//   quartet_pg_transaction_duration_seconds        PostgreSQL transactions (one per Store call)
//   quartet_pg_errors_total{code}                  transactions that ended with an error
//   quartet_live_workers                           workers that made a call within live_window
//
// Events arrive through CoreEvents (the core), ObserveRpc (the gRPC interceptor, see
// RpcMetricsInterceptorFactory) and ObserveTransaction (PgStore::Options::on_transaction); the
// campaign gauges are set from the campaigns the scrape handler reads with RecordCampaigns.
// Thread-safe.
#ifndef QUARTET_COORDINATOR_HTTP_COORDINATOR_METRICS_H_
#define QUARTET_COORDINATOR_HTTP_COORDINATOR_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/core/core_events.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "quartet/v1/campaign.pb.h"

namespace quartet::coordinator {

class CoordinatorMetrics final : public CoreEvents {
 public:
  struct Options {
    // A worker counts as live while its last call is at most this old (the coordinator passes its
    // lease: a training worker heartbeats every lease / 4, an idle one asks for work every 2 s).
    absl::Duration live_window = absl::Seconds(60);
  };

  // `clock` is not owned and must outlive this object.
  CoordinatorMetrics(const Options& options, common::Clock* clock);

  // The registry to serialise at /metrics.
  const prometheus::Registry& registry() const { return *registry_; }
  // Prometheus text of every metric, after updating the live-worker gauge.
  std::string Serialize();

  // One finished gRPC call.
  void ObserveRpc(const std::string& method, int code, absl::Duration elapsed);
  // One PostgreSQL transaction.
  void ObserveTransaction(absl::Duration elapsed, const absl::Status& status);
  // Sets quartet_candidates and quartet_queue_depth from these campaigns.
  void RecordCampaigns(const std::vector<quartet::v1::Campaign>& campaigns);

  // CoreEvents
  void LeaseGranted(int64_t campaign_id) override;
  void LeaseRefused() override;
  void LeaseExpired(int64_t campaign_id) override;
  void WorkerSeen(const std::string& worker_id) override;

 private:
  const Options options_;
  common::Clock* const clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& rpc_total_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Counter>& leases_granted_;
  prometheus::Counter& leases_refused_;
  prometheus::Family<prometheus::Counter>& leases_expired_;
  prometheus::Family<prometheus::Gauge>& candidates_;
  prometheus::Gauge& queue_depth_;
  prometheus::Histogram& pg_duration_;
  prometheus::Family<prometheus::Counter>& pg_errors_;
  prometheus::Gauge& live_workers_;

  absl::Mutex mu_;
  // Last call of each worker seen within the live window.
  std::map<std::string, absl::Time> last_seen_ ABSL_GUARDED_BY(mu_);
};

// Creates one interceptor per gRPC call that reports the call's method, status code and latency
// to `metrics` (not owned; must outlive the server).
class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(CoordinatorMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  CoordinatorMetrics* const metrics_;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_HTTP_COORDINATOR_METRICS_H_
