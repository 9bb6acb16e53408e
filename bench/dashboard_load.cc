// How fast the dashboard serves a campaign of the published size: seeds a campaign over the whole
// C(29,4) = 23,751 space through the real core (every candidate leased and reported, 3 epochs
// each, every 7th failed), serves it with the coordinator's HttpServer, then times the JSON
// endpoints (median and max of repeated GETs over loopback) and the campaign page in headless
// Chromium (script start to the first complete render, from Chromium's log timestamps).
// MemoryStore by default; --database_url runs it on PostgreSQL.
//   dashboard_load [--database_url=URL] [--record] [--serve_seconds=N]
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "common/catalog.h"
#include "common/clock.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/http/dashboard.h"
#include "coordinator/http/http_server.h"
#include "coordinator/storage/memory_store.h"
#include "coordinator/storage/pg_store.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL; empty: MemoryStore.");
ABSL_FLAG(bool, record, false, "Append the table to bench/RESULTS.md.");
ABSL_FLAG(int, budget, 23751, "Candidates to seed (the whole 4-of-29 space by default).");
ABSL_FLAG(int, repeats, 7, "GETs per endpoint and Chromium loads.");
ABSL_FLAG(std::string, chromium, "/usr/bin/chromium",
          "Headless Chromium for the page load; empty: JSON endpoints only.");
ABSL_FLAG(int, serve_seconds, 0, "Keep serving this long after measuring (for a screenshot).");

