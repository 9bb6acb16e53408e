// Machine-readable exports for quartetctl: RFC 4180 CSV and JSON of a campaign's candidates, and
// CSV of its coverage and yield reports. Pure functions.
#ifndef QUARTET_CLI_EXPORT_H_
#define QUARTET_CLI_EXPORT_H_

#include <string>
#include <vector>

#include "quartet/v1/campaign.pb.h"

namespace quartet::cli {

// One CSV record (RFC 4180): fields joined by commas, a field quoted when it holds a comma, a
// double quote, CR or LF (quotes doubled inside), ended by CRLF.
std::string CsvRecord(const std::vector<std::string>& fields);

// ISO 8601 UTC with milliseconds ("2026-12-02T10:12:00.123Z"); empty for 0.
std::string IsoTime(int64_t unix_ms);

// The results export, one record per candidate after a header: candidate_id, campaign_id,
// families ("+"-joined), rank, repeat, one column per parameter axis (its path; the value applied),
// state, test_accuracy and test_loss (empty unless SUCCEEDED), wall_seconds, created_at,
// started_at, finished_at, error_class, error_message, attempts, worker_id. `axes` are the
// campaign's axis paths in config order.
std::string ResultsCsv(const std::vector<std::string>& axes,
                       const std::vector<quartet::v1::CandidateSummary>& candidates);
// The same candidates as a JSON array of CandidateSummary objects (proto3 JSON).
std::string ResultsJson(const std::vector<quartet::v1::CandidateSummary>& candidates);

// The coverage report as one table: a record per family, pair (all pairs the report holds) and
// axis level, with kind, family_a, family_b, axis, level, total, the counts by state and
// share_vs_uniform (families only).
std::string CoverageCsv(const quartet::v1::CoverageReport& report);
// The yield report as one table: a record per family, pair, axis level and (family, level) cell,
// with kind, family_a, family_b, axis, level, succeeded, failed, success_rate, mean, median and
// max accuracy, and failures_by_class ("CLASS:n;..." sorted by class).
std::string YieldCsv(const quartet::v1::YieldReport& report);

}  // namespace quartet::cli

#endif  // QUARTET_CLI_EXPORT_H_
