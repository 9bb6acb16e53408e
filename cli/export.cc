#include "cli/export.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/spec_io.h"

namespace quartet::cli {
namespace {

// Numbers in exports: enough digits to round-trip a double.
std::string Num(double x) { return absl::StrFormat("%.17g", x); }

std::string Short(const std::string& name, const std::string& prefix) {
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

std::string StateOf(quartet::v1::CandidateState s) {
  return Short(quartet::v1::CandidateState_Name(s), "CANDIDATE_STATE_");
}

// kind, family_a, family_b, axis, level: the key columns shared by the coverage and yield tables.
std::vector<std::string> Key(const std::string& kind, const std::string& a, const std::string& b,
                             const std::string& axis, const std::string& level) {
  return {kind, a, b, axis, level};
}

std::vector<std::string> Counts(const quartet::v1::StateCounts& c) {
  return {absl::StrCat(c.pending()), absl::StrCat(c.leased()),    absl::StrCat(c.succeeded()),
          absl::StrCat(c.failed()),  absl::StrCat(c.cancelled()), absl::StrCat(c.stopped_early())};
}

std::vector<std::string> Join(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> YieldFields(const quartet::v1::YieldEntry& e) {
  std::map<std::string, int64_t> sorted(e.failures_by_class().begin(), e.failures_by_class().end());
  std::vector<std::string> failures;
  for (const auto& [cls, n] : sorted) failures.push_back(absl::StrCat(cls, ":", n));
  return {absl::StrCat(e.succeeded()), absl::StrCat(e.failed()), Num(e.success_rate()),
          Num(e.mean_accuracy()),      Num(e.std_accuracy()),    Num(e.ci95_accuracy()),
          Num(e.median_accuracy()),    Num(e.max_accuracy()),    absl::StrJoin(failures, ";")};
}

}  // namespace

std::string CsvRecord(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ',';
    const std::string& f = fields[i];
    if (f.find_first_of(",\"\r\n") == std::string::npos) {
      out += f;
      continue;
    }
    out += '"';
    for (char ch : f) {
      if (ch == '"') out += '"';
      out += ch;
    }
    out += '"';
  }
  out += "\r\n";
  return out;
}

std::string IsoTime(int64_t unix_ms) {
  if (unix_ms == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string ResultsCsv(const std::vector<std::string>& axes,
                       const std::vector<quartet::v1::CandidateSummary>& candidates) {
  std::vector<std::string> header = {"candidate_id", "campaign_id", "families", "rank", "repeat"};
  header.insert(header.end(), axes.begin(), axes.end());
  for (const char* h :
       {"state", "test_accuracy", "test_loss", "wall_seconds", "created_at", "started_at",
        "finished_at", "error_class", "error_message", "attempts", "worker_id"}) {
    header.push_back(h);
  }
  std::string out = CsvRecord(header);
  for (const auto& c : candidates) {
    std::vector<std::string> row = {absl::StrCat(c.candidate_id()), absl::StrCat(c.campaign_id()),
                                    absl::StrJoin(c.combination().families(), "+"),
                                    absl::StrCat(c.combination().rank()), absl::StrCat(c.repeat())};
    for (const std::string& path : axes) {
      std::string value;
      for (const auto& level : c.axis_levels()) {
        if (level.path() == path) value = level.value();
      }
      row.push_back(value);
    }
    const bool succeeded = c.state() == quartet::v1::CANDIDATE_STATE_SUCCEEDED;
    const bool has_error = c.error_class() != quartet::v1::ERROR_CLASS_UNSPECIFIED;
    row.push_back(StateOf(c.state()));
    row.push_back(succeeded ? Num(c.result().test_accuracy()) : "");
    row.push_back(succeeded ? Num(c.result().test_loss()) : "");
    row.push_back(succeeded ? Num(c.result().wall_seconds()) : "");
    row.push_back(IsoTime(c.created_unix_ms()));
    row.push_back(IsoTime(c.started_unix_ms()));
    row.push_back(IsoTime(c.finished_unix_ms()));
    row.push_back(has_error ? Short(quartet::v1::ErrorClass_Name(c.error_class()), "ERROR_CLASS_")
                            : "");
    row.push_back(c.error_message());
    row.push_back(absl::StrCat(c.attempts()));
    row.push_back(c.worker_id());
    out += CsvRecord(row);
  }
  return out;
}

std::string ResultsJson(const std::vector<quartet::v1::CandidateSummary>& candidates) {
  std::string out = "[";
  for (size_t i = 0; i < candidates.size(); ++i) {
    absl::StrAppend(&out, i ? ",\n " : "\n ", common::MessageToJson(candidates[i]));
  }
  absl::StrAppend(&out, candidates.empty() ? "]\n" : "\n]\n");
  return out;
}

std::string CoverageCsv(const quartet::v1::CoverageReport& r) {
  std::string out =
      CsvRecord({"kind", "family_a", "family_b", "axis", "level", "total", "pending", "leased",
                 "succeeded", "failed", "cancelled", "stopped_early", "share_vs_uniform"});
  for (const auto& f : r.families()) {
    out += CsvRecord(Join(Join(Key("family", f.family(), "", "", ""), {absl::StrCat(f.total())}),
                          Join(Counts(f.counts()), {Num(f.share_vs_uniform())})));
  }
  for (const auto& p : r.pairs()) {
    out += CsvRecord(
        Join(Join(Key("pair", p.family_a(), p.family_b(), "", ""), {absl::StrCat(p.total())}),
             Join(Counts(p.counts()), {""})));
  }
  for (const auto& a : r.axes()) {
    for (const auto& l : a.levels()) {
      out +=
          CsvRecord(Join(Join(Key("level", "", "", a.path(), l.label()), {absl::StrCat(l.total())}),
                         Join(Counts(l.counts()), {""})));
    }
  }
  return out;
}

std::string YieldCsv(const quartet::v1::YieldReport& r) {
  std::string out =
      CsvRecord({"kind", "family_a", "family_b", "axis", "level", "succeeded", "failed",
                 "success_rate", "mean_accuracy", "std_accuracy", "ci95_accuracy",
                 "median_accuracy", "max_accuracy", "failures_by_class"});
  auto family = [](const quartet::v1::YieldEntry& e, int i) {
    return e.families_size() > i ? e.families(i) : std::string();
  };
  for (const auto& e : r.families()) {
    out += CsvRecord(Join(Key("family", family(e, 0), "", "", ""), YieldFields(e)));
  }
  for (const auto& e : r.pairs()) {
    out += CsvRecord(Join(Key("pair", family(e, 0), family(e, 1), "", ""), YieldFields(e)));
  }
  for (const auto& a : r.axes()) {
    for (const auto& e : a.levels()) {
      out += CsvRecord(Join(Key("level", "", "", a.path(), e.level()), YieldFields(e)));
    }
    for (const auto& e : a.family_levels()) {
      out += CsvRecord(
          Join(Key("family_level", family(e, 0), "", a.path(), e.level()), YieldFields(e)));
    }
  }
  return out;
}

}  // namespace quartet::cli
