// The gRPC services: thin adapters from the wire to CoordinatorCore. Each handler checks the role
// its call needs (see auth.h: SubmitCampaign, CancelCampaign, PauseCampaign, ResumeCampaign,
// UpdateCampaign and DrainWorker need admin, the other CampaignService calls viewer, every
// WorkerService call worker; admin may make every call), makes
// one core call and maps the absl::Status with ToGrpcStatus. No business logic, SQL or locking
// here. Thread-safe (the core is).
#ifndef QUARTET_COORDINATOR_SERVICE_SERVICES_H_
#define QUARTET_COORDINATOR_SERVICE_SERVICES_H_

#include <atomic>

#include "absl/time/time.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/service/auth.h"
#include "quartet/v1/campaign.grpc.pb.h"
#include "quartet/v1/worker.grpc.pb.h"

namespace quartet::coordinator {

class CampaignServiceImpl final : public quartet::v1::CampaignService::Service {
 public:
  // Concurrent WatchCampaign streams allowed by default; more get RESOURCE_EXHAUSTED.
  static constexpr int kDefaultMaxWatchStreams = 256;

  // Neither pointer is owned.
  CampaignServiceImpl(CoordinatorCore* core, const Authenticator* auth,
                      int max_watch_streams = kDefaultMaxWatchStreams)
      : core_(core), auth_(auth), max_watch_streams_(max_watch_streams) {}

  // Ends every WatchCampaign stream so the server can shut down.
  void Shutdown() {
    shutting_down_ = true;
    core_->Wake();
  }
  // WatchCampaign streams open now.
  int active_watches() const { return active_watches_.load(); }

  grpc::Status SubmitCampaign(grpc::ServerContext* context,
                              const quartet::v1::SubmitCampaignRequest* request,
                              quartet::v1::SubmitCampaignResponse* response) override;
  grpc::Status GetCampaign(grpc::ServerContext* context,
                           const quartet::v1::GetCampaignRequest* request,
                           quartet::v1::GetCampaignResponse* response) override;
  grpc::Status ListCampaigns(grpc::ServerContext* context,
                             const quartet::v1::ListCampaignsRequest* request,
                             quartet::v1::ListCampaignsResponse* response) override;
  grpc::Status CancelCampaign(grpc::ServerContext* context,
                              const quartet::v1::CancelCampaignRequest* request,
                              quartet::v1::CancelCampaignResponse* response) override;
  grpc::Status WatchCampaign(
      grpc::ServerContext* context, const quartet::v1::WatchCampaignRequest* request,
      grpc::ServerWriter<quartet::v1::WatchCampaignResponse>* writer) override;
  grpc::Status GetCoverageReport(grpc::ServerContext* context,
                                 const quartet::v1::GetCoverageReportRequest* request,
                                 quartet::v1::GetCoverageReportResponse* response) override;
  grpc::Status GetYieldReport(grpc::ServerContext* context,
                              const quartet::v1::GetYieldReportRequest* request,
                              quartet::v1::GetYieldReportResponse* response) override;
  grpc::Status ExportModel(grpc::ServerContext* context,
                           const quartet::v1::ExportModelRequest* request,
                           grpc::ServerWriter<quartet::v1::ArtifactChunk>* writer) override;
  grpc::Status ListResults(grpc::ServerContext* context,
                           const quartet::v1::ListResultsRequest* request,
                           quartet::v1::ListResultsResponse* response) override;
  grpc::Status GetCandidate(grpc::ServerContext* context,
                            const quartet::v1::GetCandidateRequest* request,
                            quartet::v1::GetCandidateResponse* response) override;
  grpc::Status PauseCampaign(grpc::ServerContext* context,
                             const quartet::v1::PauseCampaignRequest* request,
                             quartet::v1::PauseCampaignResponse* response) override;
  grpc::Status ResumeCampaign(grpc::ServerContext* context,
                              const quartet::v1::ResumeCampaignRequest* request,
                              quartet::v1::ResumeCampaignResponse* response) override;
  grpc::Status UpdateCampaign(grpc::ServerContext* context,
                              const quartet::v1::UpdateCampaignRequest* request,
                              quartet::v1::UpdateCampaignResponse* response) override;
  grpc::Status ListWorkers(grpc::ServerContext* context,
                           const quartet::v1::ListWorkersRequest* request,
                           quartet::v1::ListWorkersResponse* response) override;
  grpc::Status DrainWorker(grpc::ServerContext* context,
                           const quartet::v1::DrainWorkerRequest* request,
                           quartet::v1::DrainWorkerResponse* response) override;

 private:
  CoordinatorCore* const core_;
  const Authenticator* const auth_;
  const int max_watch_streams_;
  std::atomic<int> active_watches_{0};
  std::atomic<bool> shutting_down_{false};
};

class WorkerServiceImpl final : public quartet::v1::WorkerService::Service {
 public:
  WorkerServiceImpl(CoordinatorCore* core, const Authenticator* auth) : core_(core), auth_(auth) {}

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const quartet::v1::RegisterWorkerRequest* request,
                              quartet::v1::RegisterWorkerResponse* response) override;
  grpc::Status LeaseCandidate(grpc::ServerContext* context,
                              const quartet::v1::LeaseCandidateRequest* request,
                              quartet::v1::LeaseCandidateResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const quartet::v1::HeartbeatRequest* request,
                         quartet::v1::HeartbeatResponse* response) override;
  grpc::Status StreamMetrics(grpc::ServerContext* context,
                             grpc::ServerReader<quartet::v1::MetricBatch>* reader,
                             quartet::v1::StreamMetricsResponse* response) override;
  grpc::Status CompleteCandidate(grpc::ServerContext* context,
                                 const quartet::v1::CompleteCandidateRequest* request,
                                 quartet::v1::CompleteCandidateResponse* response) override;
  grpc::Status FailCandidate(grpc::ServerContext* context,
                             const quartet::v1::FailCandidateRequest* request,
                             quartet::v1::FailCandidateResponse* response) override;

 private:
  CoordinatorCore* const core_;
  const Authenticator* const auth_;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_SERVICE_SERVICES_H_
