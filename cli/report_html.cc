#include "cli/report_html.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "coordinator/http/dashboard.h"

namespace quartet::cli {
namespace {

using common::FromGrpcStatus;

// Runs one unary call with a prepared context; its status as an absl::Status.
template <typename Call>
absl::Status Invoke(const PrepareFn& prepare, Call&& call) {
  grpc::ClientContext ctx;
  prepare(&ctx);
  return FromGrpcStatus(call(&ctx));
}

}  // namespace

absl::StatusOr<quartet::v1::CampaignPage> FetchCampaignPage(
    quartet::v1::CampaignService::StubInterface* stub, const PrepareFn& prepare,
    int64_t campaign_id) {
  quartet::v1::CampaignPage page;
  quartet::v1::GetCampaignRequest get;
  get.set_campaign_id(campaign_id);
  quartet::v1::GetCampaignResponse campaign;
  QUARTET_RETURN_IF_ERROR(Invoke(
      prepare, [&](grpc::ClientContext* c) { return stub->GetCampaign(c, get, &campaign); }));
  *page.mutable_campaign() = campaign.campaign();
  quartet::v1::GetCoverageReportRequest cov;
  cov.set_campaign_id(campaign_id);
  cov.set_include_all_pairs(true);
  quartet::v1::GetCoverageReportResponse coverage;
  QUARTET_RETURN_IF_ERROR(Invoke(
      prepare, [&](grpc::ClientContext* c) { return stub->GetCoverageReport(c, cov, &coverage); }));
  *page.mutable_coverage() = coverage.report();
  quartet::v1::GetYieldReportRequest yl;
  yl.set_campaign_id(campaign_id);
  quartet::v1::GetYieldReportResponse yield;
  QUARTET_RETURN_IF_ERROR(
      Invoke(prepare, [&](grpc::ClientContext* c) { return stub->GetYieldReport(c, yl, &yield); }));
  *page.mutable_yield() = yield.report();
  quartet::v1::ListResultsRequest fin;
  fin.set_campaign_id(campaign_id);
  fin.add_states(quartet::v1::CANDIDATE_STATE_SUCCEEDED);
  fin.add_states(quartet::v1::CANDIDATE_STATE_FAILED);
  fin.set_by_accuracy(false);
  fin.set_limit(coordinator::kMaxFinishedCandidates);
  quartet::v1::ListResultsResponse finished;
  QUARTET_RETURN_IF_ERROR(Invoke(
      prepare, [&](grpc::ClientContext* c) { return stub->ListResults(c, fin, &finished); }));
  const auto& pool = page.campaign().config().pool();
  *page.mutable_progress() = coordinator::BuildProgressReport(
      campaign_id, std::vector<std::string>(pool.begin(), pool.end()),
      {finished.candidates().begin(), finished.candidates().end()});
  quartet::v1::ListResultsRequest top;
  top.set_campaign_id(campaign_id);
  top.set_limit(coordinator::kBestCandidates);
  quartet::v1::ListResultsResponse best;
  QUARTET_RETURN_IF_ERROR(
      Invoke(prepare, [&](grpc::ClientContext* c) { return stub->ListResults(c, top, &best); }));
  *page.mutable_best() = best.candidates();
  page.set_generated_unix_ms(absl::ToUnixMillis(absl::Now()));
  return page;
}

absl::StatusOr<size_t> WriteCampaignReport(quartet::v1::CampaignService::StubInterface* stub,
                                           const PrepareFn& prepare, int64_t campaign_id,
                                           const std::string& path) {
  auto page = FetchCampaignPage(stub, prepare, campaign_id);
  if (!page.ok()) return page.status();
  auto json = coordinator::ToJson(*page);
  if (!json.ok()) return json.status();
  const std::string html = coordinator::RenderReportHtml(*json);
  if (path == "-") {
    std::cout << html;
    return html.size();
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << html;
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write ", path));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return html.size();
}

}  // namespace quartet::cli
