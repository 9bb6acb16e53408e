// A scripted worker for the dashboard e2e test: registers, leases candidates and completes them
// with a test accuracy derived from the candidate id (every Nth fails as NUMERIC), then leases
// ABANDON more and never reports them (their leases expire). Prints what it did, one
// `key value` per line: succeeded, failed, abandoned, best (the best accuracy, 4 decimals).
//   quartet_e2e_fake_worker ADDRESS COUNT FAIL_EVERY ABANDON [TOKEN_FILE]
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "quartet/v1/worker.grpc.pb.h"
#include "tests/common/fake_result.h"

namespace {

constexpr int kEpochs = 3;
constexpr int kMaxIdleLeases = 50;  // "nothing now" answers before giving up (about 10 s)
constexpr int kIdleSleepMs = 200;

// Accuracy in [0.5, 0.9) from the candidate id, so the test can recompute it.
double AccuracyOf(int64_t candidate_id) { return 0.5 + 0.4 * ((candidate_id * 37) % 100) / 100.0; }

class FakeWorker {
 public:
  FakeWorker(const std::string& address, std::string token)
      : stub_(quartet::v1::WorkerService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        token_(std::move(token)) {}

  bool Register() {
    quartet::v1::RegisterWorkerRequest req;
    req.set_host("fake");
    req.set_device("cpu");
    req.set_worker_id("fake");
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    if (!Check(stub_->RegisterWorker(&ctx, req, &resp), "RegisterWorker")) return false;
    id_ = resp.worker_id();
    secret_ = resp.session_secret();
    return true;
  }

  // A lease, or false when none came within the idle bound.
  bool Lease(quartet::v1::LeaseCandidateResponse* out) {
    for (int i = 0; i < kMaxIdleLeases; ++i) {
      quartet::v1::LeaseCandidateRequest req;
      req.set_worker_id(id_);
      req.set_session_secret(secret_);
      grpc::ClientContext ctx;
      Prepare(&ctx);
      if (!Check(stub_->LeaseCandidate(&ctx, req, out), "LeaseCandidate")) return false;
      if (out->has_lease()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(kIdleSleepMs));
    }
    std::cerr << "fake worker: no candidate to lease\n";
    return false;
  }

  bool Complete(const quartet::v1::Lease& lease, double accuracy) {
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(id_);
    req.set_session_secret(secret_);
    req.set_candidate_id(lease.candidate_id());
    req.set_lease_token(lease.lease_token());
    quartet::testing::FillFakeResult(accuracy, kEpochs, req.mutable_result());
    quartet::v1::CompleteCandidateResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return Check(stub_->CompleteCandidate(&ctx, req, &resp), "CompleteCandidate");
  }

  bool Fail(const quartet::v1::Lease& lease) {
    quartet::v1::FailCandidateRequest req;
    req.set_worker_id(id_);
    req.set_session_secret(secret_);
    req.set_candidate_id(lease.candidate_id());
    req.set_lease_token(lease.lease_token());
    req.set_error_class(quartet::v1::ERROR_CLASS_NUMERIC);
    req.set_message("loss became NaN (scripted)");
    req.set_retryable(false);
    quartet::v1::FailCandidateResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return Check(stub_->FailCandidate(&ctx, req, &resp), "FailCandidate");
  }

 private:
  void Prepare(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }
  static bool Check(const grpc::Status& s, const char* call) {
    if (!s.ok()) std::cerr << "fake worker: " << call << ": " << s.error_message() << "\n";
    return s.ok();
  }

  std::unique_ptr<quartet::v1::WorkerService::Stub> stub_;
  const std::string token_;
  std::string id_, secret_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: quartet_e2e_fake_worker ADDRESS COUNT FAIL_EVERY ABANDON [TOKEN_FILE]\n";
    return 2;
  }
  const int count = std::stoi(argv[2]), fail_every = std::stoi(argv[3]);
  const int abandon = std::stoi(argv[4]);
  std::string token;
  if (argc == 6) std::getline(std::ifstream(argv[5]) >> std::ws, token);
  FakeWorker worker(argv[1], token);
  if (!worker.Register()) return 1;
  int succeeded = 0, failed = 0;
  double best = 0;
  for (int i = 1; i <= count; ++i) {
    quartet::v1::LeaseCandidateResponse l;
    if (!worker.Lease(&l)) return 1;
    if (fail_every > 0 && i % fail_every == 0) {
      if (!worker.Fail(l.lease())) return 1;
      ++failed;
    } else {
      const double acc = AccuracyOf(l.lease().candidate_id());
      if (!worker.Complete(l.lease(), acc)) return 1;
      ++succeeded;
      best = std::max(best, acc);
    }
  }
  for (int i = 0; i < abandon; ++i) {
    quartet::v1::LeaseCandidateResponse l;
    if (!worker.Lease(&l)) return 1;
  }
  char best_text[32];
  std::snprintf(best_text, sizeof(best_text), "%.4f", best);
  std::cout << "succeeded " << succeeded << "\nfailed " << failed << "\nabandoned " << abandon
            << "\nbest " << best_text << "\n";
  return 0;
}
