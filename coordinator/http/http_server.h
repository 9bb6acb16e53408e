// The coordinator's HTTP server (--http_listen, cpp-httplib): the live dashboard, its JSON API and
// the Prometheus metrics.
//
//   GET /                      campaign list page        GET /api/campaigns        ListCampaigns
//   GET /campaigns/ID          campaign page             GET /api/campaigns/ID     CampaignPage
//   GET /candidates/ID         candidate page            GET /api/candidates/ID    GetCandidate
//   GET /static/NAME           the pages' CSS and JS     GET /metrics              Prometheus text
//
// The pages are static (embedded in the binary, no network fetch) and read the JSON API, which is
// the CampaignService reports through protobuf's JSON printer. Auth: when the coordinator has
// credentials, /api/* and /metrics need a viewer or admin token, as `Authorization: Bearer TOKEN`,
// a `token` query parameter, or the `quartet_token` cookie (set by a page requested with ?token=);
// the pages themselves carry no data and are served to anyone. Campaign pages: the first request
// for a campaign assembles its page; later ones get the kept page at once and, when the core has
// changed something since, queue it to be assembled again in the background (one refresher
// thread). A polling viewer thus sees data at most one assembly old, and viewers of a quiet or
// finished campaign cost nothing. An API error is JSON
// {"code": "NOT_FOUND", "message": "..."} with the matching HTTP status (400, 401, 403, 404, 503,
// 500). A handler makes core calls and converts; no business logic here.
//
// Thread safety: Start/Stop from one thread; requests are served on httplib's thread pool.
#ifndef QUARTET_COORDINATOR_HTTP_HTTP_SERVER_H_
#define QUARTET_COORDINATOR_HTTP_HTTP_SERVER_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/http/coordinator_metrics.h"
#include "coordinator/service/auth.h"
#include "quartet/v1/dashboard.pb.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace quartet::coordinator {

class HttpServer {
 public:
  struct Options {
    // "HOST:PORT"; port 0 picks a free one.
    std::string listen = "127.0.0.1:0";
  };

  // Binds and starts serving. No pointer is owned; all must outlive the server. `metrics` may be
  // nullptr (then /metrics is 404). INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options,
                                                           CoordinatorCore* core,
                                                           const Authenticator* auth,
                                                           CoordinatorMetrics* metrics);
  ~HttpServer();  // Stop()s

  int port() const { return port_; }
  // Stops serving and joins the server thread. Idempotent.
  void Stop();

 private:
  HttpServer(CoordinatorCore* core, const Authenticator* auth, CoordinatorMetrics* metrics);
  void Route();
  // OK, or fills `res` with the error and returns false.
  bool Authorized(const httplib::Request& req, httplib::Response& res) const;
  void ServeCampaignList(httplib::Response& res);
  void ServeCampaignPage(int64_t campaign_id, httplib::Response& res);
  void ServeCandidate(int64_t candidate_id, httplib::Response& res);
  void ServeMetrics(httplib::Response& res);

  // A campaign page's JSON and the core's change_version() it was assembled at.
  struct CachedPage {
    uint64_t version = 0;
    std::string json;
    // Queued for the refresher, or being assembled by it.
    bool refreshing = false;
  };
  // Assembles a page and its JSON.
  absl::StatusOr<std::string> PageJson(int64_t campaign_id);
  // The refresher thread: assembles queued pages again, one at a time, until Stop().
  void RefreshLoop();

  CoordinatorCore* const core_;
  const Authenticator* const auth_;
  CoordinatorMetrics* const metrics_;
  absl::Mutex cache_mu_;
  std::map<int64_t, CachedPage> page_cache_ ABSL_GUARDED_BY(cache_mu_);
  std::deque<int64_t> refresh_queue_ ABSL_GUARDED_BY(cache_mu_);
  bool stopping_ ABSL_GUARDED_BY(cache_mu_) = false;
  std::thread refresher_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Everything the campaign page shows, from the core's reports: the campaign, its coverage with
// every pair, its yield, its progress and its best candidates. The core's errors (NOT_FOUND for an
// unknown campaign, ...).
absl::StatusOr<quartet::v1::CampaignPage> AssembleCampaignPage(CoordinatorCore* core,
                                                               int64_t campaign_id);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_HTTP_HTTP_SERVER_H_
