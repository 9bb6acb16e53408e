#include "coordinator/http/coordinator_metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/metrics_server.h"

namespace quartet::coordinator {
namespace {

// Latency buckets in seconds: 0.5 ms to 10 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

constexpr const char* kGrpcCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
constexpr int kGrpcCodeCount = sizeof(kGrpcCodeNames) / sizeof(kGrpcCodeNames[0]);

std::string CodeName(int code) {
  return code >= 0 && code < kGrpcCodeCount ? kGrpcCodeNames[code] : absl::StrCat(code);
}

// Times one call from its creation to the status it sends.
class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(const char* method, CoordinatorMetrics* metrics)
      : method_(method == nullptr ? "unknown" : method), metrics_(metrics), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->ObserveRpc(method_, methods->GetSendStatus().error_code(), absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  CoordinatorMetrics* const metrics_;
  const absl::Time start_;
};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(const Options& options, common::Clock* clock)
    : options_(options),
      clock_(clock),
      registry_(std::make_shared<prometheus::Registry>()),
      rpc_total_(prometheus::BuildCounter()
                     .Name("quartet_rpc_total")
                     .Help("gRPC calls by method and status code")
                     .Register(*registry_)),
      rpc_duration_(prometheus::BuildHistogram()
                        .Name("quartet_rpc_duration_seconds")
                        .Help("gRPC call latency by method")
                        .Register(*registry_)),
      leases_granted_(prometheus::BuildCounter()
                          .Name("quartet_leases_granted_total")
                          .Help("LeaseCandidate calls that got a candidate, by campaign")
                          .Register(*registry_)),
      leases_refused_(prometheus::BuildCounter()
                          .Name("quartet_lease_requests_refused_total")
                          .Help("LeaseCandidate calls that got no candidate (nothing the worker "
                                "can take now)")
                          .Register(*registry_)
                          .Add({})),
      leases_expired_(prometheus::BuildCounter()
                          .Name("quartet_leases_expired_total")
                          .Help("Leases ended by the expiry sweep, by campaign")
                          .Register(*registry_)),
      candidates_(prometheus::BuildGauge()
                      .Name("quartet_candidates")
                      .Help("Candidates by campaign and state")
                      .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("quartet_queue_depth")
                       .Help("PENDING candidates over every campaign")
                       .Register(*registry_)
                       .Add({})),
      pg_duration_(prometheus::BuildHistogram()
                       .Name("quartet_pg_transaction_duration_seconds")
                       .Help("PostgreSQL transactions (one per Store call, retries included)")
                       .Register(*registry_)
                       .Add({}, LatencyBuckets())),
      pg_errors_(prometheus::BuildCounter()
                     .Name("quartet_pg_errors_total")
                     .Help("PostgreSQL transactions that ended with an error, by status code")
                     .Register(*registry_)),
      live_workers_(prometheus::BuildGauge()
                        .Name("quartet_live_workers")
                        .Help("Workers that made a call within the live window (one lease)")
                        .Register(*registry_)
                        .Add({})) {}

std::string CoordinatorMetrics::Serialize() {
  const absl::Time cutoff = clock_->Now() - options_.live_window;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = last_seen_.begin(); it != last_seen_.end();) {
      it = it->second < cutoff ? last_seen_.erase(it) : std::next(it);
    }
    live_workers_.Set(static_cast<double>(last_seen_.size()));
  }
  return common::SerializeMetrics(*registry_);
}

void CoordinatorMetrics::ObserveRpc(const std::string& method, int code, absl::Duration elapsed) {
  rpc_total_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
  rpc_duration_.Add({{"method", method}}, LatencyBuckets()).Observe(absl::ToDoubleSeconds(elapsed));
}

void CoordinatorMetrics::ObserveTransaction(absl::Duration elapsed, const absl::Status& status) {
  pg_duration_.Observe(absl::ToDoubleSeconds(elapsed));
  if (!status.ok()) {
    pg_errors_.Add({{"code", absl::StatusCodeToString(status.code())}}).Increment();
  }
}

void CoordinatorMetrics::RecordCampaigns(const std::vector<quartet::v1::Campaign>& campaigns) {
  double pending = 0;
  for (const quartet::v1::Campaign& c : campaigns) {
    const std::string id = absl::StrCat(c.id());
    const quartet::v1::StateCounts& n = c.counts();
    const std::pair<const char*, int64_t> by_state[] = {
        {"pending", n.pending()},     {"leased", n.leased()},
        {"succeeded", n.succeeded()}, {"failed", n.failed()},
        {"cancelled", n.cancelled()}, {"stopped_early", n.stopped_early()}};
    for (const auto& [state, count] : by_state) {
      candidates_.Add({{"campaign", id}, {"state", state}}).Set(static_cast<double>(count));
    }
    pending += static_cast<double>(n.pending());
  }
  queue_depth_.Set(pending);
}

void CoordinatorMetrics::LeaseGranted(int64_t campaign_id) {
  leases_granted_.Add({{"campaign", absl::StrCat(campaign_id)}}).Increment();
}

void CoordinatorMetrics::LeaseRefused() { leases_refused_.Increment(); }

void CoordinatorMetrics::LeaseExpired(int64_t campaign_id) {
  leases_expired_.Add({{"campaign", absl::StrCat(campaign_id)}}).Increment();
}

void CoordinatorMetrics::WorkerSeen(const std::string& worker_id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  last_seen_[worker_id] = now;
}

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(info->method(), metrics_);
}

}  // namespace quartet::coordinator
