// `quartetctl results show` and `quartetctl report analyses`: one candidate's result with its
// post-training analyses, and the analyses of a campaign compared by architecture (head or router),
// mean ± std over the candidates (repeats, seeds) that share it. Computed client-side from
// ListResults. Pure text functions plus two command runners that take the RPC as a function.
#ifndef QUARTET_CLI_REPORT_ANALYSES_H_
#define QUARTET_CLI_REPORT_ANALYSES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "quartet/v1/campaign.pb.h"

namespace quartet::cli {

// One candidate: identity, state, accuracy, architecture, per-epoch lines, the class x expert
// matrix and every analysis present.
std::string CandidateDetailsText(const quartet::v1::CandidateSummary& c);

// One row per Result.architecture ("HEADS ResNet + SOFT_MOE", "MOE4 dense"): candidates, test
// accuracy, train and test top eigenvalue and trace, latency and throughput, parameters, each
// "mean ± std" over the succeeded candidates that have it ("-" where none has).
std::string AnalysesReportText(const std::vector<quartet::v1::CandidateSummary>& results);

// Gradient noise of layer-wise MoE campaigns (DYNAMOE): one row per router (and balance loss,
// where the campaign has that axis), mean ± std over succeeded candidates of the last epoch's
// relative minibatch gradient variance and per-step gradient-norm CV (groups "all" and "router"),
// mean active experts per token and active parameters. Empty when no result carries gradient
// statistics.
std::string GradientNoiseText(const std::vector<quartet::v1::CandidateSummary>& results);

using ListResultsFn = std::function<grpc::Status(const quartet::v1::ListResultsRequest&,
                                                 quartet::v1::ListResultsResponse*)>;

using GetCandidateFn = std::function<grpc::Status(int64_t, quartet::v1::CandidateSummary*)>;

// The commands; print to stdout (JSON when `json`), errors to stderr; return the exit code (0 ok,
// 1 error, including an unknown candidate).
int RunResultsShow(const GetCandidateFn& get, int64_t candidate_id, bool json);
int RunReportAnalyses(const ListResultsFn& list, int64_t campaign_id, bool json);
// GradientNoiseText of the campaign's results (empty when none carries gradient statistics), for
// `report yield`.
grpc::Status GradientNoiseReport(const ListResultsFn& list, int64_t campaign_id, std::string* out);

}  // namespace quartet::cli

#endif  // QUARTET_CLI_REPORT_ANALYSES_H_
