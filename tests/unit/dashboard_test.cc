// The dashboard's parts without processes: the progress report, JSON, the embedded pages and the
// HTML report, the listen-address parser, the coordinator's Prometheus metrics fed by a real core,
// and the HTTP server's routes and auth over loopback (cpp-httplib client) on a MemoryStore core.
#include "coordinator/http/dashboard.h"

#include <httplib.h>

#include <regex>

#include "common/clock.h"
#include "common/http_listen.h"
#include "common/metrics_server.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/http/coordinator_metrics.h"
#include "coordinator/http/http_server.h"
#include "coordinator/storage/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace quartet::coordinator {
namespace {

using quartet::v1::CandidateSummary;
using ::testing::HasSubstr;
using ::testing::Not;

CandidateSummary Finished(int64_t id, int64_t ms, double accuracy, std::vector<std::string> fams) {
  CandidateSummary c;
  c.set_candidate_id(id);
  c.set_finished_unix_ms(ms);
  c.set_state(accuracy > 0 ? quartet::v1::CANDIDATE_STATE_SUCCEEDED
                           : quartet::v1::CANDIDATE_STATE_FAILED);
  c.mutable_result()->set_test_accuracy(accuracy);
  for (auto& f : fams) c.mutable_combination()->add_families(f);
  return c;
}

TEST(ProgressReport, CountsInFinishOrderWithTheBestSoFar) {
  // Given out of order; one failure; a PENDING candidate is skipped.
  std::vector<CandidateSummary> all = {Finished(3, 3000, 0.7, {"A", "B"}),
                                       Finished(1, 1000, 0.5, {"A", "C"}),
                                       Finished(2, 2000, 0, {"B", "C"})};
  CandidateSummary pending;
  pending.set_state(quartet::v1::CANDIDATE_STATE_PENDING);
  all.push_back(pending);
  auto r = BuildProgressReport(9, {"A", "B", "C"}, all);
  EXPECT_EQ(r.campaign_id(), 9);
  EXPECT_EQ(r.finished(), 3);
  ASSERT_EQ(r.points_size(), 3);
  EXPECT_EQ(r.points(0).unix_ms(), 1000);
  EXPECT_EQ(r.points(1).failed(), 1);
  EXPECT_DOUBLE_EQ(r.points(1).best_accuracy(), 0.5);
  EXPECT_EQ(r.points(2).succeeded(), 2);
  EXPECT_DOUBLE_EQ(r.points(2).best_accuracy(), 0.7);
  // Histograms over [0.5, 0.7]: A has one in the first bin and one in the last, C one in the first.
  EXPECT_DOUBLE_EQ(r.accuracy_lo(), 0.5);
  EXPECT_DOUBLE_EQ(r.accuracy_hi(), 0.7);
  ASSERT_EQ(r.families_size(), 3);
  EXPECT_EQ(r.families(0).family(), "A");
  ASSERT_EQ(r.families(0).counts_size(), kAccuracyBins);
  EXPECT_EQ(r.families(0).counts(0), 1);
  EXPECT_EQ(r.families(0).counts(kAccuracyBins - 1), 1);
  EXPECT_EQ(r.families(1).counts(kAccuracyBins - 1), 1);  // B: 0.7 only (its failure not counted)
  EXPECT_EQ(r.families(2).counts(0), 1);
}

TEST(ProgressReport, ThinsLongCampaignsAndKeepsTheLastPoint) {
  std::vector<CandidateSummary> all;
  const int n = 23751;
  for (int i = 1; i <= n; ++i) all.push_back(Finished(i, i, 0.5 + (i % 100) / 1000.0, {"A"}));
  auto r = BuildProgressReport(1, {"A"}, all);
  EXPECT_LE(r.points_size(), kMaxProgressPoints);
  EXPECT_GT(r.points_size(), kMaxProgressPoints / 2);
  EXPECT_EQ(r.points(r.points_size() - 1).succeeded(), n);
  EXPECT_EQ(r.points(r.points_size() - 1).unix_ms(), n);
  int64_t total = 0;
  for (int64_t c : r.families(0).counts()) total += c;
  EXPECT_EQ(total, n);
}

TEST(ProgressReport, NothingFinishedGivesAnEmptyCurveAndAValidRange) {
  auto r = BuildProgressReport(1, {"A"}, {});
  EXPECT_EQ(r.points_size(), 0);
  EXPECT_LT(r.accuracy_lo(), r.accuracy_hi());
}

TEST(Dashboard, JsonUsesCamelCaseAndPrintsZeros) {
  quartet::v1::Campaign c;
  c.set_id(4);
  auto json = ToJson(c);
  ASSERT_TRUE(json.ok());
  auto parsed = nlohmann::json::parse(*json);
  EXPECT_EQ(parsed["id"], "4");  // int64 as a string
  EXPECT_EQ(parsed["bestAccuracy"], 0);
}

TEST(Dashboard, PagesAreEmbeddedAndFetchNothingFromTheNetwork) {
  for (const char* path :
       {"/", "/campaigns", "/candidates", "/static/dashboard.js", "/static/dashboard.css"}) {
    const Asset* a = FindAsset(path);
    ASSERT_NE(a, nullptr) << path;
    EXPECT_FALSE(a->body.empty());
    // Only the SVG namespace URI may appear: it names, it is never fetched.
    std::string body(a->body);
    std::regex url(R"(https?://)");
    for (auto it = std::sregex_iterator(body.begin(), body.end(), url);
         it != std::sregex_iterator(); ++it) {
      EXPECT_EQ(body.substr(it->position(), 26), "http://www.w3.org/2000/svg") << path;
    }
  }
  EXPECT_EQ(FindAsset("/static/nope.js"), nullptr);
}

TEST(Dashboard, TheReportInlinesItsAssetsAndData) {
  const std::string html = RenderReportHtml(R"({"campaign": {"id": "7", "x": "</script>"}})");
  EXPECT_THAT(html, Not(HasSubstr("src=\"/static")));
  EXPECT_THAT(html, Not(HasSubstr("href=\"/")));
  EXPECT_THAT(html, HasSubstr("window.QUARTET_DATA = {\"campaign\": {\"id\": \"7\""));
  EXPECT_THAT(html, HasSubstr("<\\/script>"));  // the data cannot end its script early
  EXPECT_THAT(html, HasSubstr(std::string(FindAsset("/static/dashboard.js")->body)));
  EXPECT_THAT(html, HasSubstr("<style>"));
}

TEST(HttpListen, ParsesAndNamesTheFlagOnErrors) {
  auto ok = common::ParseHttpListen("--http_listen", "127.0.0.1:8080");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->host, "127.0.0.1");
  EXPECT_EQ(ok->port, 8080);
  auto v6 = common::ParseHttpListen("--http_listen", "[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad : {"8080", ":8080", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", "a b:80",
                          "127.0.0.1:-1"}) {
    auto s = common::ParseHttpListen("--http_listen", bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("--http_listen")) << bad;
  }
}

