#include "coordinator/http/dashboard.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/util/json_util.h"

namespace quartet::coordinator {

// Defined in the generated static_assets.cc: URL path -> file under coordinator/http/static.
const std::map<std::string, Asset>& EmbeddedAssets();

namespace {

using quartet::v1::CandidateSummary;

constexpr char kCssLink[] = R"(<link rel="stylesheet" href="/static/dashboard.css">)";
constexpr char kJsScript[] = R"(<script src="/static/dashboard.js"></script>)";
// The header's link to the campaign list, which a file has no server for.
constexpr char kHomeLink[] = R"(<a id="home" href="/">)";
// Width of the histogram range when every accuracy is the same.
constexpr double kMinAccuracySpan = 0.01;

bool Finished(const CandidateSummary& c) {
  return c.state() == quartet::v1::CANDIDATE_STATE_SUCCEEDED ||
         c.state() == quartet::v1::CANDIDATE_STATE_FAILED;
}

void FillProgressPoints(std::vector<const CandidateSummary*> done,
                        quartet::v1::ProgressReport* out) {
  std::stable_sort(done.begin(), done.end(), [](const auto* a, const auto* b) {
    return a->finished_unix_ms() < b->finished_unix_ms();
  });
  const size_t n = done.size();
  const size_t stride = (n + kMaxProgressPoints - 1) / kMaxProgressPoints;
  int64_t succeeded = 0, failed = 0;
  double best = 0;
  for (size_t i = 0; i < n; ++i) {
    const CandidateSummary& c = *done[i];
    if (c.state() == quartet::v1::CANDIDATE_STATE_SUCCEEDED) {
      ++succeeded;
      best = std::max(best, c.result().test_accuracy());
    } else {
      ++failed;
    }
    if ((i + 1) % stride == 0 || i + 1 == n) {
      auto* p = out->add_points();
      p->set_unix_ms(c.finished_unix_ms());
      p->set_succeeded(succeeded);
      p->set_failed(failed);
      p->set_best_accuracy(best);
    }
  }
}

void FillHistograms(const std::vector<std::string>& pool,
                    const std::vector<const CandidateSummary*>& done,
                    quartet::v1::ProgressReport* out) {
  double lo = 1, hi = 0;
  for (const auto* c : done) {
    if (c->state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED) continue;
    lo = std::min(lo, c->result().test_accuracy());
    hi = std::max(hi, c->result().test_accuracy());
  }
  if (lo > hi) lo = hi = 0;  // nothing succeeded
  if (hi - lo < kMinAccuracySpan) hi = std::min(1.0, lo + kMinAccuracySpan);
  if (hi - lo < kMinAccuracySpan) lo = hi - kMinAccuracySpan;
  out->set_accuracy_lo(lo);
  out->set_accuracy_hi(hi);
  out->set_bins(kAccuracyBins);
  std::map<std::string, std::vector<int64_t>> counts;
  for (const std::string& f : pool) counts[f].assign(kAccuracyBins, 0);
  for (const auto* c : done) {
    if (c->state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED) continue;
    const double a = c->result().test_accuracy();
    const int bin =
        std::clamp(static_cast<int>((a - lo) / (hi - lo) * kAccuracyBins), 0, kAccuracyBins - 1);
    for (const std::string& f : c->combination().families()) {
      auto it = counts.find(f);
      if (it != counts.end()) ++it->second[bin];
    }
  }
  for (const std::string& f : pool) {
    auto* h = out->add_families();
    h->set_family(f);
    for (int64_t v : counts[f]) h->add_counts(v);
  }
}

}  // namespace

quartet::v1::ProgressReport BuildProgressReport(int64_t campaign_id,
                                                const std::vector<std::string>& pool,
                                                const std::vector<CandidateSummary>& finished) {
  quartet::v1::ProgressReport out;
  out.set_campaign_id(campaign_id);
  std::vector<const CandidateSummary*> done;
  for (const CandidateSummary& c : finished) {
    if (Finished(c)) done.push_back(&c);
  }
  out.set_finished(static_cast<int64_t>(done.size()));
  FillProgressPoints(done, &out);
  FillHistograms(pool, done, &out);
  return out;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print ", message.GetTypeName(), " as JSON: ", status.ToString()));
  }
  return out;
}

const Asset* FindAsset(absl::string_view path) {
  const auto& assets = EmbeddedAssets();
  auto it = assets.find(std::string(path));
  return it == assets.end() ? nullptr : &it->second;
}

std::string RenderReportHtml(absl::string_view page_json) {
  const Asset* page = FindAsset("/campaigns");
  const Asset* css = FindAsset("/static/dashboard.css");
  const Asset* js = FindAsset("/static/dashboard.js");
  // "</" inside a script element would end it early; "<\/" is the same string in JavaScript.
  const std::string data = absl::StrReplaceAll(page_json, {{"</", "<\\/"}});
  return absl::StrReplaceAll(
      page->body, {{kHomeLink, R"(<a id="home">)"},
                   {kCssLink, absl::StrCat("<style>\n", css->body, "</style>")},
                   {kJsScript, absl::StrCat("<script>window.QUARTET_DATA = ", data,
                                            ";</script>\n<script>\n", js->body, "</script>")}});
}

}  // namespace quartet::coordinator
