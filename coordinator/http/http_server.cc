#include "coordinator/http/http_server.h"

#include <httplib.h>

#include <future>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/log_escape.h"
#include "common/metrics_server.h"
#include "coordinator/http/dashboard.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace quartet::coordinator {
namespace {

constexpr char kJson[] = "application/json; charset=utf-8";
constexpr char kTokenCookie[] = "quartet_token";
constexpr char kTokenParam[] = "token";
// Campaigns listed by the API and counted by /metrics.
constexpr int kListedCampaigns = 1000;
// Campaign pages kept (the lowest campaign id goes first).
constexpr size_t kCachedPages = 16;
// Bytes of a bad id repeated in an error message at most.
constexpr size_t kEchoedIdBytes = 32;

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

void SendError(const absl::Status& status, httplib::Response& res) {
  res.status = HttpStatusOf(status.code());
  nlohmann::json body = {{"code", absl::StatusCodeToString(status.code())},
                         {"message", std::string(status.message())}};
  res.set_content(body.dump(), kJson);
}

void SendJson(const absl::StatusOr<std::string>& json, httplib::Response& res) {
  if (!json.ok()) return SendError(json.status(), res);
  res.set_header("Cache-Control", "no-store");
  res.set_content(*json, kJson);
}

// The value of cookie `name` in a Cookie header, or "".
std::string CookieValue(const httplib::Request& req, absl::string_view name) {
  const std::string header = req.get_header_value("Cookie");
  for (absl::string_view part : absl::StrSplit(header, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) {
      return std::string(part);
    }
  }
  return "";
}

// The token a request presents: the Authorization header, else ?token=, else the cookie.
absl::StatusOr<std::string> PresentedToken(const httplib::Request& req) {
  if (req.has_header("Authorization")) {
    const std::string header = req.get_header_value("Authorization");
    absl::string_view value = header;
    if (!absl::ConsumePrefix(&value, "Bearer ")) {
      return absl::UnauthenticatedError("the Authorization header must be 'Bearer <token>'");
    }
    return std::string(value);
  }
  if (req.has_param(kTokenParam)) return req.get_param_value(kTokenParam);
  std::string cookie = CookieValue(req, kTokenCookie);
  if (!cookie.empty()) return cookie;
  return absl::UnauthenticatedError(
      "this needs a viewer token: send 'Authorization: Bearer <token>' or add ?token=<token> to "
      "the URL");
}

// A positive id from a URL path segment; INVALID_ARGUMENT naming `what` otherwise.
absl::StatusOr<int64_t> ParseId(absl::string_view what, absl::string_view text) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " id '", common::EscapeForLog(text, kEchoedIdBytes), "' is not a positive number"));
  }
  return id;
}

void ServeAsset(absl::string_view path, const httplib::Request& req, httplib::Response& res) {
  const Asset* asset = FindAsset(path);
  if (asset == nullptr) {
    res.status = 404;
    res.set_content(absl::StrCat("no such page: ", path, "\n"), "text/plain; charset=utf-8");
    return;
  }
  // A page opened with ?token= keeps the token for its API calls (same origin only).
  if (req.has_param(kTokenParam)) {
    res.set_header("Set-Cookie", absl::StrCat(kTokenCookie, "=", req.get_param_value(kTokenParam),
                                              "; Path=/; HttpOnly; SameSite=Strict"));
  }
  res.set_content(std::string(asset->body), std::string(asset->content_type));
}

}  // namespace