TEST(MetricsServer, ServesTheRegistryAndRefusesABadAddress) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge().Name("quartet_test_gauge").Help("t").Register(*registry).Add({}).Set(3);
  auto server = common::MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("quartet_test_gauge 3"));
  EXPECT_EQ(common::MetricsServer::Start("localhost", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The same port twice.
  EXPECT_EQ(common::MetricsServer::Start(absl::StrCat("127.0.0.1:", (*server)->port()), registry)
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
}

quartet::v1::CampaignConfig SmallConfig() {
  quartet::v1::CampaignConfig c;
  c.set_name("dash");
  for (const char* f : {"AirNet", "BagNet", "ResNet", "ShuffleNet", "VGG"}) c.add_pool(f);
  c.set_k(3);
  c.set_budget(6);
  c.set_seed(7);
  c.set_max_attempts(2);
  c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  return c;
}

// A MemoryStore core with metrics and an HTTP server; a worker that leases and completes.
class HttpTest : public ::testing::Test {
 protected:
  void Start(std::vector<Credential> credentials) {
    auth_ = std::make_unique<Authenticator>(std::move(credentials));
    CoordinatorMetrics::Options mo;
    mo.live_window = absl::Seconds(30);
    metrics_ = std::make_unique<CoordinatorMetrics>(mo, &clock_);
    CoordinatorCore::Options o;
    o.lease = absl::Seconds(30);
    o.issue_ahead = 2;
    o.events = metrics_.get();
    auto core = CoordinatorCore::Create(o, &store_, &clock_);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
    auto server = HttpServer::Start({}, core_.get(), auth_.get(), metrics_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  void RunCampaign() {
    ASSERT_TRUE(core_->SubmitCampaign(SmallConfig()).ok());
    quartet::v1::RegisterWorkerRequest reg;
    reg.set_host("t");
    auto w = core_->RegisterWorker(reg);
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 4; ++i) {
      quartet::v1::LeaseCandidateRequest lr;
      lr.set_worker_id(w->worker_id());
      lr.set_session_secret(w->session_secret());
      auto l = core_->LeaseCandidate(lr);
      ASSERT_TRUE(l.ok() && l->has_lease());
      if (i == 3) break;  // held, then expired below
      quartet::v1::CompleteCandidateRequest c;
      c.set_worker_id(w->worker_id());
      c.set_session_secret(w->session_secret());
      c.set_candidate_id(l->lease().candidate_id());
      c.set_lease_token(l->lease().lease_token());
      c.mutable_result()->set_test_accuracy(0.6 + 0.1 * i);
      ASSERT_TRUE(core_->CompleteCandidate(c).ok());
    }
    clock_.Advance(absl::Minutes(2));
    ASSERT_EQ(*core_->SweepExpiredLeases(), 1);
  }

  httplib::Result Get(const std::string& path, const std::string& token = "") {
    httplib::Headers h;
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    return client_->Get(path.c_str(), h);
  }

  MemoryStore store_;
  common::FakeClock clock_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<CoordinatorCore> core_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpTest, TheApiNeedsAViewerOrAdminToken) {
  Start({{Role::kViewer, "v-token", "test"},
         {Role::kWorker, "w-token", "test"},
         {Role::kAdmin, "a-token", "test"}});
  EXPECT_EQ(Get("/api/campaigns")->status, 401);
  EXPECT_THAT(Get("/api/campaigns")->body, HasSubstr("viewer token"));
  EXPECT_EQ(Get("/api/campaigns", "wrong")->status, 401);
  EXPECT_EQ(Get("/api/campaigns", "w-token")->status, 403);
  EXPECT_THAT(Get("/api/campaigns", "w-token")->body, HasSubstr("role worker"));
  EXPECT_EQ(Get("/metrics", "w-token")->status, 403);
  EXPECT_EQ(Get("/api/campaigns", "v-token")->status, 200);
  EXPECT_EQ(Get("/api/campaigns", "a-token")->status, 200);
  EXPECT_EQ(Get("/api/campaigns?token=v-token")->status, 200);
  httplib::Headers cookie = {{"Cookie", "other=1; quartet_token=v-token"}};
  EXPECT_EQ(client_->Get("/api/campaigns", cookie)->status, 200);
  httplib::Headers basic = {{"Authorization", "Basic djp2"}};
  EXPECT_EQ(client_->Get("/api/campaigns", basic)->status, 401);
  // Pages carry no data and are served to anyone; ?token= is kept in a cookie for the API.
  auto page = Get("/campaigns/1?token=v-token");
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Set-Cookie"), HasSubstr("quartet_token=v-token"));
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
}

TEST_F(HttpTest, WithoutCredentialsEverythingIsOpen) {
  Start({});
  EXPECT_EQ(Get("/api/campaigns")->status, 200);
  EXPECT_EQ(Get("/metrics")->status, 200);
}

TEST_F(HttpTest, BadIdsAndUnknownPathsGetClearErrors) {
  Start({});
  auto bad = Get("/api/campaigns/abc");
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, HasSubstr("campaign id 'abc' is not a positive number"));
  EXPECT_EQ(Get("/api/campaigns/0")->status, 400);
  auto missing = Get("/api/campaigns/77");
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(nlohmann::json::parse(missing->body)["code"], "NOT_FOUND");
  EXPECT_EQ(Get("/api/candidates/77")->status, 404);
  EXPECT_EQ(Get("/api/nothing")->status, 404);
  EXPECT_THAT(Get("/api/nothing")->body, HasSubstr("no such API path"));
  EXPECT_EQ(Get("/static/nope.js")->status, 404);
}

TEST_F(HttpTest, TheCampaignPageMirrorsTheReports) {
  Start({});
  RunCampaign();
  auto res = Get("/api/campaigns/1");
  ASSERT_EQ(res->status, 200) << res->body;
  auto page = nlohmann::json::parse(res->body);
  EXPECT_EQ(page["campaign"]["counts"]["succeeded"], "3");
  EXPECT_EQ(page["campaign"]["counts"]["pending"], "3");  // the expired lease went back
  EXPECT_EQ(page["coverage"]["pairs"].size(), 10u);       // every pair of 5 families
  EXPECT_EQ(page["yield"]["families"].size(), 5u);
  EXPECT_EQ(page["progress"]["finished"], "3");
  EXPECT_DOUBLE_EQ(page["progress"]["points"].back()["bestAccuracy"].get<double>(), 0.8);
  ASSERT_EQ(page["best"].size(), 3u);
  EXPECT_DOUBLE_EQ(page["best"][0]["result"]["testAccuracy"].get<double>(), 0.8);
  const std::string best_id = page["best"][0]["candidateId"];
  auto candidate = Get("/api/candidates/" + best_id);
  ASSERT_EQ(candidate->status, 200);
  EXPECT_EQ(nlohmann::json::parse(candidate->body)["candidate"]["candidateId"], best_id);
  auto list = nlohmann::json::parse(Get("/api/campaigns")->body);
  EXPECT_EQ(list["campaigns"][0]["config"]["name"], "dash");
}

TEST_F(HttpTest, AKeptPageIsAssembledAgainAfterAChange) {
  Start({});
  RunCampaign();
  auto before = nlohmann::json::parse(Get("/api/campaigns/1")->body);
  EXPECT_EQ(before["campaign"]["state"], "CAMPAIGN_STATE_RUNNING");
  ASSERT_TRUE(core_->CancelCampaign(1).ok());
  // The kept page is answered at once and assembled again in the background.
  nlohmann::json after;
  for (int i = 0; i < 200; ++i) {
    after = nlohmann::json::parse(Get("/api/campaigns/1")->body);
    if (after["campaign"]["state"] == "CAMPAIGN_STATE_CANCELLED") break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(after["campaign"]["state"], "CAMPAIGN_STATE_CANCELLED");
  EXPECT_EQ(after["campaign"]["counts"]["pending"], "0");
}

TEST_F(HttpTest, MetricsCountLeasesCandidatesAndWorkers) {
  Start({});
  RunCampaign();
  quartet::v1::RegisterWorkerRequest reg;
  reg.set_host("late");
  auto w = core_->RegisterWorker(reg);
  ASSERT_TRUE(w.ok());
  // Drain the rest; then one more lease is refused.
  for (int i = 0; i < 4; ++i) {
    quartet::v1::LeaseCandidateRequest lr;
    lr.set_worker_id(w->worker_id());
    lr.set_session_secret(w->session_secret());
    ASSERT_TRUE(core_->LeaseCandidate(lr).ok());
  }
  metrics_->ObserveRpc("/quartet.v1.WorkerService/LeaseCandidate", 0, absl::Milliseconds(3));
  metrics_->ObserveTransaction(absl::Milliseconds(2), absl::UnavailableError("down"));
  const std::string text = Get("/metrics")->body;
  EXPECT_THAT(text, HasSubstr("quartet_leases_granted_total{campaign=\"1\"} 7"));
  EXPECT_THAT(text, HasSubstr("quartet_leases_expired_total{campaign=\"1\"} 1"));
  EXPECT_THAT(text, HasSubstr("quartet_lease_requests_refused_total 1"));
  EXPECT_THAT(text, HasSubstr("quartet_candidates{campaign=\"1\",state=\"succeeded\"} 3"));
  EXPECT_THAT(text, HasSubstr("quartet_candidates{campaign=\"1\",state=\"leased\"} 3"));
  EXPECT_THAT(text, HasSubstr("quartet_queue_depth 0"));
  // The first worker's last call was before the 2-minute jump: only the late one is live.
  EXPECT_THAT(text, HasSubstr("quartet_live_workers 1"));
  EXPECT_THAT(text, HasSubstr("quartet_rpc_total{code=\"OK\",method=\"/quartet.v1.WorkerService/"
                              "LeaseCandidate\"} 1"));
  EXPECT_THAT(text, HasSubstr("quartet_pg_errors_total{code=\"UNAVAILABLE\"} 1"));
  EXPECT_THAT(text, HasSubstr("quartet_pg_transaction_duration_seconds_count 1"));
}

}  // namespace
}  // namespace quartet::coordinator
