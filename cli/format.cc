#include "cli/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/spec_io.h"

namespace quartet::cli {
namespace {

std::string Strip(const std::string& name, absl::string_view prefix) {
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

std::string Pct(double x) { return absl::StrFormat("%.1f%%", 100 * x); }
std::string Acc(double x) { return absl::StrFormat("%.4f", x); }

std::string When(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

}  // namespace

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      // First column left-aligned (names), the rest right-aligned (numbers).
      const std::string& cell = rows[r][i];
      const std::string pad(width[i] - cell.size(), ' ');
      absl::StrAppend(&line, i ? "  " : "", i == 0 ? cell + pad : pad + cell);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
    if (r == 0) {
      size_t total = 0;
      for (size_t i = 0; i < width.size(); ++i) total += width[i] + (i ? 2 : 0);
      absl::StrAppend(&out, std::string(total, '-'), "\n");
    }
  }
  return out;
}

std::string Duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400 * 2) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string StateName(quartet::v1::CampaignState state) {
  return Strip(quartet::v1::CampaignState_Name(state), "CAMPAIGN_STATE_");
}

std::string StateName(quartet::v1::CandidateState state) {
  return Strip(quartet::v1::CandidateState_Name(state), "CANDIDATE_STATE_");
}

std::string SamplerName(quartet::v1::SamplerKind kind) {
  return Strip(quartet::v1::SamplerKind_Name(kind), "SAMPLER_KIND_");
}

std::string Combination(const quartet::v1::FamilyCombination& c) {
  return absl::StrJoin(c.families(), "+");
}

void ProgressMeter::Observe(absl::Time now, int64_t done) {
  samples_.emplace_back(now, done);
  // Keep one sample at or before the window's start, so the rate spans the whole window.
  while (samples_.size() > 2 && samples_[1].first <= now - window_) samples_.pop_front();
}

double ProgressMeter::EtaSeconds(int64_t remaining) const {
  if (remaining <= 0) return 0;
  if (samples_.size() < 2) return -1;
  const auto& [t0, d0] = samples_.front();
  const auto& [t1, d1] = samples_.back();
  const double seconds = absl::ToDoubleSeconds(t1 - t0);
  if (d1 <= d0 || seconds <= 0) return -1;
  return remaining * seconds / static_cast<double>(d1 - d0);
}

std::string ProgressLine(const quartet::v1::Campaign& c, int width, double eta_seconds) {
  const auto& n = c.counts();
  const int64_t budget = c.config().budget();
  const int64_t done = n.succeeded() + n.failed() + n.cancelled() + n.stopped_early();
  const double frac = budget > 0 ? std::min(1.0, static_cast<double>(done) / budget) : 0;
  const int filled = static_cast<int>(std::floor(frac * width));
  std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
  std::string line = absl::StrFormat("[%s] %d/%d done  %d running  %d failed", bar, done, budget,
                                     n.leased(), n.failed());
  if (n.stopped_early() > 0) {
    absl::StrAppend(&line, absl::StrFormat("  %d stopped early", n.stopped_early()));
  }
  if (n.cancelled() > 0) absl::StrAppend(&line, absl::StrFormat("  %d cancelled", n.cancelled()));
  if (n.succeeded() > 0) {
    absl::StrAppend(&line, "  best ", Acc(c.best_accuracy()));
  }
  const double eta = eta_seconds >= 0 ? eta_seconds : c.eta_seconds();
  if (eta > 0 && c.state() != quartet::v1::CAMPAIGN_STATE_PAUSED) {
    absl::StrAppend(&line, "  ETA ", Duration(eta));
  }
  absl::StrAppend(&line, "  ", StateName(c.state()));
  return line;
}

