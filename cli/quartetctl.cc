// quartetctl: the operator's client. Submits, watches, pauses, resumes and updates campaigns,
// reads coverage, yield and results, exports them as CSV or JSON, and lists and drains workers. A
// server error prints as one line on stderr and the exit code is non-zero.
#include <sys/ioctl.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "cli/export.h"
#include "cli/format.h"
#include "cli/report_analyses.h"
#include "cli/report_html.h"
#include "common/artifacts.h"
#include "common/grpc_client.h"
#include "common/grpc_status.h"
#include "common/spec_io.h"
#include "quartet/v1/campaign.grpc.pb.h"

namespace {

using quartet::common::ClientConnection;
using quartet::common::FromGrpcStatus;

constexpr absl::Duration kCallTimeout = absl::Seconds(30);

// Exit codes.
constexpr int kOk = 0;
constexpr int kError = 1;      // server or usage error
constexpr int kCancelled = 2;  // watch: the campaign ended CANCELLED

// results export: candidates fetched per ListResults call.
constexpr int kDefaultExportPageSize = 500;
constexpr int kMaxExportPageSize = 100000;
// campaign watch on a terminal: the bar's width, and the line's width when the terminal's is
// unknown.
constexpr int kWatchBarWidth = 30;
constexpr int kDefaultTerminalColumns = 120;

// Columns of the terminal on stdout, or kDefaultTerminalColumns.
int TerminalColumns() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return kDefaultTerminalColumns;
}

// Writes `text` to `path`, or to stdout when `path` is empty.
absl::Status Emit(const std::string& text, const std::string& path) {
  if (path.empty()) {
    std::cout << text << std::flush;
    return absl::OkStatus();
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return absl::InvalidArgumentError(absl::StrCat(
        "-o: cannot write '", path, "': check that its directory exists and is writable"));
  }
  return absl::OkStatus();
}

int PrintError(const absl::Status& status) {
  std::cerr << "quartetctl: error: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  return kError;
}

int PrintError(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    std::cerr << "quartetctl: error: UNAVAILABLE: cannot reach the coordinator ("
              << status.error_message() << "); is it running, and is --coordinator right?\n";
    return kError;
  }
  return PrintError(FromGrpcStatus(status));
}

std::string Lower(std::string s) {
  absl::AsciiStrToLower(&s);
  absl::StrReplaceAll({{"-", "_"}}, &s);
  return s;
}

// Parses a short, case-insensitive enum name ("top-k", "TOP_K", "ROUTER_TOP_K") with a prefix.
template <typename Enum>
bool ParseEnum(const std::string& value, const std::string& prefix,
               bool (*parse)(const std::string&, Enum*), Enum* out) {
  std::string upper = value;
  absl::AsciiStrToUpper(&upper);
  absl::StrReplaceAll({{"-", "_"}}, &upper);
  if (parse(upper, out)) return true;
  return parse(prefix + upper, out);
}

struct Globals {
  quartet::common::ClientOptions client;
  std::string format = "text";
};

struct SubmitFlags {
  std::string file;
  std::string name;
  std::vector<std::string> pool, exclude, required;
  int k = 0;
  std::string sampler;
  int64_t budget = 0;
  uint64_t seed = 0;
  int repeats = 0, max_attempts = 0, priority = 0;
  std::string dataset, data_dir;
  int train_limit = 0, test_limit = 0;
  int epochs = 0, batch_size = 0, input_size = 0, top_k = 0;
  double lr = 0, weight_decay = 0, dropout = 0, mixup_alpha = 0, label_smoothing = 0, top_p = 0,
         time_budget = 0;
  std::string optimizer, router;
  std::vector<std::string> axes;
  bool without_families = false;
  bool watch = false;
  // Multi-fidelity (ASHA).
  std::vector<int> rungs;
  int eta = 0, min_epochs = 0, max_epochs = 0, guard_min = 0, keep_checkpoints = 0;
  int64_t budget_epochs = 0;
  bool no_guard = false;
};

// The MultiFidelity the flags ask for; unset (has_fidelity false) when none of them is given.
void ApplyFidelityFlags(const SubmitFlags& f, const std::function<bool(const char*)>& given,
                        quartet::v1::CampaignConfig* config) {
  const bool any = given("--rungs") || given("--eta") || given("--max-epochs") ||
                   given("--min-epochs") || given("--budget-epochs") ||
                   given("--no-coverage-guard") || given("--guard-min");
  if (given("--keep-checkpoints")) config->set_keep_best_checkpoints(f.keep_checkpoints);
  if (!any) return;
  quartet::v1::MultiFidelity* m = config->mutable_fidelity();
  if (given("--rungs")) {
    m->clear_rung_epochs();
    for (int r : f.rungs) m->add_rung_epochs(r);
  }
  if (given("--eta")) m->set_eta(f.eta);
  if (given("--min-epochs")) m->set_min_epochs(f.min_epochs);
  if (given("--max-epochs")) m->set_max_epochs(f.max_epochs);
  if (given("--budget-epochs")) m->set_budget_epochs(f.budget_epochs);
  if (given("--no-coverage-guard")) m->set_coverage_guard(!f.no_guard);
  if (given("--guard-min")) m->set_guard_min(f.guard_min);
}