absl::StatusOr<quartet::v1::CampaignPage> AssembleCampaignPage(CoordinatorCore* core,
                                                               int64_t campaign_id) {
  quartet::v1::CampaignPage page;
  auto campaign = core->GetCampaign(campaign_id);
  if (!campaign.ok()) return campaign.status();
  *page.mutable_campaign() = std::move(*campaign);
  // The two reports that read every finished candidate run concurrently (the core is thread-safe).
  auto yield = std::async(std::launch::async, [core, campaign_id] {
    return core->GetYieldReport(campaign_id, /*min_samples=*/0, /*top=*/0);
  });
  quartet::v1::ListResultsRequest finished;
  finished.set_campaign_id(campaign_id);
  finished.add_states(quartet::v1::CANDIDATE_STATE_SUCCEEDED);
  finished.add_states(quartet::v1::CANDIDATE_STATE_FAILED);
  finished.set_by_accuracy(false);
  finished.set_limit(kMaxFinishedCandidates);
  finished.set_without_results(true);
  auto done = core->ListResults(finished);
  auto yield_report = yield.get();
  if (!done.ok()) return done.status();
  if (!yield_report.ok()) return yield_report.status();
  *page.mutable_yield() = std::move(*yield_report);
  auto coverage = core->GetCoverageReport(campaign_id, /*include_all_pairs=*/true);
  if (!coverage.ok()) return coverage.status();
  *page.mutable_coverage() = std::move(*coverage);
  const auto& pool = page.campaign().config().pool();
  *page.mutable_progress() =
      BuildProgressReport(campaign_id, std::vector<std::string>(pool.begin(), pool.end()), *done);
  quartet::v1::ListResultsRequest best;
  best.set_campaign_id(campaign_id);
  best.set_limit(kBestCandidates);
  auto top = core->ListResults(best);
  if (!top.ok()) return top.status();
  for (auto& c : *top) *page.add_best() = std::move(c);
  page.set_generated_unix_ms(absl::ToUnixMillis(absl::Now()));
  return page;
}

HttpServer::HttpServer(CoordinatorCore* core, const Authenticator* auth,
                       CoordinatorMetrics* metrics)
    : core_(core), auth_(auth), metrics_(metrics), server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                              CoordinatorCore* core,
                                                              const Authenticator* auth,
                                                              CoordinatorMetrics* metrics) {
  std::unique_ptr<HttpServer> out(new HttpServer(core, auth, metrics));
  out->Route();
  out->refresher_ = std::thread([s = out.get()] { s->RefreshLoop(); });
  auto port =
      common::StartHttpServer(out->server_.get(), "--http_listen", options.listen, &out->thread_);
  if (!port.ok()) return port.status();
  out->port_ = *port;
  return out;
}