std::string CampaignDetails(const quartet::v1::Campaign& c) {
  const auto& cfg = c.config();
  const auto& n = c.counts();
  std::string out;
  absl::StrAppend(&out, "campaign ", c.id(), "  '", cfg.name(), "'  ", StateName(c.state()), "\n");
  absl::StrAppend(&out, "  space      ", cfg.k(), " of ", cfg.pool_size(), " families",
                  cfg.required_size()
                      ? absl::StrCat(" (required: ", absl::StrJoin(cfg.required(), ", "), ")")
                      : "",
                  ", ", c.space_size(), " combinations\n");
  absl::StrAppend(&out, "  sampler    ", SamplerName(cfg.sampler()), ", seed ", cfg.seed(),
                  ", repeats ", cfg.repeats(), ", max attempts ", cfg.max_attempts(), ", priority ",
                  cfg.priority(), "\n");
  absl::StrAppend(
      &out, "  dataset    ", Strip(quartet::v1::Dataset_Name(cfg.data().dataset()), "DATASET_"),
      cfg.data().train_limit() ? absl::StrCat(", train limit ", cfg.data().train_limit()) : "",
      cfg.data().test_limit() ? absl::StrCat(", test limit ", cfg.data().test_limit()) : "", "\n");
  const auto& r = cfg.recipe();
  absl::StrAppend(&out, "  recipe     ", r.epochs(), " epoch(s), batch ", r.batch_size(), ", ",
                  Strip(quartet::v1::Optimizer_Name(r.optimizer()), "OPTIMIZER_"), " lr ",
                  absl::StrFormat("%g", r.learning_rate()), ", router ",
                  Strip(quartet::v1::Router_Name(r.router()), "ROUTER_"), ", input ",
                  r.input_size() ? absl::StrCat(r.input_size(), " px") : std::string("auto"), "\n");
  absl::StrAppend(&out, "  budget     ", cfg.budget(), " candidates, ", c.issued(), " issued\n");
  if (cfg.has_fidelity()) {
    const auto& f = cfg.fidelity();
    absl::StrAppend(&out, "  fidelity   ASHA rungs ", absl::StrJoin(f.rung_epochs(), ", "),
                    " epochs, eta ", f.eta(), ", coverage guard ",
                    f.coverage_guard() ? absl::StrCat("on (m = ", f.guard_min(), ")") : "off",
                    "\n  epochs     ", c.epochs_committed(), " of ", c.budget_epochs(),
                    " granted\n");
  }
  if (c.checkpoint_failures() > 0) {
    absl::StrAppend(&out, "  checkpoint ", c.checkpoint_failures(),
                    " failure(s): resumes retrained from scratch or writes refused\n");
  }
  absl::StrAppend(&out, "  progress   ", ProgressLine(c), "\n");
  absl::StrAppend(
      &out, "  states     pending ", n.pending(), ", leased ", n.leased(), ", succeeded ",
      n.succeeded(), ", failed ", n.failed(), ", cancelled ", n.cancelled(),
      n.stopped_early() ? absl::StrCat(", stopped early ", n.stopped_early()) : "", "\n");
  if (n.succeeded() > 0) {
    absl::StrAppend(&out, "  best       ", Acc(c.best_accuracy()), "  ",
                    Combination(c.best_combination()), "\n");
    absl::StrAppend(&out, "  mean time  ", Duration(c.mean_candidate_seconds()),
                    " per succeeded candidate\n");
  }
  absl::StrAppend(&out, "  created    ", When(c.created_unix_ms()), "\n");
  if (c.finished_unix_ms())
    absl::StrAppend(&out, "  finished   ", When(c.finished_unix_ms()), "\n");
  return out;
}