class Ctl {
 public:
  explicit Ctl(const Globals& g) : globals_(g) {}

  absl::Status Connect() {
    auto conn = ClientConnection::Create(globals_.client);
    if (!conn.ok()) return conn.status();
    conn_ = std::make_unique<ClientConnection>(std::move(*conn));
    stub_ = quartet::v1::CampaignService::NewStub(conn_->channel());
    return absl::OkStatus();
  }

  bool json() const { return globals_.format == "json"; }
  // ListResults for cli/report_analyses.
  quartet::cli::ListResultsFn Lister() {
    return [this](const quartet::v1::ListResultsRequest& req, quartet::v1::ListResultsResponse* r) {
      grpc::ClientContext ctx;
      conn_->Prepare(&ctx, kCallTimeout);
      return stub_->ListResults(&ctx, req, r);
    };
  }

  // GetCandidate for cli/report_analyses.
  quartet::cli::GetCandidateFn Getter() {
    return [this](int64_t id, quartet::v1::CandidateSummary* out) {
      grpc::ClientContext ctx;
      conn_->Prepare(&ctx, kCallTimeout);
      quartet::v1::GetCandidateRequest req;
      req.set_candidate_id(id);
      quartet::v1::GetCandidateResponse resp;
      grpc::Status s = stub_->GetCandidate(&ctx, req, &resp);
      if (s.ok()) *out = resp.candidate();
      return s;
    };
  }

