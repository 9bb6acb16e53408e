#include "coordinator/service/services.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/input_bounds.h"

namespace quartet::coordinator {
namespace {

using common::ToGrpcStatus;

// Returns from the handler unless the call's credential grants `role`.
#define QUARTET_REQUIRE_ROLE(context, role)                    \
  do {                                                         \
    grpc::Status auth_status = auth_->Require(*context, role); \
    if (!auth_status.ok()) return auth_status;                 \
  } while (0)

// Returns from the handler with INVALID_ARGUMENT unless `expr` (an absl::Status) is OK.
#define QUARTET_REQUIRE_VALID(expr)                            \
  do {                                                         \
    absl::Status valid_status = (expr);                        \
    if (!valid_status.ok()) return ToGrpcStatus(valid_status); \
  } while (0)

// WatchCampaign: default and smallest update interval, the keepalive (an unchanged snapshot is
// still sent this often, so a client can tell a stalled campaign from a dead connection), and the
// slice in which waits notice a cancelled client.
constexpr int kDefaultWatchIntervalMs = 1000;
constexpr int kMinWatchIntervalMs = 50;
constexpr absl::Duration kWatchKeepalive = absl::Seconds(10);
constexpr absl::Duration kWatchSlice = absl::Milliseconds(250);

// ExportModel: bytes per streamed chunk (well under gRPC's 4 MiB message limit).
constexpr size_t kExportChunkBytes = 1 << 20;

// One of the bounded WatchCampaign slots, held for the life of a stream.
class WatchSlot {
 public:
  WatchSlot(std::atomic<int>* active, int max) : active_(active) {
    held_ = active_->fetch_add(1) < max;
  }
  ~WatchSlot() { active_->fetch_sub(1); }
  bool held() const { return held_; }

 private:
  std::atomic<int>* const active_;
  bool held_ = false;
};

// Copies a StatusOr's value into `out` or returns its status.
template <typename T, typename F>
grpc::Status Respond(absl::StatusOr<T> result, F&& fill) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  fill(std::move(*result));
  return grpc::Status::OK;
}

}  // namespace

// ---- CampaignService ---------------------------------------------------------------------------