std::string RungTable(const quartet::v1::CoverageReport& report) {
  if (report.rungs().empty()) return "";
  std::string out =
      absl::StrFormat("  %-5s %7s %10s %9s %13s %6s %9s %9s %9s\n", "rung", "epochs", "completed",
                      "promoted", "stopped-early", "open", "best", "mean", "families");
  for (const auto& r : report.rungs()) {
    absl::StrAppend(
        &out,
        absl::StrFormat("  %-5d %7d %10d %9d %13d %6d %9s %9s %9d\n", r.rung(), r.epochs(),
                        r.completed(), r.promoted(), r.stopped_early(), r.open(),
                        r.completed() ? Acc(r.best_accuracy()) : "-",
                        r.completed() ? Acc(r.mean_accuracy()) : "-", r.families_completed()));
  }
  absl::StrAppend(&out, "  coverage guard: ", report.guard_promotions(), " promotion(s)");
  if (!report.guard_kept().empty()) {
    absl::StrAppend(&out, "; kept alive past rung 0 only by the guard: ",
                    absl::StrJoin(report.guard_kept(), ", "));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

std::string WorkersText(const std::vector<quartet::v1::WorkerInfo>& workers, int64_t now_ms) {
  std::vector<std::vector<std::string>> rows = {{"WORKER", "HOST", "DEVICE", "GPU", "LAST SEEN",
                                                 "CANDIDATE", "PROGRESS", "DONE", "FAILED",
                                                 "STATE"}};
  for (const auto& w : workers) {
    std::vector<std::string> current, progress;
    for (const auto& t : w.current()) {
      current.push_back(absl::StrCat(t.candidate_id(), " (campaign ", t.campaign_id(), ")"));
      progress.push_back(absl::StrCat("epoch ", t.epoch(), "/", t.epochs()));
    }
    const double ago = std::max<double>(0, (now_ms - w.last_seen_unix_ms()) / 1000.0);
    rows.push_back({w.worker_id(), w.host(), w.device(), w.gpu_name().empty() ? "-" : w.gpu_name(),
                    w.last_seen_unix_ms() ? absl::StrCat(Duration(ago), " ago") : "-",
                    current.empty() ? "-" : absl::StrJoin(current, ", "),
                    progress.empty() ? "-" : absl::StrJoin(progress, ", "),
                    absl::StrCat(w.candidates_succeeded()), absl::StrCat(w.candidates_failed()),
                    w.draining() ? "DRAINING" : (current.empty() ? "idle" : "training")});
  }
  if (workers.empty()) return "no workers registered\n";
  return Table(rows);
}

std::string CampaignList(const std::vector<quartet::v1::Campaign>& campaigns) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "STATE", "SAMPLER", "DONE", "BUDGET", "FAILED", "BEST", "CREATED"}};
  for (const auto& c : campaigns) {
    const auto& n = c.counts();
    rows.push_back({absl::StrCat(c.id()), c.config().name(), StateName(c.state()),
                    SamplerName(c.config().sampler()),
                    absl::StrCat(n.succeeded() + n.failed() + n.cancelled()),
                    absl::StrCat(c.config().budget()), absl::StrCat(n.failed()),
                    n.succeeded() ? Acc(c.best_accuracy()) : "-", When(c.created_unix_ms())});
  }
  if (campaigns.empty()) return "no campaigns\n";
  return Table(rows);
}

