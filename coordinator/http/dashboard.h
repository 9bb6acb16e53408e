// The dashboard's data and pages, shared by the coordinator's HTTP server and `quartetctl report
// html`: the progress report computed from a campaign's finished candidates, JSON through
// protobuf's printer, the static pages (coordinator/http/static, embedded at build time), and the
// self-contained HTML report. Protobuf and Abseil only: no gRPC, no I/O. Thread-safe.
#ifndef QUARTET_COORDINATOR_HTTP_DASHBOARD_H_
#define QUARTET_COORDINATOR_HTTP_DASHBOARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "quartet/v1/campaign.pb.h"
#include "quartet/v1/dashboard.pb.h"

namespace quartet::coordinator {

// Points of the progress curve at most; more finished candidates are thinned evenly.
inline constexpr int kMaxProgressPoints = 400;
// Accuracy bins of the per-family histograms.
inline constexpr int kAccuracyBins = 20;
// Best candidates on the campaign page.
inline constexpr int kBestCandidates = 10;
// Candidates read for the progress report at most (ListResults' own bound).
inline constexpr int kMaxFinishedCandidates = 100000;

// The progress curve and the per-family accuracy histograms of a campaign from its finished
// candidates (any order; other states are skipped). `pool` gives the families and their order.
quartet::v1::ProgressReport BuildProgressReport(
    int64_t campaign_id, const std::vector<std::string>& pool,
    const std::vector<quartet::v1::CandidateSummary>& finished);

// `message` as JSON (lowerCamelCase field names, enum names, zero values printed, int64 as
// strings). INTERNAL when printing fails.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// A static page or asset by its URL path ("/", "/campaigns", "/static/dashboard.js", ...).
struct Asset {
  absl::string_view content_type;
  absl::string_view body;
};
// nullptr when there is no such asset.
const Asset* FindAsset(absl::string_view path);

// The campaign page as one self-contained HTML file: the embedded CSS and JS inlined and
// `page_json` (a CampaignPage as ToJson writes it) as its data, so it renders without a server or
// a network.
std::string RenderReportHtml(absl::string_view page_json);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_HTTP_DASHBOARD_H_
