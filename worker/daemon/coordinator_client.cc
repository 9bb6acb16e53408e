#include "worker/daemon/coordinator_client.h"

#include "common/grpc_status.h"

namespace quartet::worker::daemon {
namespace {

using common::FromGrpcStatus;
constexpr absl::Duration kTimeout = absl::Seconds(20);
// Register, Lease and Heartbeat wait for the channel to connect (wait_for_ready) up to this long,
// so a worker's next call goes through as soon as the coordinator is back instead of failing fast
// and sleeping a back-off. Short enough that a stop is never held up for long.
constexpr absl::Duration kWaitForReadyTimeout = absl::Seconds(3);

void PrepareWaiting(const common::ClientConnection& connection, grpc::ClientContext* ctx) {
  connection.Prepare(ctx, kWaitForReadyTimeout);
  ctx->set_wait_for_ready(true);
}

class GrpcMetricStream : public MetricStream {
 public:
  GrpcMetricStream(quartet::v1::WorkerService::Stub* stub,
                   const common::ClientConnection& connection) {
    connection.Prepare(&context_);
    writer_ = stub->StreamMetrics(&context_, &response_);
  }
  bool Write(const quartet::v1::MetricBatch& batch) override { return writer_->Write(batch); }
  absl::Status Finish() override {
    writer_->WritesDone();
    return FromGrpcStatus(writer_->Finish());
  }

 private:
  grpc::ClientContext context_;
  quartet::v1::StreamMetricsResponse response_;
  std::unique_ptr<grpc::ClientWriter<quartet::v1::MetricBatch>> writer_;
};

}  // namespace

GrpcCoordinatorClient::GrpcCoordinatorClient(const common::ClientConnection& connection)
    : connection_(connection), stub_(quartet::v1::WorkerService::NewStub(connection.channel())) {}

absl::StatusOr<quartet::v1::RegisterWorkerResponse> GrpcCoordinatorClient::Register(
    const quartet::v1::RegisterWorkerRequest& request) {
  grpc::ClientContext ctx;
  PrepareWaiting(connection_, &ctx);
  quartet::v1::RegisterWorkerResponse out;
  grpc::Status s = stub_->RegisterWorker(&ctx, request, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<quartet::v1::LeaseCandidateResponse> GrpcCoordinatorClient::Lease(
    const quartet::v1::LeaseCandidateRequest& request) {
  grpc::ClientContext ctx;
  PrepareWaiting(connection_, &ctx);
  quartet::v1::LeaseCandidateResponse out;
  grpc::Status s = stub_->LeaseCandidate(&ctx, request, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

absl::StatusOr<quartet::v1::HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(
    const quartet::v1::HeartbeatRequest& request) {
  grpc::ClientContext ctx;
  PrepareWaiting(connection_, &ctx);
  quartet::v1::HeartbeatResponse out;
  grpc::Status s = stub_->Heartbeat(&ctx, request, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

std::unique_ptr<MetricStream> GrpcCoordinatorClient::OpenMetricStream() {
  return std::make_unique<GrpcMetricStream>(stub_.get(), connection_);
}

absl::Status GrpcCoordinatorClient::Complete(const quartet::v1::CompleteCandidateRequest& request) {
  grpc::ClientContext ctx;
  connection_.Prepare(&ctx, kTimeout);
  quartet::v1::CompleteCandidateResponse out;
  return FromGrpcStatus(stub_->CompleteCandidate(&ctx, request, &out));
}

absl::StatusOr<quartet::v1::FailCandidateResponse> GrpcCoordinatorClient::Fail(
    const quartet::v1::FailCandidateRequest& request) {
  grpc::ClientContext ctx;
  connection_.Prepare(&ctx, kTimeout);
  quartet::v1::FailCandidateResponse out;
  grpc::Status s = stub_->FailCandidate(&ctx, request, &out);
  if (!s.ok()) return FromGrpcStatus(s);
  return out;
}

}  // namespace quartet::worker::daemon