namespace {

// Axes with at most this many levels also get a family x level matrix without --pairs.
constexpr int kMaxMatrixLevels = 12;

// "recipe.router" -> "router"; the path's last part names a column.
std::string AxisShortName(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// A level's label without its enum's prefix ("ROUTER_TOP_K" -> "TOP_K").
std::string ShortLabel(const std::string& label) { return common::ShortEnumValue(label); }

// The header of a coverage table: its first column, the total, and a column per candidate state.
std::vector<std::string> CountsHeader(const std::string& first) {
  return {first, "TOTAL", "PENDING", "LEASED", "SUCCEEDED", "FAILED", "CANCELLED", "STOPPED EARLY"};
}

// A coverage table's row: `first`, `total`, then the counts in CountsHeader's order.
std::vector<std::string> CountsRow(const std::string& first, int64_t total,
                                   const quartet::v1::StateCounts& n) {
  return {first,
          absl::StrCat(total),
          absl::StrCat(n.pending()),
          absl::StrCat(n.leased()),
          absl::StrCat(n.succeeded()),
          absl::StrCat(n.failed()),
          absl::StrCat(n.cancelled()),
          absl::StrCat(n.stopped_early())};
}

std::string AxisCoverageText(const quartet::v1::AxisCoverage& axis, bool matrix) {
  std::vector<std::vector<std::string>> rows = {
      CountsHeader(absl::AsciiStrToUpper(AxisShortName(axis.path())))};
  for (const auto& level : axis.levels()) {
    rows.push_back(CountsRow(ShortLabel(level.label()), level.total(), level.counts()));
  }
  std::string out =
      absl::StrCat("axis ", axis.path(), axis.continuous() ? " (strata)" : "", "\n", Table(rows));
  absl::StrAppend(&out, "level deviation     ", axis.max_level_deviation(),
                  "  (largest minus smallest level count)\n");
  if (axis.family_levels_total() > 0) {
    absl::StrAppend(&out, "(family, level) seen ", axis.family_levels_seen(), " of ",
                    axis.family_levels_total(), "\n");
  }
  if ((matrix || axis.levels_size() <= kMaxMatrixLevels) && axis.levels_size() > 0 &&
      axis.levels(0).families_size() > 0) {
    std::vector<std::vector<std::string>> grid = {{"FAMILY \\ LEVEL"}};
    for (const auto& level : axis.levels()) grid[0].push_back(ShortLabel(level.label()));
    for (int f = 0; f < axis.levels(0).families_size(); ++f) {
      std::vector<std::string> row = {axis.levels(0).families(f).family()};
      for (const auto& level : axis.levels()) {
        row.push_back(f < level.families_size() ? absl::StrCat(level.families(f).total()) : "-");
      }
      grid.push_back(std::move(row));
    }
    absl::StrAppend(&out, "candidates per (family, level):\n", Table(grid));
  }
  return out;
}

}  // namespace

std::string CoverageText(const quartet::v1::CoverageReport& r, bool show_pairs) {
  std::vector<std::vector<std::string>> rows = {CountsHeader("FAMILY")};
  rows[0].push_back("vs UNIFORM");
  for (const auto& f : r.families()) {
    rows.push_back(CountsRow(f.family(), f.total(), f.counts()));
    rows.back().push_back(absl::StrFormat("%.2fx", f.share_vs_uniform()));
  }
  std::string out = absl::StrCat("coverage of campaign ", r.campaign_id(), ": k = ", r.k(), " of ",
                                 r.pool_size(), " families\n\n");
  absl::StrAppend(&out, Table(rows), "\n");
  absl::StrAppend(&out, "space visited       ", r.distinct_issued(), " of ", r.space_size(),
                  " combinations (", absl::StrFormat("%.3f%%", 100 * r.space_fraction()), ")\n");
  absl::StrAppend(&out, "anchoring index     ", absl::StrFormat("%.3f", r.anchoring_index()),
                  "  (largest family share / uniform share; 1 = even)\n");
  absl::StrAppend(&out, "family entropy      ", absl::StrFormat("%.4f", r.family_entropy()),
                  "  (1 = even)\n");
  absl::StrAppend(&out, "family deviation    ", r.max_family_deviation(),
                  "  (largest minus smallest count)\n");
  absl::StrAppend(&out, "pairs seen          ", r.pairs_seen(), " of ", r.pairs_total(), " (",
                  Pct(r.pair_coverage()), "), counts ", r.min_pair_count(), "..",
                  r.max_pair_count(), "; with a success: ", Pct(r.pair_coverage_succeeded()), "\n");
  absl::StrAppend(&out, "triples seen        ", r.triples_seen(), " of ", r.triples_total(), " (",
                  Pct(r.triple_coverage()), ")\n");
  if (show_pairs && r.pairs_size() > 0) {
    std::vector<std::vector<std::string>> prow = {CountsHeader("PAIR")};
    for (const auto& p : r.pairs()) {
      prow.push_back(
          CountsRow(absl::StrCat(p.family_a(), "+", p.family_b()), p.total(), p.counts()));
    }
    absl::StrAppend(&out, "\n", Table(prow));
  }
  for (const auto& axis : r.axes()) absl::StrAppend(&out, "\n", AxisCoverageText(axis, show_pairs));
  return out;
}

namespace {

std::vector<std::string> YieldRow(const quartet::v1::YieldEntry& e) {
  std::string failures;
  for (const auto& [cls, n] : e.failures_by_class()) {
    absl::StrAppend(&failures, failures.empty() ? "" : " ", Strip(cls, "ERROR_CLASS_"), ":", n);
  }
  return {absl::StrJoin(e.families(), "+"),
          absl::StrCat(e.succeeded()),
          absl::StrCat(e.failed()),
          e.succeeded() + e.failed() ? Pct(e.success_rate()) : "-",
          e.succeeded() ? Acc(e.mean_accuracy()) : "-",
          e.succeeded() > 1 ? absl::StrCat("±", Acc(e.ci95_accuracy())) : "-",
          e.succeeded() ? Acc(e.median_accuracy()) : "-",
          e.succeeded() ? Acc(e.max_accuracy()) : "-",
          failures.empty() ? "-" : failures};
}

// Levels with successes by mean accuracy, best first (ties in level order), then the rest.
std::vector<const quartet::v1::YieldEntry*> RankedByMeanAccuracy(
    const google::protobuf::RepeatedPtrField<quartet::v1::YieldEntry>& entries) {
  std::vector<const quartet::v1::YieldEntry*> out;
  for (const auto& e : entries) out.push_back(&e);
  std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    if ((a->succeeded() > 0) != (b->succeeded() > 0)) return a->succeeded() > 0;
    return a->mean_accuracy() > b->mean_accuracy();
  });
  return out;
}

}  // namespace

