// Text rendering of campaigns, coverage, yield and results for quartetctl. Pure functions.
#ifndef QUARTET_CLI_FORMAT_H_
#define QUARTET_CLI_FORMAT_H_

#include <string>
#include <vector>

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
// One line per campaign.
std::string CampaignList(const std::vector<quartet::v1::Campaign>& campaigns);
// One progress line: bar, done/total, running, failed, best accuracy, ETA. `width` is the bar's.
std::string ProgressLine(const quartet::v1::Campaign& c, int width = 30);

std::string CoverageText(const quartet::v1::CoverageReport& r, bool show_pairs);
std::string YieldText(const quartet::v1::YieldReport& r);
std::string ResultsText(const std::vector<quartet::v1::CandidateSummary>& results);

}  // namespace quartet::cli

#endif  // QUARTET_CLI_FORMAT_H_
