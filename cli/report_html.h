// `quartetctl report html CAMPAIGN -o FILE`: the dashboard's campaign page as one self-contained
// HTML file (embedded CSS and JS, the data inlined), for a paper's supplement or an archive. The
// page is assembled from the same CampaignService reports the coordinator's dashboard reads.
#ifndef QUARTET_CLI_REPORT_HTML_H_
#define QUARTET_CLI_REPORT_HTML_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "quartet/v1/campaign.grpc.pb.h"
#include "quartet/v1/dashboard.pb.h"

namespace quartet::cli {

// Sets deadline and credentials on a call's context.
using PrepareFn = std::function<void(grpc::ClientContext*)>;

// GetCampaign, GetCoverageReport (every pair), GetYieldReport, ListResults (finished candidates
// for the progress report, and the best ones). The first failing call's status.
absl::StatusOr<quartet::v1::CampaignPage> FetchCampaignPage(
    quartet::v1::CampaignService::StubInterface* stub, const PrepareFn& prepare,
    int64_t campaign_id);

// Fetches the page and writes it to `path` ("-": stdout) through a temporary file and a rename.
// Returns the bytes written. The RPC's status, or UNAVAILABLE when the file cannot be written.
absl::StatusOr<size_t> WriteCampaignReport(quartet::v1::CampaignService::StubInterface* stub,
                                           const PrepareFn& prepare, int64_t campaign_id,
                                           const std::string& path);

}  // namespace quartet::cli

#endif  // QUARTET_CLI_REPORT_HTML_H_