namespace {

const std::vector<std::string>& YieldHeader() {
  static const std::vector<std::string> header = {"FAMILY", "OK",     "FAILED", "YIELD",   "MEAN",
                                                  "95% CI", "MEDIAN", "MAX",    "FAILURES"};
  return header;
}

// A titled table of entries, or "none with enough samples yet".
std::string RankedTable(
    const std::string& title, const std::string& first_column,
    const google::protobuf::RepeatedPtrField<quartet::v1::YieldEntry>& entries) {
  std::string out = absl::StrCat("\n", title, "\n");
  if (entries.empty()) return out + "  none with enough samples yet\n";
  std::vector<std::vector<std::string>> rows = {YieldHeader()};
  rows[0][0] = first_column;
  for (const auto& e : entries) rows.push_back(YieldRow(e));
  return out + Table(rows);
}

// Families, low-yield families and best pairs.
std::string FamilyYieldText(const quartet::v1::YieldReport& r) {
  std::vector<std::vector<std::string>> rows = {YieldHeader()};
  for (const auto& e : r.families()) rows.push_back(YieldRow(e));
  const std::string min = absl::StrCat(">= ", r.min_samples(), " successes)");
  return absl::StrCat("\n", Table(rows),
                      RankedTable(absl::StrCat("low-yield families (lowest mean accuracy, ", min),
                                  "FAMILY", r.low_yield_families()),
                      RankedTable(absl::StrCat("best pairs (highest mean accuracy, ", min), "PAIR",
                                  r.best_pairs()));
}

// Per axis, levels ranked by mean accuracy; then the best cells.
std::string AxisYieldText(const quartet::v1::YieldReport& r) {
  std::string out;
  for (const auto& axis : r.axes()) {
    std::vector<std::vector<std::string>> levels = {YieldHeader()};
    levels[0][0] = absl::AsciiStrToUpper(AxisShortName(axis.path()));
    for (const quartet::v1::YieldEntry* e : RankedByMeanAccuracy(axis.levels())) {
      levels.push_back(YieldRow(*e));
      levels.back()[0] = ShortLabel(e->level());
    }
    absl::StrAppend(&out, "\nyield by ", axis.path(), " (ranked by mean accuracy)\n",
                    Table(levels));
  }
  if (r.axes_size() == 0) return out;
  absl::StrAppend(&out, "\nbest cells (highest mean accuracy, >= ", r.min_samples(),
                  " successes)\n");
  std::vector<std::vector<std::string>> cells = {YieldHeader()};
  cells[0][0] = "CELL";
  for (const auto& e : r.best_cells()) {
    cells.push_back(YieldRow(e));
    cells.back()[0] = absl::StrCat(e.families().empty() ? "" : e.families(0) + " @ ",
                                   AxisShortName(e.axis()), "=", ShortLabel(e.level()));
  }
  absl::StrAppend(&out, r.best_cells().empty() ? "  none with enough samples yet\n" : Table(cells));
  return out;
}

}  // namespace

std::string YieldText(const quartet::v1::YieldReport& r) {
  // A campaign without a family axis has no family rows.
  return absl::StrCat("yield of campaign ", r.campaign_id(), "\n",
                      r.families_size() > 0 ? FamilyYieldText(r) : "", AxisYieldText(r));
}

std::string ResultsText(const std::vector<quartet::v1::CandidateSummary>& results) {
  if (results.empty()) return "no results yet\n";
  std::vector<std::vector<std::string>> rows = {
      {"#", "CANDIDATE", "COMBINATION", "REP", "STATE", "TEST ACC", "TIME", "DEVICE / ERROR"}};
  const bool axes = std::any_of(results.begin(), results.end(),
                                [](const auto& c) { return c.axis_levels_size() > 0; });
  if (axes) rows[0].insert(rows[0].begin() + 3, "AXES");
  int i = 0;
  for (const auto& c : results) {
    const bool ok = c.state() == quartet::v1::CANDIDATE_STATE_SUCCEEDED;
    rows.push_back(
        {absl::StrCat(++i), absl::StrCat(c.candidate_id()), Combination(c.combination()),
         absl::StrCat(c.repeat()), StateName(c.state()), ok ? Acc(c.result().test_accuracy()) : "-",
         ok ? Duration(c.result().wall_seconds()) : "-",
         ok ? c.result().device()
            : absl::StrCat(Strip(quartet::v1::ErrorClass_Name(c.error_class()), "ERROR_CLASS_"),
                           " ", c.error_message())});
    if (!axes) continue;
    std::string values;
    for (const auto& a : c.axis_levels()) {
      absl::StrAppend(&values, values.empty() ? "" : " ", AxisShortName(a.path()), "=",
                      ShortLabel(a.value()));
    }
    rows.back().insert(rows.back().begin() + 3, values);
  }
  return Table(rows);
}

}  // namespace quartet::cli