  int Submit(SubmitFlags& f, CLI::App& cmd) {
    quartet::v1::CampaignConfig config;
    if (!f.file.empty()) {
      absl::Status s = quartet::common::ReadMessageFile(f.file, &config);
      if (!s.ok()) return PrintError(s);
    }
    auto given = [&](const char* flag) { return cmd.count(flag) > 0; };
    if (given("--name")) config.set_name(f.name);
    if (given("--families")) {
      config.clear_pool();
      for (const auto& p : f.pool) config.add_pool(p);
    }
    if (given("--exclude")) {
      config.clear_exclude();
      for (const auto& p : f.exclude) config.add_exclude(p);
    }
    if (given("--required")) {
      config.clear_required();
      for (const auto& p : f.required) config.add_required(p);
    }
    if (given("-k")) config.set_k(f.k);
    if (given("--sampler")) {
      quartet::v1::SamplerKind kind;
      if (!ParseEnum<quartet::v1::SamplerKind>(f.sampler, "SAMPLER_KIND_",
                                               &quartet::v1::SamplerKind_Parse, &kind)) {
        return PrintError(absl::InvalidArgumentError(absl::StrCat(
            "--sampler: '", f.sampler,
            "' is not one of lexicographic, uniform, stratified, pair-covering, adaptive")));
      }
      config.set_sampler(kind);
    }
    if (given("--budget")) config.set_budget(f.budget);
    if (given("--seed")) config.set_seed(f.seed);
    if (given("--repeats")) config.set_repeats(f.repeats);
    if (given("--max-attempts")) config.set_max_attempts(f.max_attempts);
    if (given("--priority")) config.set_priority(f.priority);
    auto* data = config.mutable_data();
    if (given("--dataset")) {
      quartet::v1::Dataset d;
      std::string name = f.dataset;
      if (Lower(name) == "fashion_mnist" || Lower(name) == "fmnist") name = "FASHION_MNIST";
      if (Lower(name) == "cifar_10") name = "CIFAR10";
      if (!ParseEnum<quartet::v1::Dataset>(name, "DATASET_", &quartet::v1::Dataset_Parse, &d)) {
        return PrintError(absl::InvalidArgumentError(
            absl::StrCat("--dataset: '", f.dataset,
                         "' is not one of cifar10, mnist, fashion-mnist, synthetic")));
      }
      data->set_dataset(d);
    }
    if (given("--data-dir")) data->set_data_dir(f.data_dir);
    if (given("--train-limit")) data->set_train_limit(f.train_limit);
    if (given("--test-limit")) data->set_test_limit(f.test_limit);
    auto* r = config.mutable_recipe();
    if (given("--epochs")) r->set_epochs(f.epochs);
    if (given("--batch-size")) r->set_batch_size(f.batch_size);
    if (given("--lr")) r->set_learning_rate(f.lr);
    if (given("--weight-decay")) r->set_weight_decay(f.weight_decay);
    if (given("--dropout")) r->set_dropout(f.dropout);
    if (given("--mixup-alpha")) r->set_mixup_alpha(f.mixup_alpha);
    if (given("--label-smoothing")) r->set_label_smoothing(f.label_smoothing);
    if (given("--input-size")) r->set_input_size(f.input_size);
    if (given("--top-k")) r->set_top_k(f.top_k);
    if (given("--top-p")) r->set_top_p(f.top_p);
    if (given("--time-budget")) r->set_time_budget_seconds(f.time_budget);
    if (given("--without-families")) config.set_without_families(f.without_families);
    ApplyFidelityFlags(f, given, &config);
    for (const std::string& flag : f.axes) {
      auto axis = quartet::common::ParseAxisFlag(flag);
      if (!axis.ok()) return PrintError(axis.status());
      // A flag replaces the file's axis on the same field.
      auto* axes = config.mutable_axes();
      for (int i = axes->size() - 1; i >= 0; --i) {
        if (axes->Get(i).path() == axis->path()) axes->DeleteSubrange(i, 1);
      }
      *config.add_axes() = *std::move(axis);
    }
    if (given("--optimizer")) {
      quartet::v1::Optimizer o;
      if (!ParseEnum<quartet::v1::Optimizer>(f.optimizer, "OPTIMIZER_",
                                             &quartet::v1::Optimizer_Parse, &o)) {
        return PrintError(absl::InvalidArgumentError(
            absl::StrCat("--optimizer: '", f.optimizer, "' is not one of adamw, sgd")));
      }
      r->set_optimizer(o);
    }
    if (given("--router")) {
      quartet::v1::Router ro;
      if (!ParseEnum<quartet::v1::Router>(f.router, "ROUTER_", &quartet::v1::Router_Parse, &ro)) {
        return PrintError(absl::InvalidArgumentError(
            absl::StrCat("--router: '", f.router, "' is not one of dense, top-k, top-p")));
      }
      r->set_router(ro);
    }

    quartet::v1::SubmitCampaignRequest req;
    *req.mutable_config() = config;
    quartet::v1::SubmitCampaignResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->SubmitCampaign(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp.campaign(), true) << "\n";
    } else {
      std::cout << "submitted campaign " << resp.campaign().id() << "\n"
                << quartet::cli::CampaignDetails(resp.campaign());
    }
    if (f.watch) return Watch(resp.campaign().id(), 1000);
    return kOk;
  }

  int List(const std::string& state, int limit) {
    quartet::v1::ListCampaignsRequest req;
    if (!state.empty()) {
      quartet::v1::CampaignState st;
      if (!ParseEnum<quartet::v1::CampaignState>(state, "CAMPAIGN_STATE_",
                                                 &quartet::v1::CampaignState_Parse, &st)) {
        return PrintError(absl::InvalidArgumentError(
            absl::StrCat("--state: '", state, "' is not one of running, paused, cancelled, done")));
      }
      req.add_states(st);
    }
    req.set_limit(limit);
    quartet::v1::ListCampaignsResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->ListCampaigns(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp, true) << "\n";
    } else {
      std::cout << quartet::cli::CampaignList({resp.campaigns().begin(), resp.campaigns().end()});
    }
    return kOk;
  }

  int Show(int64_t id) {
    quartet::v1::GetCampaignRequest req;
    req.set_campaign_id(id);
    quartet::v1::GetCampaignResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->GetCampaign(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    std::cout << (json() ? quartet::common::MessageToJson(resp.campaign(), true) + "\n"
                         : quartet::cli::CampaignDetails(resp.campaign()));
    if (!json() && resp.campaign().config().has_fidelity()) {
      quartet::v1::GetCoverageReportRequest creq;
      creq.set_campaign_id(id);
      quartet::v1::GetCoverageReportResponse cresp;
      grpc::ClientContext cctx;
      conn_->Prepare(&cctx, kCallTimeout);
      grpc::Status cs = stub_->GetCoverageReport(&cctx, creq, &cresp);
      if (!cs.ok()) return PrintError(cs);
      std::cout << "  rungs\n" << quartet::cli::RungTable(cresp.report());
    }
    return kOk;
  }

  // Writes a candidate's TorchScript model (ExportModel) to `path`, checking size and sha256.
  int ExportModel(int64_t candidate_id, const std::string& path) {
    if (path.empty() || path == "-") {
      return PrintError(absl::InvalidArgumentError(
          "-o: a model export needs a file to write (for example -o model.pt)"));
    }
    quartet::v1::ExportModelRequest req;
    req.set_candidate_id(candidate_id);
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    auto reader = stub_->ExportModel(&ctx, req);
    quartet::v1::ArtifactChunk chunk;
    quartet::v1::Artifact artifact;
    std::string bytes;
    while (reader->Read(&chunk)) {
      if (chunk.has_artifact()) artifact = chunk.artifact();
      bytes += chunk.data();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return PrintError(s);
    if (static_cast<int64_t>(bytes.size()) != artifact.size_bytes() ||
        quartet::common::Sha256Hex(bytes) != artifact.sha256()) {
      return PrintError(absl::DataLossError(absl::StrCat(
          "the model of candidate ", candidate_id, " arrived damaged (", bytes.size(), " bytes, ",
          artifact.size_bytes(), " expected, or a sha256 mismatch); nothing was written; retry")));
    }
    if (absl::Status w = Emit(bytes, path); !w.ok()) return PrintError(w);
    std::cout << "wrote " << path << ": TorchScript of candidate " << candidate_id << " after "
              << artifact.epoch() << " epoch(s), " << bytes.size() << " bytes, sha256 "
              << artifact.sha256() << "\n";
    return kOk;
  }

  int Cancel(int64_t id) {
    quartet::v1::CancelCampaignRequest req;
    req.set_campaign_id(id);
    quartet::v1::CancelCampaignResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->CancelCampaign(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp.campaign(), true) << "\n";
    } else {
      std::cout << "cancelled campaign " << id << ": " << resp.campaign().counts().cancelled()
                << " candidates cancelled, " << resp.campaign().counts().leased()
                << " running ones told to stop\n";
    }
    return kOk;
  }

  // Streams progress until the campaign is final; reconnects after a coordinator restart.
  int Watch(int64_t id, int interval_ms) {
    const bool tty = isatty(STDOUT_FILENO);
    quartet::cli::ProgressMeter meter;
    int failures = 0;
    quartet::v1::Campaign last;
    bool have_last = false;
    while (true) {
      quartet::v1::WatchCampaignRequest req;
      req.set_campaign_id(id);
      req.set_interval_ms(interval_ms);
      grpc::ClientContext ctx;
      conn_->Prepare(&ctx);
      auto reader = stub_->WatchCampaign(&ctx, req);
      quartet::v1::WatchCampaignResponse update;
      while (reader->Read(&update)) {
        failures = 0;
        last = update.campaign();
        have_last = true;
        if (json()) {
          std::cout << quartet::common::MessageToJson(last) << "\n" << std::flush;
        } else if (tty) {
          // One line redrawn in place, cut to the terminal so it never wraps.
          const auto& n = last.counts();
          const int64_t done = n.succeeded() + n.failed() + n.cancelled();
          meter.Observe(absl::Now(), done);
          std::string line = quartet::cli::ProgressLine(
              last, kWatchBarWidth, meter.EtaSeconds(last.config().budget() - done));
          const size_t columns = static_cast<size_t>(std::max(1, TerminalColumns() - 1));
          if (line.size() > columns) line.resize(columns);
          std::cout << "\r\033[K" << line << std::flush;
        } else {
          std::cout << quartet::cli::ProgressLine(last) << "\n" << std::flush;
        }
      }
      grpc::Status s = reader->Finish();
      const bool final = have_last && (last.state() == quartet::v1::CAMPAIGN_STATE_DONE ||
                                       last.state() == quartet::v1::CAMPAIGN_STATE_CANCELLED);
      if (final) {
        if (tty && !json()) std::cout << "\n";
        if (!json()) {
          std::cout << "campaign " << id << " " << quartet::cli::StateName(last.state()) << ": "
                    << last.counts().succeeded() << " succeeded, " << last.counts().failed()
                    << " failed, " << last.counts().cancelled() << " cancelled";
          if (last.counts().succeeded() > 0) {
            std::cout << "; best " << absl::StrFormat("%.4f", last.best_accuracy()) << " "
                      << quartet::cli::Combination(last.best_combination());
          }
          std::cout << "\n";
        }
        return last.state() == quartet::v1::CAMPAIGN_STATE_DONE ? kOk : kCancelled;
      }
      if (s.ok() || s.error_code() != grpc::StatusCode::UNAVAILABLE || ++failures > 30) {
        if (tty) std::cout << "\n";
        return s.ok() ? kOk : PrintError(s);
      }
      // The coordinator restarted or the network blinked: try again shortly (bounded).
      std::this_thread::sleep_for(std::chrono::seconds(2));
    }
  }

  int Coverage(int64_t id, bool pairs, const std::string& format, const std::string& path) {
    quartet::v1::GetCoverageReportRequest req;
    req.set_campaign_id(id);
    req.set_include_all_pairs(pairs);
    quartet::v1::GetCoverageReportResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->GetCoverageReport(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    const std::string text = format == "csv" ? quartet::cli::CoverageCsv(resp.report())
                             : format == "json"
                                 ? quartet::common::MessageToJson(resp.report(), true) + "\n"
                                 : quartet::cli::CoverageText(resp.report(), pairs);
    if (absl::Status e = Emit(text, path); !e.ok()) return PrintError(e);
    return kOk;
  }

  int Yield(int64_t id, int min_samples, int top, const std::string& format,
            const std::string& path) {
    quartet::v1::GetYieldReportRequest req;
    req.set_campaign_id(id);
    req.set_min_samples(min_samples);
    req.set_top(top);
    quartet::v1::GetYieldReportResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->GetYieldReport(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    std::string text = format == "csv" ? quartet::cli::YieldCsv(resp.report())
                       : format == "json"
                           ? quartet::common::MessageToJson(resp.report(), true) + "\n"
                           : quartet::cli::YieldText(resp.report());
    if (format != "csv" && format != "json") {
      // Layer-wise MoE campaigns: gradient noise by router, from the results.
      std::string noise;
      if (grpc::Status g = quartet::cli::GradientNoiseReport(Lister(), id, &noise); !g.ok()) {
        return PrintError(g);
      }
      text += noise;
    }
    if (absl::Status e = Emit(text, path); !e.ok()) return PrintError(e);
    return kOk;
  }

  int ReportHtml(int64_t id, const std::string& output) {
    auto written = quartet::cli::WriteCampaignReport(
        stub_.get(), [this](grpc::ClientContext* ctx) { conn_->Prepare(ctx, kCallTimeout); }, id,
        output);
    if (!written.ok()) return PrintError(written.status());
    if (output != "-") std::cerr << "wrote " << output << " (" << *written << " bytes)\n";
    return kOk;
  }

  int Top(int64_t id, int n, bool all_states) {
    quartet::v1::ListResultsRequest req;
    req.set_campaign_id(id);
    req.set_limit(n);
    if (all_states) {
      for (auto st :
           {quartet::v1::CANDIDATE_STATE_SUCCEEDED, quartet::v1::CANDIDATE_STATE_FAILED}) {
        req.add_states(st);
      }
    }
    quartet::v1::ListResultsResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->ListResults(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp, true) << "\n";
    } else {
      std::cout << quartet::cli::ResultsText({resp.candidates().begin(), resp.candidates().end()});
    }
    return kOk;
  }

  // campaign pause / resume.
  int SetPaused(int64_t id, bool pause) {
    quartet::v1::Campaign campaign;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s;
    if (pause) {
      quartet::v1::PauseCampaignRequest req;
      req.set_campaign_id(id);
      quartet::v1::PauseCampaignResponse resp;
      s = stub_->PauseCampaign(&ctx, req, &resp);
      campaign = resp.campaign();
    } else {
      quartet::v1::ResumeCampaignRequest req;
      req.set_campaign_id(id);
      quartet::v1::ResumeCampaignResponse resp;
      s = stub_->ResumeCampaign(&ctx, req, &resp);
      campaign = resp.campaign();
    }
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(campaign, true) << "\n";
    } else {
      std::cout << "campaign " << id << " " << quartet::cli::StateName(campaign.state()) << ": "
                << (pause ? "nothing more is leased; " : "leasing again; ")
                << campaign.counts().leased() << " running, " << campaign.counts().pending()
                << " pending\n";
    }
    return kOk;
  }

  // campaign update: only the flags given change.
  int Update(int64_t id, const CLI::App& cmd, int priority, int64_t budget) {
    quartet::v1::UpdateCampaignRequest req;
    req.set_campaign_id(id);
    if (cmd.count("--priority")) req.set_priority(priority);
    if (cmd.count("--budget")) req.set_budget(budget);
    if (!req.has_priority() && !req.has_budget()) {
      return PrintError(
          absl::InvalidArgumentError("campaign update: give --priority=N, --budget=N or both"));
    }
    quartet::v1::UpdateCampaignResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->UpdateCampaign(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    const auto& c = resp.campaign();
    if (json()) {
      std::cout << quartet::common::MessageToJson(c, true) << "\n";
    } else {
      std::cout << "campaign " << id << " updated: priority " << c.config().priority()
                << ", budget " << c.config().budget() << " (" << c.issued() << " issued), "
                << quartet::cli::StateName(c.state()) << "\n";
    }
    return kOk;
  }

  int Workers() {
    quartet::v1::ListWorkersResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->ListWorkers(&ctx, {}, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp, true) << "\n";
    } else {
      std::cout << quartet::cli::WorkersText({resp.workers().begin(), resp.workers().end()},
                                             absl::ToUnixMillis(absl::Now()));
    }
    return kOk;
  }

  int Drain(const std::string& worker_id, bool undo) {
    quartet::v1::DrainWorkerRequest req;
    req.set_worker_id(worker_id);
    req.set_undo(undo);
    quartet::v1::DrainWorkerResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx, kCallTimeout);
    grpc::Status s = stub_->DrainWorker(&ctx, req, &resp);
    if (!s.ok()) return PrintError(s);
    if (json()) {
      std::cout << quartet::common::MessageToJson(resp.worker(), true) << "\n";
    } else if (undo) {
      std::cout << "worker " << worker_id << " is no longer draining\n";
    } else {
      std::cout << "worker " << worker_id << " draining: it finishes "
                << resp.worker().current_size()
                << " running candidate(s), leases nothing more and exits\n";
    }
    return kOk;
  }

  // results export: every candidate of the campaign, paging through ListResults in id order.
  int Export(int64_t id, const std::string& format, const std::string& path, int page_size) {
    if (page_size < 1 || page_size > kMaxExportPageSize) {
      return PrintError(absl::InvalidArgumentError(
          absl::StrCat("--page-size: must be in [1, ", kMaxExportPageSize, "], got ", page_size)));
    }
    quartet::v1::GetCampaignRequest get;
    get.set_campaign_id(id);
    quartet::v1::GetCampaignResponse campaign;
    {
      grpc::ClientContext ctx;
      conn_->Prepare(&ctx, kCallTimeout);
      grpc::Status s = stub_->GetCampaign(&ctx, get, &campaign);
      if (!s.ok()) return PrintError(s);
    }
    std::vector<quartet::v1::CandidateSummary> all;
    int64_t after = 0;
    while (true) {
      quartet::v1::ListResultsRequest req;
      req.set_campaign_id(id);
      for (int st = quartet::v1::CANDIDATE_STATE_PENDING;
           st <= quartet::v1::CANDIDATE_STATE_CANCELLED; ++st) {
        req.add_states(static_cast<quartet::v1::CandidateState>(st));
      }
      req.set_by_accuracy(false);
      req.set_limit(page_size);
      req.set_after_candidate_id(after);
      quartet::v1::ListResultsResponse page;
      grpc::ClientContext ctx;
      conn_->Prepare(&ctx, kCallTimeout);
      grpc::Status s = stub_->ListResults(&ctx, req, &page);
      if (!s.ok()) return PrintError(s);
      for (const auto& c : page.candidates()) all.push_back(c);
      if (page.candidates_size() < page_size) break;
      after = page.candidates(page.candidates_size() - 1).candidate_id();
    }
    std::vector<std::string> axes;
    for (const auto& a : campaign.campaign().config().axes()) axes.push_back(a.path());
    const std::string text =
        format == "json" ? quartet::cli::ResultsJson(all) : quartet::cli::ResultsCsv(axes, all);
    if (absl::Status s = Emit(text, path); !s.ok()) return PrintError(s);
    if (!path.empty()) std::cerr << "exported " << all.size() << " candidates to " << path << "\n";
    return kOk;
  }

 private:
  Globals globals_;
  std::unique_ptr<ClientConnection> conn_;
  std::unique_ptr<quartet::v1::CampaignService::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quartetctl: submit and watch Quartet campaigns, read coverage, yield and results"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--coordinator", g.client.address, "Coordinator address (host:port)")
      ->envname("QUARTET_COORDINATOR")
      ->capture_default_str();
  app.add_option("--token-file", g.client.token_file,
                 "File whose first non-blank line is the bearer token (default: "
                 "$QUARTET_TOKEN). Submit, cancel, pause, resume, update and workers drain need "
                 "an admin token; the other commands a viewer or admin token");
  app.add_option("--tls-ca", g.client.tls_ca_file, "PEM root certificates: connect with TLS");
  app.add_option("--tls-client-cert", g.client.tls_client_cert_file,
                 "PEM client certificate, for a coordinator run with --tls_client_ca (needs "
                 "--tls-ca and --tls-client-key)");
  app.add_option("--tls-client-key", g.client.tls_client_key_file,
                 "PEM private key of --tls-client-cert");
  app.add_option("--format", g.format, "Output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  // campaign ...
  CLI::App* campaign =
      app.add_subcommand("campaign", "Submit, list, show, cancel, watch, pause, resume, update");
  campaign->require_subcommand(1);
  SubmitFlags sf;
  CLI::App* submit = campaign->add_subcommand("submit", "Submit a campaign (flags or a file)");
  submit->add_option("-f,--file", sf.file, "YAML or JSON CampaignConfig; flags override it");
  submit->add_option("--name", sf.name, "Campaign name");
  submit->add_option("--families", sf.pool, "Family pool (default: the 29 canonical families)")
      ->delimiter(',');
  submit->add_option("--exclude", sf.exclude, "Families removed from the pool")->delimiter(',');
  submit->add_option("--required", sf.required, "Families every candidate contains")
      ->delimiter(',');
  submit->add_option("-k", sf.k, "Experts per candidate (default 4)");
  submit->add_option("--sampler", sf.sampler,
                     "lexicographic, uniform, stratified (default), pair-covering, adaptive");
  submit->add_option("--budget", sf.budget, "Candidates to train");
  submit->add_option("--seed", sf.seed, "Sampler and training seed");
  submit->add_option("--repeats", sf.repeats, "Candidates per combination (default 1)");
  submit->add_option("--max-attempts", sf.max_attempts, "Leases per candidate (default 3)");
  submit->add_option("--priority", sf.priority, "Higher is leased first (default 0)");
  submit->add_option("--dataset", sf.dataset, "cifar10, mnist, fashion-mnist or synthetic");
  submit->add_option("--data-dir", sf.data_dir, "Dataset directory on the workers");
  submit->add_option("--train-limit", sf.train_limit, "Use only the first N training samples");
  submit->add_option("--test-limit", sf.test_limit, "Use only the first N test samples");
  submit->add_option("--epochs", sf.epochs, "Training epochs (default 1)");
  submit->add_option("--batch-size", sf.batch_size, "Batch size (default 32)");
  submit->add_option("--lr", sf.lr, "Learning rate (default 1e-3)");
  submit->add_option("--weight-decay", sf.weight_decay, "Weight decay (default 5e-4)");
  submit->add_option("--dropout", sf.dropout, "Expert dropout (default 0.2)");
  submit->add_option("--mixup-alpha", sf.mixup_alpha, "Mixup alpha, 0 = off (default 0.2)");
  submit->add_option("--label-smoothing", sf.label_smoothing, "Label smoothing (default 0.1)");
  submit->add_option("--input-size", sf.input_size, "Input side in px (default: automatic)");
  submit->add_option("--optimizer", sf.optimizer, "adamw (default) or sgd");
  submit->add_option("--router", sf.router, "dense (default), top-k or top-p");
  submit->add_option("--top-k", sf.top_k, "Experts per sample for top-k (default 2)");
  submit->add_option("--top-p", sf.top_p, "Probability mass for top-p (default 0.5)");
  submit->add_option("--time-budget", sf.time_budget, "Seconds per candidate attempt (0 = none)");
  submit->add_option("--axis", sf.axes,
                     "A parameter axis, repeatable: PATH=V1,V2,... (categorical) or "
                     "PATH=log:LO:HI[:STRATA] / PATH=linear:LO:HI[:STRATA] (continuous), e.g. "
                     "recipe.router=dense,top-k");
  submit->add_flag("--without-families", sf.without_families,
                   "No family axis: search the axes alone (no pool, k or required)");
  submit->add_flag("--watch", sf.watch, "Watch the campaign after submitting");
  submit->add_option("--rungs", sf.rungs, "ASHA rungs in epochs, e.g. 1,3,9 (multi-fidelity)")
      ->delimiter(',');
  submit->add_option("--eta", sf.eta, "ASHA promotion ratio: the top 1/eta go on (default 3)");
  submit->add_option("--min-epochs", sf.min_epochs, "First rung without --rungs (default 1)");
  submit->add_option("--max-epochs", sf.max_epochs, "Last rung: rungs are min x eta^i up to it");
  submit->add_option("--budget-epochs", sf.budget_epochs,
                     "Epochs the campaign may spend (default: budget x the last rung)");
  submit->add_flag("--no-coverage-guard", sf.no_guard,
                   "Let ASHA prune a family or pair entirely at rung 0");
  submit->add_option("--guard-min", sf.guard_min,
                     "Coverage guard: promotions kept per family and pair (default 1)");
  submit->add_option("--keep-checkpoints", sf.keep_checkpoints,
                     "Checkpoints kept of the best candidates (default 5)");

  std::string list_state;
  int list_limit = 0;
  CLI::App* list = campaign->add_subcommand("list", "List campaigns, newest first");
  list->add_option("--state", list_state, "Only campaigns in this state");
  list->add_option("--limit", list_limit, "At most this many (default 100)");

  int64_t id = 0;
  CLI::App* show = campaign->add_subcommand("show", "Show one campaign");
  show->add_option("id", id, "Campaign id")->required();
  CLI::App* cancel = campaign->add_subcommand("cancel", "Cancel a campaign");
  cancel->add_option("id", id, "Campaign id")->required();
  int interval_ms = 1000;
  CLI::App* watch = campaign->add_subcommand(
      "watch", "Live progress until the campaign ends (exit 0 done, 2 cancelled)");
  watch->add_option("id", id, "Campaign id")->required();
  watch->add_option("--interval-ms", interval_ms, "Update interval")->capture_default_str();

  CLI::App* pause = campaign->add_subcommand(
      "pause", "Lease nothing more from a campaign; running candidates finish (admin)");
  pause->add_option("id", id, "Campaign id")->required();
  CLI::App* resume = campaign->add_subcommand("resume", "Resume a paused campaign (admin)");
  resume->add_option("id", id, "Campaign id")->required();
  int new_priority = 0;
  int64_t new_budget = 0;
  CLI::App* update =
      campaign->add_subcommand("update", "Change a campaign's priority and budget (admin)");
  update->add_option("id", id, "Campaign id")->required();
  update->add_option("--priority", new_priority, "New priority (higher is leased first)");
  update->add_option("--budget", new_budget,
                     "New budget: at least the candidates issued; raising it issues more");

  // workers ...
  CLI::App* workers = app.add_subcommand("workers", "The fleet: list workers, drain one");
  workers->require_subcommand(0, 1);
  std::string worker_id;
  bool undo_drain = false;
  CLI::App* drain = workers->add_subcommand(
      "drain", "Let a worker finish what it holds, lease nothing more and exit 0 (admin)");
  drain->add_option("id", worker_id, "Worker id (as `quartetctl workers` lists it)")->required();
  drain->add_flag("--undo", undo_drain, "Clear the mark: the worker leases again");

  // report ...
  CLI::App* report = app.add_subcommand("report", "Coverage and yield reports");
  report->require_subcommand(1);
  bool pairs = false;
  // --format on report coverage / yield and results export overrides the global one; -o writes
  // to a file instead of stdout.
  std::string report_format, output;
  CLI::App* coverage = report->add_subcommand("coverage", "Coverage per family and pair");
  coverage->add_option("id", id, "Campaign id")->required();
  coverage->add_flag("--pairs", pairs, "Also list every pair");
  coverage->add_option("--format", report_format, "text, json or csv (RFC 4180)")
      ->check(CLI::IsMember({"text", "json", "csv"}));
  coverage->add_option("-o,--output", output, "Write to this file instead of stdout");
  int min_samples = 0, top = 0;
  CLI::App* yield = report->add_subcommand("yield", "Yield per family and pair");
  yield->add_option("id", id, "Campaign id")->required();
  yield->add_option("--min-samples", min_samples, "Successes needed to rank (default 3)");
  yield->add_option("--top", top, "Length of the ranked lists (default 5)");
  yield->add_option("--format", report_format, "text, json or csv (RFC 4180)")
      ->check(CLI::IsMember({"text", "json", "csv"}));
  yield->add_option("-o,--output", output, "Write to this file instead of stdout");

  std::string html_output;
  CLI::App* html = report->add_subcommand(
      "html", "The dashboard's campaign page as one self-contained HTML file");
  html->add_option("id", id, "Campaign id")->required();
  html->add_option("-o,--output", html_output, "File to write (- for stdout)")->required();

  // results ...
  CLI::App* results = app.add_subcommand("results", "Candidate results");
  results->require_subcommand(1);
  int n = 10;
  bool all_states = false;
  CLI::App* results_top = results->add_subcommand("top", "Best candidates by test accuracy");
  results_top->add_option("id", id, "Campaign id")->required();
  results_top->add_option("-n", n, "How many")->capture_default_str();
  results_top->add_flag("--with-failures", all_states, "Include failed candidates");

  std::string export_format = "csv";
  int page_size = kDefaultExportPageSize;
  CLI::App* results_export = results->add_subcommand(
      "export", "Every candidate of a campaign, one row each (CSV per RFC 4180, or JSON)");
  results_export->add_option("id", id, "Campaign id")->required();
  results_export->add_option("--format", export_format, "csv or json")
      ->check(CLI::IsMember({"csv", "json"}))
      ->capture_default_str();
  results_export->add_option("-o,--output", output, "Write to this file instead of stdout");
  results_export->add_option("--page-size", page_size, "Candidates per ListResults call")
      ->capture_default_str();
  bool export_model = false;
  results_export->add_flag(
      "--model", export_model,
      "ID is a candidate: write its trained model as TorchScript (implied by -o *.pt)");

  CLI::App* results_show = results->add_subcommand("show", "One candidate's result and analyses");
  results_show->add_option("id", id, "Candidate id")->required();
  CLI::App* analyses = report->add_subcommand("analyses", "Analyses by head or router, mean ± std");
  analyses->add_option("id", id, "Campaign id")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  Ctl ctl(g);
  if (absl::Status s = ctl.Connect(); !s.ok()) return PrintError(s);
  if (submit->parsed()) return ctl.Submit(sf, *submit);
  if (list->parsed()) return ctl.List(list_state, list_limit);
  if (show->parsed()) return ctl.Show(id);
  if (cancel->parsed()) return ctl.Cancel(id);
  if (watch->parsed()) return ctl.Watch(id, interval_ms);
  if (pause->parsed()) return ctl.SetPaused(id, true);
  if (resume->parsed()) return ctl.SetPaused(id, false);
  if (update->parsed()) return ctl.Update(id, *update, new_priority, new_budget);
  if (drain->parsed()) return ctl.Drain(worker_id, undo_drain);
  if (workers->parsed()) return ctl.Workers();
  const std::string format = report_format.empty() ? g.format : report_format;
  if (coverage->parsed()) return ctl.Coverage(id, pairs, format, output);
  if (yield->parsed()) return ctl.Yield(id, min_samples, top, format, output);
  if (results_export->parsed()) {
    if (export_model || absl::EndsWith(output, ".pt")) return ctl.ExportModel(id, output);
    return ctl.Export(id, export_format, output, page_size);
  }
  if (html->parsed()) return ctl.ReportHtml(id, html_output);
  if (results_top->parsed()) return ctl.Top(id, n, all_states);
  if (results_show->parsed()) return quartet::cli::RunResultsShow(ctl.Getter(), id, ctl.json());
  if (analyses->parsed()) return quartet::cli::RunReportAnalyses(ctl.Lister(), id, ctl.json());
  return kError;
}
