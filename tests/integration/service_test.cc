// The gRPC services over loopback on a real PostgreSQL: status codes on the wire, authentication,
// the worker protocol end to end, WatchCampaign streaming to the end, and the health service.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <future>
#include <limits>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/service/services.h"
#include "gmock/gmock.h"
#include "tests/common/pg_test_env.h"

namespace quartet::coordinator::testing {
namespace {

using ::testing::HasSubstr;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    QUARTET_REQUIRE_PG_OR_SKIP();
    PgStore::Options po;
    po.url = PgTestUrl();
    po.schema = schema_ = FreshSchema();
    auto store = PgStore::Create(po);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    CoordinatorCore::Options o;
    o.lease = absl::Seconds(30);
    core_ = std::move(*CoordinatorCore::Create(o, store_.get(), common::Clock::Real()));
    auth_ =
        std::make_unique<Authenticator>(std::vector<Credential>{{Role::kAdmin, "sesame", "test"}});
    campaigns_ = std::make_unique<CampaignServiceImpl>(core_.get(), auth_.get(), kMaxWatches);
    workers_ = std::make_unique<WorkerServiceImpl>(core_.get(), auth_.get());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(campaigns_.get());
    b.RegisterService(workers_.get());
    server_ = b.BuildAndStart();
    ASSERT_GT(port, 0);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    campaign_stub_ = quartet::v1::CampaignService::NewStub(channel);
    worker_stub_ = quartet::v1::WorkerService::NewStub(channel);
    channel_ = channel;
  }

