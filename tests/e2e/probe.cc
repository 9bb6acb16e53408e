// A minimal worker-protocol client for the e2e tests: makes one call and prints the status code
// (and message).
//   quartet_e2e_probe ADDRESS complete WORKER CANDIDATE TOKEN [SESSION_SECRET]
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>

#include "quartet/v1/worker.grpc.pb.h"

int main(int argc, char** argv) {
  if ((argc != 6 && argc != 7) || std::string(argv[2]) != "complete") {
    std::cerr << "usage: quartet_e2e_probe ADDRESS complete WORKER CANDIDATE TOKEN "
                 "[SESSION_SECRET]\n";
    return 2;
  }
  auto stub = quartet::v1::WorkerService::NewStub(
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  quartet::v1::CompleteCandidateRequest req;
  req.set_worker_id(argv[3]);
  req.set_candidate_id(std::stoll(argv[4]));
  req.set_lease_token(std::stoll(argv[5]));
  if (argc == 7) req.set_session_secret(argv[6]);
  req.mutable_result()->set_test_accuracy(0.99);
  quartet::v1::CompleteCandidateResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = stub->CompleteCandidate(&ctx, req, &resp);
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int code = static_cast<int>(s.error_code());
  std::cout << (code >= 0 && code <= 16 ? kNames[code] : "?") << " " << s.error_message() << "\n";
  return 0;
}