void HttpServer::Stop() {
  {
    absl::MutexLock lock(&cache_mu_);
    stopping_ = true;
  }
  if (refresher_.joinable()) refresher_.join();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

bool HttpServer::Authorized(const httplib::Request& req, httplib::Response& res) const {
  if (!auth_->enabled()) return true;
  auto token = PresentedToken(req);
  absl::Status status = token.ok() ? auth_->CheckToken(*token, Role::kViewer) : token.status();
  if (status.ok()) return true;
  SendError(status, res);
  return false;
}

void HttpServer::Route() {
  httplib::Server& s = *server_;
  s.Get("/", [](const auto& req, auto& res) { ServeAsset("/", req, res); });
  s.Get(R"(/campaigns/[^/]+)",
        [](const auto& req, auto& res) { ServeAsset("/campaigns", req, res); });
  s.Get(R"(/candidates/[^/]+)",
        [](const auto& req, auto& res) { ServeAsset("/candidates", req, res); });
  s.Get(R"(/static/[^/]+)", [](const auto& req, auto& res) { ServeAsset(req.path, req, res); });
  s.Get("/api/campaigns", [this](const auto& req, auto& res) {
    if (Authorized(req, res)) ServeCampaignList(res);
  });
  s.Get(R"(/api/campaigns/([^/]+))", [this](const auto& req, auto& res) {
    if (!Authorized(req, res)) return;
    auto id = ParseId("campaign", req.matches[1].str());
    if (!id.ok()) return SendError(id.status(), res);
    ServeCampaignPage(*id, res);
  });
  s.Get(R"(/api/candidates/([^/]+))", [this](const auto& req, auto& res) {
    if (!Authorized(req, res)) return;
    auto id = ParseId("candidate", req.matches[1].str());
    if (!id.ok()) return SendError(id.status(), res);
    ServeCandidate(*id, res);
  });
  s.Get("/metrics", [this](const auto& req, auto& res) {
    if (Authorized(req, res)) ServeMetrics(res);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (absl::StartsWith(req.path, "/api/")) {
      return SendError(absl::NotFoundError(absl::StrCat("no such API path: ", req.path)), res);
    }
    res.set_content(absl::StrCat("no such page: ", req.path, "\n"), "text/plain; charset=utf-8");
  });
}

void HttpServer::ServeCampaignList(httplib::Response& res) {
  auto all = core_->ListCampaigns({}, kListedCampaigns);
  if (!all.ok()) return SendError(all.status(), res);
  quartet::v1::ListCampaignsResponse out;
  for (auto& c : *all) *out.add_campaigns() = std::move(c);
  SendJson(ToJson(out), res);
}

absl::StatusOr<std::string> HttpServer::PageJson(int64_t campaign_id) {
  auto page = AssembleCampaignPage(core_, campaign_id);
  if (!page.ok()) return page.status();
  return ToJson(*page);
}

void HttpServer::ServeCampaignPage(int64_t campaign_id, httplib::Response& res) {
  // Read before assembling: a change made meanwhile leaves the kept page marked as older.
  const uint64_t version = core_->change_version();
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = page_cache_.find(campaign_id);
    if (it != page_cache_.end()) {
      CachedPage& kept = it->second;
      if (kept.version != version && !kept.refreshing) {
        kept.refreshing = true;
        refresh_queue_.push_back(campaign_id);
      }
      return SendJson(kept.json, res);
    }
  }
  auto json = PageJson(campaign_id);
  if (json.ok()) {
    absl::MutexLock lock(&cache_mu_);
    if (page_cache_.size() >= kCachedPages) page_cache_.erase(page_cache_.begin());
    CachedPage& kept = page_cache_[campaign_id];
    kept.version = version;
    kept.json = *json;
  }
  SendJson(json, res);
}

void HttpServer::RefreshLoop() {
  while (true) {
    int64_t campaign_id = 0;
    {
      absl::MutexLock lock(&cache_mu_);
      cache_mu_.Await(absl::Condition(
          +[](HttpServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->cache_mu_) {
            return s->stopping_ || !s->refresh_queue_.empty();
          },
          this));
      if (stopping_) return;
      campaign_id = refresh_queue_.front();
      refresh_queue_.pop_front();
    }
    const uint64_t version = core_->change_version();
    auto json = PageJson(campaign_id);
    if (!json.ok()) {
      spdlog::warn("dashboard: campaign {} page: {}", campaign_id, json.status().ToString());
    }
    absl::MutexLock lock(&cache_mu_);
    CachedPage& kept = page_cache_[campaign_id];
    kept.refreshing = false;
    if (json.ok()) {
      kept.version = version;
      kept.json = std::move(*json);
    }
  }
}

void HttpServer::ServeCandidate(int64_t candidate_id, httplib::Response& res) {
  auto candidate = core_->GetCandidate(candidate_id);
  if (!candidate.ok()) return SendError(candidate.status(), res);
  quartet::v1::GetCandidateResponse out;
  *out.mutable_candidate() = std::move(*candidate);
  SendJson(ToJson(out), res);
}

void HttpServer::ServeMetrics(httplib::Response& res) {
  if (metrics_ == nullptr) return SendError(absl::NotFoundError("metrics are off"), res);
  auto all = core_->ListCampaigns({}, kListedCampaigns);
  if (all.ok()) {
    metrics_->RecordCampaigns(*all);
  } else {
    spdlog::warn("/metrics: cannot read the campaigns: {}", all.status().ToString());
  }
  res.set_content(metrics_->Serialize(), common::kPrometheusContentType);
}

}  // namespace quartet::coordinator