  void TearDown() override {
    if (campaigns_) campaigns_->Shutdown();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  static constexpr int kMaxWatches = 2;

  static void Auth(grpc::ClientContext* ctx) { ctx->AddMetadata("authorization", "Bearer sesame"); }

  quartet::v1::CampaignConfig Config(int64_t budget) {
    quartet::v1::CampaignConfig c;
    c.set_name("service");
    for (const char* f : {"AirNet", "BagNet", "ResNet", "VGG"}) c.add_pool(f);
    c.set_k(2);
    c.set_budget(budget);
    c.set_sampler(quartet::v1::SAMPLER_KIND_PAIR_COVERING);
    c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
    return c;
  }

  // Row count and an md5 of every row of every table: equal fingerprints, unchanged database.
  std::string Fingerprint() {
    pqxx::connection conn(PgTestUrl());
    pqxx::work tx(conn);
    std::string out;
    for (const char* table : {"campaigns", "candidates", "workers", "metrics", "work_queue",
                              "family_coverage", "pair_coverage", "triple_coverage"}) {
      pqxx::result r = tx.exec(absl::StrCat(
          "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM ",
          schema_, ".", table, " t"));
      absl::StrAppend(&out, table, "=", r[0][0].c_str(), ":", r[0][1].c_str(), " ");
    }
    return out;
  }

  std::string schema_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<CoordinatorCore> core_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<CampaignServiceImpl> campaigns_;
  std::unique_ptr<WorkerServiceImpl> workers_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<quartet::v1::CampaignService::Stub> campaign_stub_;
  std::unique_ptr<quartet::v1::WorkerService::Stub> worker_stub_;
};

TEST_F(ServiceTest, RefusesCallsWithoutTheToken) {
  grpc::ClientContext ctx;
  quartet::v1::ListCampaignsResponse resp;
  auto s = campaign_stub_->ListCampaigns(&ctx, {}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext bad;
  bad.AddMetadata("authorization", "Bearer wrong");
  EXPECT_EQ(campaign_stub_->ListCampaigns(&bad, {}, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServiceTest, BadCampaignIsInvalidArgumentOnTheWireAndNothingIsStored) {
  quartet::v1::SubmitCampaignRequest req;
  *req.mutable_config() = Config(2);
  req.mutable_config()->add_pool("Nonexistent");
  quartet::v1::SubmitCampaignResponse resp;
  grpc::ClientContext ctx;
  Auth(&ctx);
  auto s = campaign_stub_->SubmitCampaign(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("pool"));
  EXPECT_TRUE(store_->ListCampaigns({}, 0)->empty());

  grpc::ClientContext ctx2;
  Auth(&ctx2);
  quartet::v1::GetCampaignRequest get;
  get.set_campaign_id(424242);
  quartet::v1::GetCampaignResponse got;
  EXPECT_EQ(campaign_stub_->GetCampaign(&ctx2, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, WorkerProtocolOverTheWireAndWatchEndsWhenDone) {
  quartet::v1::SubmitCampaignRequest req;
  *req.mutable_config() = Config(3);
  quartet::v1::SubmitCampaignResponse submitted;
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    ASSERT_TRUE(campaign_stub_->SubmitCampaign(&ctx, req, &submitted).ok());
  }
  const int64_t id = submitted.campaign().id();

  // A watcher that should see the campaign to DONE.
  std::vector<quartet::v1::Campaign> seen;
  std::thread watcher([&] {
    grpc::ClientContext ctx;
    Auth(&ctx);
    quartet::v1::WatchCampaignRequest w;
    w.set_campaign_id(id);
    w.set_interval_ms(50);
    auto reader = campaign_stub_->WatchCampaign(&ctx, w);
    quartet::v1::WatchCampaignResponse u;
    while (reader->Read(&u)) seen.push_back(u.campaign());
    EXPECT_TRUE(reader->Finish().ok());
  });

  quartet::v1::RegisterWorkerResponse reg;
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    quartet::v1::RegisterWorkerRequest r;
    r.set_host("it");
    ASSERT_TRUE(worker_stub_->RegisterWorker(&ctx, r, &reg).ok());
  }
  int64_t last_candidate = 0;
  for (int i = 0; i < 3; ++i) {
    quartet::v1::LeaseCandidateResponse lease;
    {
      grpc::ClientContext ctx;
      Auth(&ctx);
      quartet::v1::LeaseCandidateRequest r;
      r.set_worker_id(reg.worker_id());
      r.set_session_secret(reg.session_secret());
      ASSERT_TRUE(worker_stub_->LeaseCandidate(&ctx, r, &lease).ok());
      ASSERT_TRUE(lease.has_lease());
      last_candidate = lease.lease().candidate_id();
    }
    {
      grpc::ClientContext ctx;
      Auth(&ctx);
      quartet::v1::StreamMetricsResponse resp;
      auto writer = worker_stub_->StreamMetrics(&ctx, &resp);
      quartet::v1::MetricBatch batch;
      batch.set_worker_id(reg.worker_id());
      batch.set_session_secret(reg.session_secret());
      batch.set_candidate_id(lease.lease().candidate_id());
      batch.set_lease_token(lease.lease().lease_token());
      auto* p = batch.add_points();
      p->set_step(5);
      p->set_name("train_loss");
      p->set_value(1.25);
      ASSERT_TRUE(writer->Write(batch));
      ASSERT_TRUE(writer->Write(batch));  // idempotent
      writer->WritesDone();
      ASSERT_TRUE(writer->Finish().ok());
      EXPECT_EQ(resp.accepted(), 1);
    }
    {
      grpc::ClientContext ctx;
      Auth(&ctx);
      quartet::v1::CompleteCandidateRequest r;
      r.set_worker_id(reg.worker_id());
      r.set_session_secret(reg.session_secret());
      r.set_candidate_id(lease.lease().candidate_id());
      r.set_lease_token(lease.lease().lease_token());
      r.mutable_result()->set_test_accuracy(0.2 + 0.1 * i);
      quartet::v1::CompleteCandidateResponse resp;
      ASSERT_TRUE(worker_stub_->CompleteCandidate(&ctx, r, &resp).ok());
    }
    {
      // The same lease again: refused on the wire.
      grpc::ClientContext ctx;
      Auth(&ctx);
      quartet::v1::HeartbeatRequest hb;
      hb.set_worker_id(reg.worker_id());
      hb.set_session_secret(reg.session_secret());
      hb.set_candidate_id(lease.lease().candidate_id());
      hb.set_lease_token(lease.lease().lease_token());
      quartet::v1::HeartbeatResponse resp;
      EXPECT_EQ(worker_stub_->Heartbeat(&ctx, hb, &resp).error_code(),
                grpc::StatusCode::FAILED_PRECONDITION);
    }
  }
  watcher.join();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_NEAR(seen.back().best_accuracy(), 0.4, 1e-9);

  quartet::v1::GetCoverageReportRequest cr;
  cr.set_campaign_id(id);
  quartet::v1::GetCoverageReportResponse cov;
  grpc::ClientContext ctx;
  Auth(&ctx);
  ASSERT_TRUE(campaign_stub_->GetCoverageReport(&ctx, cr, &cov).ok());
  EXPECT_EQ(cov.report().pairs_seen(), 3);  // PAIR_COVERING at k = 2: one new pair per draw

  // One candidate by id, with its result; an unknown id is NOT_FOUND, a bad one INVALID_ARGUMENT.
  for (const auto& [candidate, code] : std::vector<std::pair<int64_t, grpc::StatusCode>>{
           {last_candidate, grpc::StatusCode::OK},
           {999999, grpc::StatusCode::NOT_FOUND},
           {-4, grpc::StatusCode::INVALID_ARGUMENT}}) {
    grpc::ClientContext one;
    Auth(&one);
    quartet::v1::GetCandidateRequest gr;
    gr.set_candidate_id(candidate);
    quartet::v1::GetCandidateResponse got;
    EXPECT_EQ(campaign_stub_->GetCandidate(&one, gr, &got).error_code(), code) << candidate;
    if (code == grpc::StatusCode::OK) {
      EXPECT_EQ(got.candidate().campaign_id(), id);
      EXPECT_EQ(got.candidate().state(), quartet::v1::CANDIDATE_STATE_SUCCEEDED);
      EXPECT_GT(got.candidate().result().test_accuracy(), 0.1);
    }
  }
}

TEST_F(ServiceTest, HealthServiceAnswersServing) {
  // grpc.health.v1.Health/Check with an empty request; the answer {status: SERVING} encodes as
  // the two bytes 08 01.
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  grpc::Slice empty(std::string(""));
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status s = done.get_future().get();
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices)
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(ServiceTest, WatchStreamsAreBoundedAndWokenByChanges) {
  quartet::v1::SubmitCampaignRequest submit;
  *submit.mutable_config() = Config(2);
  quartet::v1::SubmitCampaignResponse submitted;
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    ASSERT_TRUE(campaign_stub_->SubmitCampaign(&ctx, submit, &submitted).ok());
  }
  quartet::v1::WatchCampaignRequest watch;
  watch.set_campaign_id(submitted.campaign().id());
  watch.set_interval_ms(50);
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<quartet::v1::WatchCampaignResponse>> reader;
  };
  std::vector<std::unique_ptr<Stream>> open;
  quartet::v1::WatchCampaignResponse update;
  for (int i = 0; i < kMaxWatches; ++i) {
    auto s = std::make_unique<Stream>();
    Auth(&s->ctx);
    s->reader = campaign_stub_->WatchCampaign(&s->ctx, watch);
    ASSERT_TRUE(s->reader->Read(&update)) << "stream " << i;
    open.push_back(std::move(s));
  }
  EXPECT_EQ(campaigns_->active_watches(), kMaxWatches);
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    auto refused = campaign_stub_->WatchCampaign(&ctx, watch);
    EXPECT_FALSE(refused->Read(&update));
    grpc::Status s = refused->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("--max_watch_streams"));
  }
  // A change (a lease) reaches a watcher well before the 10 s keepalive.
  quartet::v1::RegisterWorkerRequest reg;
  quartet::v1::RegisterWorkerResponse registered;
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    ASSERT_TRUE(worker_stub_->RegisterWorker(&ctx, reg, &registered).ok());
  }
  const absl::Time leased_at = absl::Now();
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    quartet::v1::LeaseCandidateRequest lease;
    lease.set_worker_id(registered.worker_id());
    lease.set_session_secret(registered.session_secret());
    quartet::v1::LeaseCandidateResponse leased;
    ASSERT_TRUE(worker_stub_->LeaseCandidate(&ctx, lease, &leased).ok());
  }
  ASSERT_TRUE(open[0]->reader->Read(&update));
  EXPECT_EQ(update.campaign().counts().leased(), 1);
  EXPECT_LT(absl::Now() - leased_at, absl::Seconds(2));
  // Closing a stream frees its slot.
  open[1]->ctx.TryCancel();
  (void)open[1]->reader->Finish();
  for (int i = 0; i < 40 && campaigns_->active_watches() >= kMaxWatches; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_LT(campaigns_->active_watches(), kMaxWatches);
  open[0]->ctx.TryCancel();
  (void)open[0]->reader->Finish();
}