grpc::Status CampaignServiceImpl::SubmitCampaign(grpc::ServerContext* context,
                                                 const quartet::v1::SubmitCampaignRequest* request,
                                                 quartet::v1::SubmitCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  return Respond(core_->SubmitCampaign(request->config()),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::GetCampaign(grpc::ServerContext* context,
                                              const quartet::v1::GetCampaignRequest* request,
                                              quartet::v1::GetCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(core_->GetCampaign(request->campaign_id()),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::ListCampaigns(grpc::ServerContext* context,
                                                const quartet::v1::ListCampaignsRequest* request,
                                                quartet::v1::ListCampaignsResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  std::vector<quartet::v1::CampaignState> states;
  for (int s : request->states()) states.push_back(static_cast<quartet::v1::CampaignState>(s));
  return Respond(core_->ListCampaigns(states, request->limit()),
                 [&](std::vector<quartet::v1::Campaign> all) {
                   for (auto& c : all) *response->add_campaigns() = std::move(c);
                 });
}

grpc::Status CampaignServiceImpl::CancelCampaign(grpc::ServerContext* context,
                                                 const quartet::v1::CancelCampaignRequest* request,
                                                 quartet::v1::CancelCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  return Respond(core_->CancelCampaign(request->campaign_id()),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::WatchCampaign(
    grpc::ServerContext* context, const quartet::v1::WatchCampaignRequest* request,
    grpc::ServerWriter<quartet::v1::WatchCampaignResponse>* writer) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  if (request->interval_ms() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "interval_ms: must be >= 0");
  }
  WatchSlot slot(&active_watches_, max_watch_streams_);
  if (!slot.held()) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("too many concurrent WatchCampaign streams (", max_watch_streams_,
                     "); retry later, or raise the coordinator's "
                     "--max_watch_streams"));
  }
  const absl::Duration interval = absl::Milliseconds(
      request->interval_ms() == 0 ? kDefaultWatchIntervalMs
                                  : std::max(request->interval_ms(), kMinWatchIntervalMs));
  int64_t last_updated = -1;
  absl::Time last_sent = absl::InfinitePast();
  auto stopped = [&] { return context->IsCancelled() || shutting_down_; };
  while (!stopped()) {
    // Noted before reading, so a change made while this snapshot is sent is not missed.
    uint64_t seen = core_->change_version();
    auto campaign = core_->GetCampaign(request->campaign_id());
    if (!campaign.ok()) return ToGrpcStatus(campaign.status());
    const bool final = campaign->state() == quartet::v1::CAMPAIGN_STATE_CANCELLED ||
                       campaign->state() == quartet::v1::CAMPAIGN_STATE_DONE;
    const absl::Time now = absl::Now();
    if (campaign->updated_unix_ms() != last_updated || now - last_sent >= kWatchKeepalive ||
        final) {
      quartet::v1::WatchCampaignResponse update;
      last_updated = campaign->updated_unix_ms();
      *update.mutable_campaign() = std::move(*campaign);
      if (!writer->Write(update)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      last_sent = now;
    }
    if (final) return grpc::Status::OK;
    // At most one snapshot per interval; then nothing is read until the core changes something
    // or the keepalive is due. Waits are sliced so a cancelled client is noticed.
    const absl::Time earliest = now + interval;
    while (!stopped() && absl::Now() < earliest) {
      absl::SleepFor(std::min(kWatchSlice, earliest - absl::Now()));
    }
    const absl::Time keepalive_due = last_sent + kWatchKeepalive;
    while (!stopped() && absl::Now() < keepalive_due) {
      const uint64_t v =
          core_->WaitForChange(seen, std::min(kWatchSlice, keepalive_due - absl::Now()));
      if (v != seen) break;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "coordinator shutting down or watch cancelled");
}

grpc::Status CampaignServiceImpl::GetCoverageReport(
    grpc::ServerContext* context, const quartet::v1::GetCoverageReportRequest* request,
    quartet::v1::GetCoverageReportResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(
      core_->GetCoverageReport(request->campaign_id(), request->include_all_pairs()),
      [&](quartet::v1::CoverageReport r) { *response->mutable_report() = std::move(r); });
}

grpc::Status CampaignServiceImpl::GetYieldReport(grpc::ServerContext* context,
                                                 const quartet::v1::GetYieldReportRequest* request,
                                                 quartet::v1::GetYieldReportResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(
      core_->GetYieldReport(request->campaign_id(), request->min_samples(), request->top()),
      [&](quartet::v1::YieldReport r) { *response->mutable_report() = std::move(r); });
}

grpc::Status CampaignServiceImpl::ListResults(grpc::ServerContext* context,
                                              const quartet::v1::ListResultsRequest* request,
                                              quartet::v1::ListResultsResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(core_->ListResults(*request), [&](std::vector<quartet::v1::CandidateSummary> all) {
    for (auto& c : all) *response->add_candidates() = std::move(c);
  });
}

grpc::Status CampaignServiceImpl::ExportModel(
    grpc::ServerContext* context, const quartet::v1::ExportModelRequest* request,
    grpc::ServerWriter<quartet::v1::ArtifactChunk>* writer) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  auto model = core_->ExportedModel(request->candidate_id());
  if (!model.ok()) return ToGrpcStatus(model.status());
  const std::string& bytes = model->second;
  size_t at = 0;
  do {
    quartet::v1::ArtifactChunk chunk;
    if (at == 0) *chunk.mutable_artifact() = model->first;
    const size_t n = std::min(kExportChunkBytes, bytes.size() - at);
    chunk.set_data(bytes.substr(at, n));
    at += n;
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  } while (at < bytes.size());
  return grpc::Status::OK;
}

grpc::Status CampaignServiceImpl::GetCandidate(grpc::ServerContext* context,
                                               const quartet::v1::GetCandidateRequest* request,
                                               quartet::v1::GetCandidateResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(
      core_->GetCandidate(request->candidate_id()),
      [&](quartet::v1::CandidateSummary c) { *response->mutable_candidate() = std::move(c); });
}

grpc::Status CampaignServiceImpl::PauseCampaign(grpc::ServerContext* context,
                                                const quartet::v1::PauseCampaignRequest* request,
                                                quartet::v1::PauseCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  return Respond(core_->PauseCampaign(request->campaign_id()),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::ResumeCampaign(grpc::ServerContext* context,
                                                 const quartet::v1::ResumeCampaignRequest* request,
                                                 quartet::v1::ResumeCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  return Respond(core_->ResumeCampaign(request->campaign_id()),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::UpdateCampaign(grpc::ServerContext* context,
                                                 const quartet::v1::UpdateCampaignRequest* request,
                                                 quartet::v1::UpdateCampaignResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  return Respond(core_->UpdateCampaign(*request),
                 [&](quartet::v1::Campaign c) { *response->mutable_campaign() = std::move(c); });
}

grpc::Status CampaignServiceImpl::ListWorkers(grpc::ServerContext* context,
                                              const quartet::v1::ListWorkersRequest* /*request*/,
                                              quartet::v1::ListWorkersResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kViewer);
  return Respond(core_->ListWorkers(), [&](std::vector<quartet::v1::WorkerInfo> all) {
    for (auto& w : all) *response->add_workers() = std::move(w);
  });
}

grpc::Status CampaignServiceImpl::DrainWorker(grpc::ServerContext* context,
                                              const quartet::v1::DrainWorkerRequest* request,
                                              quartet::v1::DrainWorkerResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kAdmin);
  QUARTET_REQUIRE_VALID(common::ValidateName("worker_id", request->worker_id(), true));
  return Respond(core_->DrainWorker(request->worker_id(), !request->undo()),
                 [&](quartet::v1::WorkerInfo w) { *response->mutable_worker() = std::move(w); });
}

// ---- WorkerService -----------------------------------------------------------------------------

grpc::Status WorkerServiceImpl::RegisterWorker(grpc::ServerContext* context,
                                               const quartet::v1::RegisterWorkerRequest* request,
                                               quartet::v1::RegisterWorkerResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  QUARTET_REQUIRE_VALID(common::ValidateRegisterWorker(*request));
  return Respond(core_->RegisterWorker(*request),
                 [&](quartet::v1::RegisterWorkerResponse r) { *response = std::move(r); });
}

grpc::Status WorkerServiceImpl::LeaseCandidate(grpc::ServerContext* context,
                                               const quartet::v1::LeaseCandidateRequest* request,
                                               quartet::v1::LeaseCandidateResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  QUARTET_REQUIRE_VALID(common::ValidateName("worker_id", request->worker_id(), false));
  return Respond(core_->LeaseCandidate(*request),
                 [&](quartet::v1::LeaseCandidateResponse r) { *response = std::move(r); });
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const quartet::v1::HeartbeatRequest* request,
                                          quartet::v1::HeartbeatResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  QUARTET_REQUIRE_VALID(common::ValidateName("worker_id", request->worker_id(), false));
  return Respond(core_->Heartbeat(*request),
                 [&](quartet::v1::HeartbeatResponse r) { *response = std::move(r); });
}

grpc::Status WorkerServiceImpl::StreamMetrics(grpc::ServerContext* context,
                                              grpc::ServerReader<quartet::v1::MetricBatch>* reader,
                                              quartet::v1::StreamMetricsResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  quartet::v1::MetricBatch batch;
  int64_t accepted = 0;
  while (reader->Read(&batch)) {
    QUARTET_REQUIRE_VALID(common::ValidateMetricBatch(batch, absl::Now()));
    auto added = core_->AppendMetrics(batch);
    if (!added.ok()) return ToGrpcStatus(added.status());
    accepted += *added;
  }
  response->set_accepted(accepted);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteCandidate(
    grpc::ServerContext* context, const quartet::v1::CompleteCandidateRequest* request,
    quartet::v1::CompleteCandidateResponse* /*response*/) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  QUARTET_REQUIRE_VALID(common::ValidateName("worker_id", request->worker_id(), false));
  QUARTET_REQUIRE_VALID(common::ValidateResult(request->result()));
  QUARTET_REQUIRE_VALID(
      common::ValidateMetricPoints("final_metrics", request->final_metrics(), absl::Now()));
  return ToGrpcStatus(core_->CompleteCandidate(*request));
}

grpc::Status WorkerServiceImpl::FailCandidate(grpc::ServerContext* context,
                                              const quartet::v1::FailCandidateRequest* request,
                                              quartet::v1::FailCandidateResponse* response) {
  QUARTET_REQUIRE_ROLE(context, Role::kWorker);
  QUARTET_REQUIRE_VALID(common::ValidateFailCandidate(*request));
  quartet::v1::FailCandidateRequest bounded = *request;
  bounded.set_message(common::SanitizeFailMessage(std::move(*bounded.mutable_message())));
  return Respond(core_->FailCandidate(bounded),
                 [&](quartet::v1::FailCandidateResponse r) { *response = std::move(r); });
}

}  // namespace quartet::coordinator
