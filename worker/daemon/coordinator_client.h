// The worker's view of the coordinator, behind an interface: GrpcCoordinatorClient talks gRPC;
// tests use a fake. Every method is one call; errors are absl::Status with the server's code
// (UNAVAILABLE when the coordinator cannot be reached). Implementations are thread-safe.
#ifndef QUARTET_WORKER_DAEMON_COORDINATOR_CLIENT_H_
#define QUARTET_WORKER_DAEMON_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/grpc_client.h"
#include "quartet/v1/worker.grpc.pb.h"

namespace quartet::worker::daemon {

// One client-streamed sequence of metric batches for a lease.
class MetricStream {
 public:
  virtual ~MetricStream() = default;
  // False when the stream is broken (the server refused or went away); Finish() says why.
  virtual bool Write(const quartet::v1::MetricBatch& batch) = 0;
  // Ends the stream and returns the server's verdict.
  virtual absl::Status Finish() = 0;
};

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<quartet::v1::RegisterWorkerResponse> Register(
      const quartet::v1::RegisterWorkerRequest& request) = 0;
  virtual absl::StatusOr<quartet::v1::LeaseCandidateResponse> Lease(
      const quartet::v1::LeaseCandidateRequest& request) = 0;
  virtual absl::StatusOr<quartet::v1::HeartbeatResponse> Heartbeat(
      const quartet::v1::HeartbeatRequest& request) = 0;
  virtual std::unique_ptr<MetricStream> OpenMetricStream() = 0;
  virtual absl::Status Complete(const quartet::v1::CompleteCandidateRequest& request) = 0;
  virtual absl::StatusOr<quartet::v1::FailCandidateResponse> Fail(
      const quartet::v1::FailCandidateRequest& request) = 0;
};

class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  // `connection` is copied (it holds a shared channel).
  explicit GrpcCoordinatorClient(const common::ClientConnection& connection);

  absl::StatusOr<quartet::v1::RegisterWorkerResponse> Register(
      const quartet::v1::RegisterWorkerRequest& request) override;
  absl::StatusOr<quartet::v1::LeaseCandidateResponse> Lease(
      const quartet::v1::LeaseCandidateRequest& request) override;
  absl::StatusOr<quartet::v1::HeartbeatResponse> Heartbeat(
      const quartet::v1::HeartbeatRequest& request) override;
  std::unique_ptr<MetricStream> OpenMetricStream() override;
  absl::Status Complete(const quartet::v1::CompleteCandidateRequest& request) override;
  absl::StatusOr<quartet::v1::FailCandidateResponse> Fail(
      const quartet::v1::FailCandidateRequest& request) override;

 private:
  common::ClientConnection connection_;
  std::unique_ptr<quartet::v1::WorkerService::Stub> stub_;
};

}  // namespace quartet::worker::daemon

#endif  // QUARTET_WORKER_DAEMON_COORDINATOR_CLIENT_H_