// Forged and malformed worker calls over the wire: each is refused with the code that says why,
// and the database does not change (every table's rows compared before and after).
TEST_F(ServiceTest, ForgedAndMalformedCallsAreRefusedAndChangeNothing) {
  quartet::v1::SubmitCampaignRequest submit;
  *submit.mutable_config() = Config(2);
  quartet::v1::SubmitCampaignResponse submitted;
  auto call_ctx = [](grpc::ClientContext* ctx) { Auth(ctx); };
  {
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    ASSERT_TRUE(campaign_stub_->SubmitCampaign(&ctx, submit, &submitted).ok());
  }
  auto register_worker = [&](const std::string& label) {
    quartet::v1::RegisterWorkerRequest r;
    r.set_worker_id(label);
    r.set_host("h");
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    EXPECT_TRUE(worker_stub_->RegisterWorker(&ctx, r, &resp).ok());
    return resp;
  };
  const auto victim = register_worker("victim");
  const auto attacker = register_worker("attacker");
  quartet::v1::LeaseCandidateResponse leased;
  {
    quartet::v1::LeaseCandidateRequest r;
    r.set_worker_id(victim.worker_id());
    r.set_session_secret(victim.session_secret());
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    ASSERT_TRUE(worker_stub_->LeaseCandidate(&ctx, r, &leased).ok());
    ASSERT_TRUE(leased.has_lease());
  }
  const std::string before = Fingerprint();

  auto complete = [&](const std::string& id, const std::string& secret, double accuracy,
                      double seconds) {
    quartet::v1::CompleteCandidateRequest r;
    r.set_worker_id(id);
    r.set_session_secret(secret);
    r.set_candidate_id(leased.lease().candidate_id());
    r.set_lease_token(leased.lease().lease_token());  // leaked
    r.mutable_result()->set_test_accuracy(accuracy);
    r.mutable_result()->set_wall_seconds(seconds);
    quartet::v1::CompleteCandidateResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    return worker_stub_->CompleteCandidate(&ctx, r, &resp);
  };
  // Spoofed id with the attacker's secret; the attacker's own id with the leaked token; a guessed
  // token under the victim's own credentials.
  EXPECT_EQ(complete(victim.worker_id(), attacker.session_secret(), 0.99, 1).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(complete(attacker.worker_id(), attacker.session_secret(), 0.99, 1).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  {
    quartet::v1::CompleteCandidateRequest r;
    r.set_worker_id(victim.worker_id());
    r.set_session_secret(victim.session_secret());
    r.set_candidate_id(leased.lease().candidate_id());
    r.set_lease_token(leased.lease().lease_token() ^ 1);
    r.mutable_result()->set_test_accuracy(0.99);
    quartet::v1::CompleteCandidateResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    grpc::Status st = worker_stub_->CompleteCandidate(&ctx, r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(st.error_message().find(std::to_string(leased.lease().lease_token())),
              std::string::npos);
  }
  // Malformed fields, each named.
  auto expect_invalid = [](const grpc::Status& st, const std::string& field) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_THAT(st.error_message(), ::testing::StartsWith(field));
  };
  expect_invalid(complete(victim.worker_id(), victim.session_secret(), 0.5,
                          std::numeric_limits<double>::quiet_NaN()),
                 "wall_seconds");
  expect_invalid(complete(victim.worker_id(), victim.session_secret(), 1.5, 1), "test_accuracy");
  {
    quartet::v1::FailCandidateRequest r;
    r.set_worker_id(victim.worker_id());
    r.set_session_secret(victim.session_secret());
    r.set_candidate_id(leased.lease().candidate_id());
    r.set_lease_token(leased.lease().lease_token());
    r.set_error_class(quartet::v1::ERROR_CLASS_OOM);
    r.set_message(std::string("out of memory\0", 14));
    quartet::v1::FailCandidateResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    expect_invalid(worker_stub_->FailCandidate(&ctx, r, &resp), "message");
  }
  for (int bad = 0; bad < 3; ++bad) {
    quartet::v1::MetricBatch b;
    b.set_worker_id(victim.worker_id());
    b.set_session_secret(victim.session_secret());
    b.set_candidate_id(leased.lease().candidate_id());
    b.set_lease_token(leased.lease().lease_token());
    auto* p = b.add_points();
    p->set_name(bad == 0 ? "train_loss" : bad == 1 ? std::string(200, 'x') : "a b");
    p->set_step(bad == 0 ? -5 : 1);
    quartet::v1::StreamMetricsResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    auto writer = worker_stub_->StreamMetrics(&ctx, &resp);
    writer->Write(b);
    writer->WritesDone();
    expect_invalid(writer->Finish(), "points[0].");
  }
  {
    quartet::v1::RegisterWorkerRequest r;
    r.set_host(std::string(300, 'h'));
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    expect_invalid(worker_stub_->RegisterWorker(&ctx, r, &resp), "host");
  }
  {
    quartet::v1::SubmitCampaignRequest r;
    *r.mutable_config() = Config(1);
    r.mutable_config()->clear_pool();
    for (const char* f : {"DPN68", "DPN131", "ResNet"}) r.mutable_config()->add_pool(f);
    quartet::v1::SubmitCampaignResponse resp;
    grpc::ClientContext ctx;
    call_ctx(&ctx);
    expect_invalid(campaign_stub_->SubmitCampaign(&ctx, r, &resp), "pool");
  }
  EXPECT_EQ(Fingerprint(), before);
}

// ---- Operator control: pause, resume, update, the fleet and draining ----

// Call helpers for the operator-control tests: each makes one authenticated call.
class ServiceControlTest : public ServiceTest {
 protected:
  int64_t Submit(int64_t budget) {
    quartet::v1::SubmitCampaignRequest req;
    *req.mutable_config() = Config(budget);
    quartet::v1::SubmitCampaignResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = campaign_stub_->SubmitCampaign(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.campaign().id();
  }
  grpc::Status Pause(int64_t id, quartet::v1::Campaign* out = nullptr) {
    quartet::v1::PauseCampaignRequest req;
    req.set_campaign_id(id);
    quartet::v1::PauseCampaignResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = campaign_stub_->PauseCampaign(&ctx, req, &resp);
    if (out) *out = resp.campaign();
    return s;
  }
  grpc::Status Resume(int64_t id, quartet::v1::Campaign* out = nullptr) {
    quartet::v1::ResumeCampaignRequest req;
    req.set_campaign_id(id);
    quartet::v1::ResumeCampaignResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = campaign_stub_->ResumeCampaign(&ctx, req, &resp);
    if (out) *out = resp.campaign();
    return s;
  }
  grpc::Status Update(const quartet::v1::UpdateCampaignRequest& req,
                      quartet::v1::Campaign* out = nullptr) {
    quartet::v1::UpdateCampaignResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = campaign_stub_->UpdateCampaign(&ctx, req, &resp);
    if (out) *out = resp.campaign();
    return s;
  }
  quartet::v1::Campaign Get(int64_t id) {
    quartet::v1::GetCampaignRequest req;
    req.set_campaign_id(id);
    quartet::v1::GetCampaignResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    EXPECT_TRUE(campaign_stub_->GetCampaign(&ctx, req, &resp).ok());
    return resp.campaign();
  }
  quartet::v1::RegisterWorkerResponse Register() {
    quartet::v1::RegisterWorkerRequest req;
    req.set_host("control");
    req.set_device("cpu");
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    EXPECT_TRUE(worker_stub_->RegisterWorker(&ctx, req, &resp).ok());
    return resp;
  }
  quartet::v1::LeaseCandidateResponse Lease(const quartet::v1::RegisterWorkerResponse& w) {
    quartet::v1::LeaseCandidateRequest req;
    req.set_worker_id(w.worker_id());
    req.set_session_secret(w.session_secret());
    quartet::v1::LeaseCandidateResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = worker_stub_->LeaseCandidate(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  quartet::v1::HeartbeatResponse Heartbeat(const quartet::v1::RegisterWorkerResponse& w,
                                           const quartet::v1::Lease& lease) {
    quartet::v1::HeartbeatRequest req;
    req.set_worker_id(w.worker_id());
    req.set_session_secret(w.session_secret());
    req.set_candidate_id(lease.candidate_id());
    req.set_lease_token(lease.lease_token());
    quartet::v1::HeartbeatResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = worker_stub_->Heartbeat(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  grpc::Status Complete(const quartet::v1::RegisterWorkerResponse& w,
                        const quartet::v1::Lease& lease, double accuracy) {
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(w.worker_id());
    req.set_session_secret(w.session_secret());
    req.set_candidate_id(lease.candidate_id());
    req.set_lease_token(lease.lease_token());
    req.mutable_result()->set_test_accuracy(accuracy);
    quartet::v1::CompleteCandidateResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    return worker_stub_->CompleteCandidate(&ctx, req, &resp);
  }
  grpc::Status Drain(const std::string& worker_id, bool undo = false,
                     quartet::v1::WorkerInfo* out = nullptr) {
    quartet::v1::DrainWorkerRequest req;
    req.set_worker_id(worker_id);
    req.set_undo(undo);
    quartet::v1::DrainWorkerResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = campaign_stub_->DrainWorker(&ctx, req, &resp);
    if (out) *out = resp.worker();
    return s;
  }
  std::vector<quartet::v1::WorkerInfo> Workers() {
    quartet::v1::ListWorkersResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    EXPECT_TRUE(campaign_stub_->ListWorkers(&ctx, {}, &resp).ok());
    return {resp.workers().begin(), resp.workers().end()};
  }
};

TEST_F(ServiceControlTest, APausedCampaignLeasesNothingAndKeepsWhatRunningCandidatesReport) {
  const int64_t id = Submit(4);
  const auto w = Register();
  const auto running = Lease(w);
  ASSERT_TRUE(running.has_lease());

  quartet::v1::Campaign paused;
  ASSERT_TRUE(Pause(id, &paused).ok());
  EXPECT_EQ(paused.state(), quartet::v1::CAMPAIGN_STATE_PAUSED);
  EXPECT_EQ(Get(id).state(), quartet::v1::CAMPAIGN_STATE_PAUSED);
  for (int i = 0; i < 3; ++i) {
    const auto none = Lease(w);
    EXPECT_FALSE(none.has_lease()) << "a paused campaign leased " << none.lease().candidate_id();
    EXPECT_GT(none.retry_after_ms(), 0);
    EXPECT_FALSE(none.drain());
  }
  EXPECT_TRUE(Pause(id).ok()) << "pausing a paused campaign is not an error";
  // The running candidate renews and completes; its result is kept.
  EXPECT_FALSE(Heartbeat(w, running.lease()).cancel());
  ASSERT_TRUE(Complete(w, running.lease(), 0.71).ok());
  quartet::v1::Campaign after = Get(id);
  EXPECT_EQ(after.state(), quartet::v1::CAMPAIGN_STATE_PAUSED);
  EXPECT_EQ(after.counts().succeeded(), 1);
  EXPECT_DOUBLE_EQ(after.best_accuracy(), 0.71);
  EXPECT_FALSE(Lease(w).has_lease());

  quartet::v1::Campaign resumed;
  ASSERT_TRUE(Resume(id, &resumed).ok());
  EXPECT_EQ(resumed.state(), quartet::v1::CAMPAIGN_STATE_RUNNING);
  const auto next = Lease(w);
  ASSERT_TRUE(next.has_lease());
  EXPECT_EQ(next.spec().campaign_id(), id);

  // Refusals: unknown ids, and campaigns that are already over.
  EXPECT_EQ(Pause(id + 1000).error_code(), grpc::StatusCode::NOT_FOUND);
  quartet::v1::CancelCampaignRequest cancel;
  cancel.set_campaign_id(id);
  quartet::v1::CancelCampaignResponse cancelled;
  grpc::ClientContext ctx;
  Auth(&ctx);
  ASSERT_TRUE(campaign_stub_->CancelCampaign(&ctx, cancel, &cancelled).ok());
  const grpc::Status refused = Pause(id);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("is CANCELLED; cannot pause"));
  EXPECT_EQ(Resume(id).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServiceControlTest, RaisingTheBudgetIssuesMoreAndLoweringBelowIssuedIsRefused) {
  const int64_t id = Submit(2);  // C(4, 2) = 6 combinations
  ASSERT_EQ(Get(id).issued(), 2);
  quartet::v1::UpdateCampaignRequest req;
  req.set_campaign_id(id);
  EXPECT_EQ(Update(req).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // nothing to change
  req.set_budget(1);
  grpc::Status below = Update(req);
  EXPECT_EQ(below.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(below.error_message(), HasSubstr("has issued 2 candidates"));
  req.set_budget(7);
  grpc::Status beyond = Update(req);
  EXPECT_EQ(beyond.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(beyond.error_message(), HasSubstr("6 distinct points"));
  EXPECT_EQ(Get(id).config().budget(), 2) << "a refused update changed the budget";

  req.set_budget(5);
  req.set_priority(3);
  quartet::v1::Campaign updated;
  ASSERT_TRUE(Update(req, &updated).ok());
  EXPECT_EQ(updated.config().budget(), 5);
  EXPECT_EQ(updated.config().priority(), 3);
  EXPECT_GT(updated.issued(), 2) << "raising the budget issued nothing";
  // All 5 are leased and completed; the campaign is DONE and cannot be updated any more.
  const auto w = Register();
  for (int i = 0; i < 5; ++i) {
    const auto lease = Lease(w);
    ASSERT_TRUE(lease.has_lease()) << "lease " << i;
    ASSERT_TRUE(Complete(w, lease.lease(), 0.5).ok());
  }
  EXPECT_FALSE(Lease(w).has_lease());
  const quartet::v1::Campaign done = Get(id);
  EXPECT_EQ(done.state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_EQ(done.counts().succeeded(), 5);
  req.set_budget(6);
  const grpc::Status finished = Update(req);
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(finished.error_message(), HasSubstr("DONE"));
  req.set_campaign_id(id + 1000);
  EXPECT_EQ(Update(req).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceControlTest, ADrainedWorkerIsLeasedNothingAndTheMarkSurvivesARestart) {
  const int64_t id = Submit(3);
  const auto w = Register();
  const auto running = Lease(w);
  ASSERT_TRUE(running.has_lease());
  quartet::v1::MetricBatch batch;
  batch.set_worker_id(w.worker_id());
  batch.set_session_secret(w.session_secret());
  batch.set_candidate_id(running.lease().candidate_id());
  batch.set_lease_token(running.lease().lease_token());
  auto* p = batch.add_points();
  p->set_step(3);
  p->set_epoch(1);
  p->set_name("train_loss");
  p->set_value(0.5);
  ASSERT_TRUE(core_->AppendMetrics(batch).ok());

  auto fleet = Workers();
  ASSERT_EQ(fleet.size(), 1u);
  EXPECT_EQ(fleet[0].worker_id(), w.worker_id());
  EXPECT_EQ(fleet[0].host(), "control");
  EXPECT_GT(fleet[0].last_seen_unix_ms(), 0);
  EXPECT_FALSE(fleet[0].draining());
  ASSERT_EQ(fleet[0].current_size(), 1);
  EXPECT_EQ(fleet[0].current(0).candidate_id(), running.lease().candidate_id());
  EXPECT_EQ(fleet[0].current(0).campaign_id(), id);
  EXPECT_EQ(fleet[0].current(0).epoch(), 1);
  EXPECT_EQ(fleet[0].current(0).epochs(), Get(id).config().recipe().epochs());

  quartet::v1::WorkerInfo drained;
  ASSERT_TRUE(Drain(w.worker_id(), false, &drained).ok());
  EXPECT_TRUE(drained.draining());
  EXPECT_EQ(drained.current_size(), 1);
  const auto beat = Heartbeat(w, running.lease());
  EXPECT_TRUE(beat.drain());
  EXPECT_FALSE(beat.cancel());
  const auto refused = Lease(w);
  EXPECT_FALSE(refused.has_lease());
  EXPECT_TRUE(refused.drain());
  ASSERT_TRUE(Complete(w, running.lease(), 0.6).ok()) << "the candidate in hand still reports";
  fleet = Workers();
  ASSERT_EQ(fleet.size(), 1u);
  EXPECT_TRUE(fleet[0].draining());
  EXPECT_EQ(fleet[0].current_size(), 0);
  EXPECT_EQ(fleet[0].candidates_succeeded(), 1);
  EXPECT_EQ(Get(id).counts().leased(), 0);

  // A new coordinator over the same database still tells the worker to drain.
  CoordinatorCore::Options o;
  o.lease = absl::Seconds(30);
  auto restarted = CoordinatorCore::Create(o, store_.get(), common::Clock::Real());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  quartet::v1::LeaseCandidateRequest again;
  again.set_worker_id(w.worker_id());
  again.set_session_secret(w.session_secret());
  auto after_restart = (*restarted)->LeaseCandidate(again);
  ASSERT_TRUE(after_restart.ok()) << after_restart.status();
  EXPECT_TRUE(after_restart->drain());
  EXPECT_FALSE(after_restart->has_lease());

  const grpc::Status unknown = Drain("nobody-12345678");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("quartetctl workers"));
  EXPECT_EQ(Drain("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Drain(w.worker_id(), /*undo=*/true).ok());
  const auto undone = Lease(w);
  EXPECT_FALSE(undone.drain());
  EXPECT_TRUE(undone.has_lease());
}

TEST_F(ServiceControlTest, ListResultsPagesInIdOrder) {
  const int64_t id = Submit(5);
  std::vector<int64_t> ids;
  quartet::v1::ListResultsRequest req;
  req.set_campaign_id(id);
  req.add_states(quartet::v1::CANDIDATE_STATE_PENDING);
  req.set_by_accuracy(false);
  req.set_limit(2);
  for (int page = 0; page < 10; ++page) {
    quartet::v1::ListResultsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx);
    ASSERT_TRUE(campaign_stub_->ListResults(&ctx, req, &resp).ok());
    for (const auto& c : resp.candidates()) ids.push_back(c.candidate_id());
    if (resp.candidates_size() < 2) break;
    req.set_after_candidate_id(ids.back());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(Get(id).issued()));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "a candidate twice";
  req.set_by_accuracy(true);
  quartet::v1::ListResultsResponse resp;
  grpc::ClientContext ctx;
  Auth(&ctx);
  EXPECT_EQ(campaign_stub_->ListResults(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace quartet::coordinator::testing