namespace {

using quartet::coordinator::CoordinatorCore;

constexpr int kEpochs = 3;
constexpr int kFailEvery = 7;

absl::Status Seed(CoordinatorCore* core, int budget) {
  quartet::v1::CampaignConfig c;
  c.set_name("published-size");
  for (const auto& f : quartet::common::FamilyCatalog::Get().DefaultPool()) c.add_pool(f);
  c.set_k(4);
  c.set_budget(budget);
  c.set_seed(11);
  c.set_sampler(quartet::v1::SAMPLER_KIND_STRATIFIED);
  c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  auto campaign = core->SubmitCampaign(c);
  if (!campaign.ok()) return campaign.status();
  quartet::v1::RegisterWorkerRequest reg;
  reg.set_host("bench");
  auto w = core->RegisterWorker(reg);
  if (!w.ok()) return w.status();
  for (int i = 1; i <= budget; ++i) {
    quartet::v1::LeaseCandidateRequest lr;
    lr.set_worker_id(w->worker_id());
    lr.set_session_secret(w->session_secret());
    auto l = core->LeaseCandidate(lr);
    if (!l.ok()) return l.status();
    if (!l->has_lease()) return absl::InternalError(absl::StrCat("no lease at ", i));
    if (i % kFailEvery == 0) {
      quartet::v1::FailCandidateRequest f;
      f.set_worker_id(w->worker_id());
      f.set_session_secret(w->session_secret());
      f.set_candidate_id(l->lease().candidate_id());
      f.set_lease_token(l->lease().lease_token());
      f.set_error_class(i % (2 * kFailEvery) == 0 ? quartet::v1::ERROR_CLASS_OOM
                                                  : quartet::v1::ERROR_CLASS_NUMERIC);
      f.set_message("bench");
      auto s = core->FailCandidate(f);
      if (!s.ok()) return s.status();
      continue;
    }
    quartet::v1::CompleteCandidateRequest r;
    r.set_worker_id(w->worker_id());
    r.set_session_secret(w->session_secret());
    r.set_candidate_id(l->lease().candidate_id());
    r.set_lease_token(l->lease().lease_token());
    const double acc = 0.6 + 0.3 * ((l->lease().candidate_id() * 7919) % 1000) / 1000.0;
    r.mutable_result()->set_test_accuracy(acc);
    r.mutable_result()->set_wall_seconds(540);
    for (int e = 1; e <= kEpochs; ++e) {
      auto* m = r.mutable_result()->add_epochs();
      m->set_epoch(e);
      m->set_test_accuracy(acc * e / kEpochs);
      m->set_train_loss(2.0 / e);
    }
    if (absl::Status s = core->CompleteCandidate(r); !s.ok()) return s;
  }
  return absl::OkStatus();
}

struct Timing {
  double median_ms = 0, max_ms = 0;
  size_t bytes = 0;
};

Timing TimeGet(httplib::Client& client, const std::string& path, int repeats) {
  std::vector<double> ms;
  Timing t;
  for (int i = 0; i < repeats; ++i) {
    const absl::Time start = absl::Now();
    auto res = client.Get(path.c_str());
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    if (!res || res->status != 200) {
      std::cerr << "GET " << path << " failed\n";
      std::exit(1);
    }
    t.bytes = res->body.size();
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms[ms.size() / 2];
  t.max_ms = ms.back();
  return t;
}

// Seconds of the day of a Chromium log line "[pid:tid:MMDD/HHMMSS.uuuuuu:INFO:CONSOLE...]" that
// contains `marker`; -1 when there is none.
double LogTime(const std::string& log, const std::string& marker) {
  const size_t at = log.find(marker);
  if (at == std::string::npos) return -1;
  const size_t line = log.rfind('\n', at) == std::string::npos ? 0 : log.rfind('\n', at) + 1;
  std::smatch m;
  const std::string text = log.substr(line, at - line);
  if (!std::regex_search(text, m, std::regex(R"(/(\d\d)(\d\d)(\d\d\.\d+):)"))) return -1;
  return std::stoi(m[1].str()) * 3600 + std::stoi(m[2].str()) * 60 + std::stod(m[3].str());
}

// Headless Chromium on the campaign page. The page logs a console line when its script starts and
// when its first render is done; Chromium stamps them with wall-clock times, so their difference
// is the page load after the HTML, CSS and JS arrived: the API call (server time included), JSON
// parsing and drawing every chart and table. A virtual-time budget (below the 2 s poll) makes
// Chromium wait for the fetch and the render, then exit.
struct BrowserTimes {
  Timing load, draw, process;
};

BrowserTimes TimeChromium(const std::string& url, int repeats,
                          const std::function<void()>& before_each) {
  std::vector<double> load, draw, process;
  const std::string log_path = "/tmp/quartet-bench-chromium.log";
  for (int i = 0; i < repeats; ++i) {
    before_each();
    const std::string cmd = absl::StrCat(
        absl::GetFlag(FLAGS_chromium),
        " --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=/tmp/quartet-bench-"
        "chromium --enable-logging=stderr --v=0 --virtual-time-budget=1500 --dump-dom '",
        url, "' 2>", log_path);
    const absl::Time start = absl::Now();
    FILE* p = popen(cmd.c_str(), "r");
    std::string dom;
    char buf[65536];
    for (size_t n; p != nullptr && (n = fread(buf, 1, sizeof(buf), p)) > 0;) dom.append(buf, n);
    if (p != nullptr) pclose(p);
    process.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    std::ifstream in(log_path);
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const double t0 = LogTime(log, "quartet: script start");
    const double t1 = LogTime(log, "quartet: first render done");
    const double received = LogTime(log, "quartet: data received");
    if (dom.find("data-ready=\"1\"") == std::string::npos || t0 < 0 || t1 < 0 || received < 0) {
      const size_t errors = dom.find("id=\"errors\"");
      std::cerr << url << " did not render in Chromium: "
                << (errors == std::string::npos ? dom.substr(0, 300) : dom.substr(errors, 300))
                << "\n";
      std::exit(1);
    }
    load.push_back((t1 - t0) * 1000);
    draw.push_back((t1 - received) * 1000);
  }
  auto summarise = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    Timing t;
    t.median_ms = v[v.size() / 2];
    t.max_ms = v.back();
    return t;
  };
  return {summarise(load), summarise(draw), summarise(process)};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  std::unique_ptr<quartet::coordinator::Store> store;
  const std::string url = absl::GetFlag(FLAGS_database_url);
  if (url.empty()) {
    store = std::make_unique<quartet::coordinator::MemoryStore>();
  } else {
    quartet::coordinator::PgStore::Options o;
    o.url = url;
    auto pg = quartet::coordinator::PgStore::Create(o);
    if (!pg.ok()) {
      std::cerr << pg.status() << "\n";
      return 1;
    }
    store = std::move(*pg);
  }
  auto core = CoordinatorCore::Create({}, store.get(), quartet::common::Clock::Real());
  if (!core.ok()) {
    std::cerr << core.status() << "\n";
    return 1;
  }
  const absl::Time seed_start = absl::Now();
  if (absl::Status s = Seed(core->get(), absl::GetFlag(FLAGS_budget)); !s.ok()) {
    std::cerr << "seeding failed: " << s << "\n";
    return 1;
  }
  const double seed_s = absl::ToDoubleSeconds(absl::Now() - seed_start);
  quartet::coordinator::Authenticator auth({});
  auto server = quartet::coordinator::HttpServer::Start({}, core->get(), &auth, nullptr);
  if (!server.ok()) {
    std::cerr << server.status() << "\n";
    return 1;
  }
  const int port = (*server)->port();
  httplib::Client client("127.0.0.1", port);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  // The first GET for a campaign assembles its page; later ones get the kept page (reassembled in
  // the background after a change).
  const Timing page_first = TimeGet(client, "/api/campaigns/1", 1);
  const Timing page_json = TimeGet(client, "/api/campaigns/1", repeats);
  const Timing list_json = TimeGet(client, "/api/campaigns", repeats);
  const Timing candidate_json = TimeGet(client, "/api/candidates/1", repeats);
  const Timing html = TimeGet(client, "/campaigns/1", repeats);
  // Where the page JSON's time goes: each part once, in process.
  std::vector<std::pair<std::string, double>> parts;
  {
    CoordinatorCore* c = core->get();
    absl::Time t = absl::Now();
    auto lap = [&](const char* what) {
      parts.push_back({what, absl::ToDoubleMilliseconds(absl::Now() - t)});
      t = absl::Now();
    };
    (void)c->GetCoverageReport(1, true);
    lap("in process: core GetCoverageReport (every pair)");
    (void)c->GetYieldReport(1, 0, 0);
    lap("in process: core GetYieldReport");
    auto page = quartet::coordinator::AssembleCampaignPage(c, 1);
    lap("in process: AssembleCampaignPage (campaign, coverage, yield, progress, best)");
    (void)quartet::coordinator::ToJson(*page);
    lap("in process: ToJson of the page");
  }
  BrowserTimes browser, cold;
  if (!absl::GetFlag(FLAGS_chromium).empty()) {
    const std::string page_url = absl::StrCat("http://127.0.0.1:", port, "/campaigns/1");
    browser = TimeChromium(page_url, repeats, [] {});
    // A change to the core (here: another campaign submitted) before each load: the server answers
    // the kept page and assembles it again in the background.
    cold = TimeChromium(page_url, repeats, [c = core->get()] {
      quartet::v1::CampaignConfig other;
      other.set_name("change");
      for (const char* f : {"ResNet", "VGG", "AlexNet", "DenseNet"}) other.add_pool(f);
      other.set_k(4);
      other.set_budget(1);
      other.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
      if (!c->SubmitCampaign(other).ok()) std::exit(1);
    });
  }
  std::string load_average = "unknown";
  {
    std::ifstream in("/proc/loadavg");
    std::string one, five;
    if (in >> one >> five) load_average = absl::StrCat(one, " (1 min), ", five, " (5 min)");
  }
  const std::string store_name = url.empty() ? "MemoryStore" : "PostgreSQL";
  std::string body = absl::StrFormat(
      "Campaign of %d candidates (all 4-of-29 combinations, every %dth failed, %d epochs each) on "
      "%s, seeded through the core in %.1f s. Medians (max) of %d runs over loopback; load "
      "average %s when it started.\n\n"
      "| what | median ms | max ms | bytes |\n|---|---|---|---|\n",
      absl::GetFlag(FLAGS_budget), kFailEvery, kEpochs, store_name, seed_s, repeats, load_average);
  auto line = [&](const char* what, const Timing& t) {
    body += absl::StrFormat("| %s | %.1f | %.1f | %s |\n", what, t.median_ms, t.max_ms,
                            t.bytes ? absl::StrCat(t.bytes) : "-");
  };
  line("GET /api/campaigns/1 (campaign page JSON), first request: assembled", page_first);
  line("GET /api/campaigns/1 again: the kept page", page_json);
  for (const auto& [what, ms] : parts) {
    body += absl::StrFormat("| %s | %.1f | - | - |\n", what, ms);
  }
  line("GET /api/campaigns (list)", list_json);
  line("GET /api/candidates/1", candidate_json);
  line("GET /campaigns/1 (page HTML)", html);
  if (!absl::GetFlag(FLAGS_chromium).empty()) {
    line("campaign page in headless Chromium: script start to render done", browser.load);
    line("  of which drawing every chart and table (data received to render done)", browser.draw);
    line("the same right after a change (the kept page answered, reassembled in the background)",
         cold.load);
    line("  of which drawing", cold.draw);
    line("headless Chromium process, start to exit (browser start-up included)", browser.process);
  }
  body +=
      "\nThe page load is measured by Chromium's own log timestamps of two console lines the "
      "page writes (script start, first render done): the campaign page JSON request with its "
      "server time, JSON parsing and drawing every chart and table. The HTML, CSS and JS "
      "before it are served in under a millisecond each (GET rows above).\n";
  std::cout << body;
  if (absl::GetFlag(FLAGS_record)) {
    quartet::bench::AppendResults(quartet::bench::ResultsPath(),
                                  absl::StrCat("Dashboard load (", store_name, ")"),
                                  quartet::bench::CommandLine(argc, argv), body);
  }
  if (absl::GetFlag(FLAGS_serve_seconds) > 0) {
    std::cout << "serving on http://127.0.0.1:" << port << "/campaigns/1\n" << std::flush;
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_serve_seconds)));
  }
  return 0;
}
