// Text rendering of campaigns, coverage, yield and results for quartetctl. Pure functions.
#ifndef QUARTET_CLI_FORMAT_H_
#define QUARTET_CLI_FORMAT_H_

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "quartet/v1/campaign.pb.h"

namespace quartet::cli {

// Columns padded to their widest cell; the first row is the header, underlined.
std::string Table(const std::vector<std::vector<std::string>>& rows);

// Human duration: "42s", "3m05s", "2h10m".
std::string Duration(double seconds);

// "RUNNING", "DONE", ... without the proto prefix.
std::string StateName(quartet::v1::CampaignState state);
std::string StateName(quartet::v1::CandidateState state);
std::string SamplerName(quartet::v1::SamplerKind kind);

// "AirNet+ResNet+..."
std::string Combination(const quartet::v1::FamilyCombination& c);

// One campaign, several lines.
std::string CampaignDetails(const quartet::v1::Campaign& c);
// A multi-fidelity campaign's rungs (completed, promoted, stopped early, open, best and mean
// accuracy, families) and what the coverage guard did; empty without rungs.
std::string RungTable(const quartet::v1::CoverageReport& report);
// One line per campaign.
std::string CampaignList(const std::vector<quartet::v1::Campaign>& campaigns);
// One progress line: bar, done/total, running, failed, best accuracy, ETA. `width` is the bar's.
// `eta_seconds` >= 0 replaces the coordinator's ETA (0: none shown); a paused campaign shows none.
std::string ProgressLine(const quartet::v1::Campaign& c, int width = 30, double eta_seconds = -1);

// The completion rate a watcher observes: ETA from the candidates that finished within the last
// `window` of observations, not from the campaign's whole history. Not thread-safe.
class ProgressMeter {
 public:
  explicit ProgressMeter(absl::Duration window = absl::Minutes(10)) : window_(window) {}
  // Records `done` (final candidates) at `now`; times must not go backwards.
  void Observe(absl::Time now, int64_t done);
  // Seconds until `remaining` more candidates finish at the observed rate; -1 while unknown (no
  // candidate finished within the window).
  double EtaSeconds(int64_t remaining) const;

 private:
  absl::Duration window_;
  std::deque<std::pair<absl::Time, int64_t>> samples_;
};

// The fleet, one line per worker: id, host, device, GPU, last contact (relative to `now_ms`),
// current candidate and its epoch progress, succeeded and failed counts, and DRAINING.
std::string WorkersText(const std::vector<quartet::v1::WorkerInfo>& workers, int64_t now_ms);

std::string CoverageText(const quartet::v1::CoverageReport& r, bool show_pairs);
std::string YieldText(const quartet::v1::YieldReport& r);
std::string ResultsText(const std::vector<quartet::v1::CandidateSummary>& results);

}  // namespace quartet::cli

#endif  // QUARTET_CLI_FORMAT_H_
