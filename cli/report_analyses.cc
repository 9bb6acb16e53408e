#include "cli/report_analyses.h"

#include <cmath>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/format.h"
#include "common/grpc_status.h"
#include "common/spec_io.h"

namespace quartet::cli {
namespace {

// All results of a campaign, any state, in candidate order.
grpc::Status ListAll(const ListResultsFn& list, int64_t campaign_id,
                     std::vector<quartet::v1::CandidateSummary>* out) {
  quartet::v1::ListResultsRequest req;
  req.set_campaign_id(campaign_id);
  req.set_by_accuracy(false);
  req.set_limit(100000);
  for (auto st : {quartet::v1::CANDIDATE_STATE_SUCCEEDED, quartet::v1::CANDIDATE_STATE_FAILED}) {
    req.add_states(st);
  }
  quartet::v1::ListResultsResponse resp;
  grpc::Status s = list(req, &resp);
  if (s.ok()) out->assign(resp.candidates().begin(), resp.candidates().end());
  return s;
}

int PrintGrpcError(const grpc::Status& s) {
  const absl::Status status = common::FromGrpcStatus(s);
  std::cerr << "quartetctl: error: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  return 1;
}

std::string Nums(const google::protobuf::RepeatedField<double>& v, const char* fmt = "%.4g") {
  std::vector<std::string> out;
  for (double x : v) out.push_back(absl::StrFormat(fmt, x));
  return absl::StrJoin(out, " ");
}

// "mean ± std" over the values (std with n - 1; "-" when empty).
std::string MeanStd(const std::vector<double>& v, const char* fmt = "%.4g") {
  if (v.empty()) return "-";
  double mean = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0;
  return absl::StrCat(absl::StrFormat(fmt, mean), " ± ", absl::StrFormat(fmt, sd));
}

// DYNAMOE: per-layer routing and per-step gradient norms of the last epoch, active parameters.
std::string LayerWiseText(const quartet::v1::Result& r) {
  if (r.epochs_size() == 0) return "";
  const quartet::v1::EpochMetrics& last = r.epochs(r.epochs_size() - 1);
  std::string out;
  if (last.layers_size() > 0) {
    absl::StrAppendFormat(&out, "active parameters per token %.0f of %d\n",
                          r.active_parameters_per_token(), r.parameter_count());
    std::vector<std::vector<std::string>> rows = {
        {"LAYER", "EXPERTS", "ACTIVE", "ACTIVE SHARES 1..E", "LOAD CV", "ENTROPY", "LOAD"}};
    for (const auto& l : last.layers()) {
      rows.push_back({absl::StrCat(l.layer()), absl::StrCat(l.experts()),
                      absl::StrFormat("%.2f", l.mean_active_experts()),
                      Nums(l.active_histogram(), "%.2f"), absl::StrFormat("%.3f", l.load_cv()),
                      absl::StrFormat("%.3f", l.routing_entropy()), Nums(l.expert_load(), "%.2f")});
    }
    absl::StrAppend(&out, "routing per layer (test, last epoch):\n", Table(rows));
  }
  if (last.gradient_norms_size() > 0) {
    std::vector<std::vector<std::string>> rows = {{"GROUP", "STEPS", "MEAN |g|", "STD", "CV"}};
    for (const auto& g : last.gradient_norms()) {
      rows.push_back({g.group(), absl::StrCat(g.steps()), absl::StrFormat("%.4g", g.mean()),
                      absl::StrFormat("%.4g", g.std()), absl::StrFormat("%.3f", g.cv())});
    }
    absl::StrAppend(&out, "per-step gradient norms (last epoch, before clipping):\n", Table(rows));
  }
  return out;
}

}  // namespace

// Multi-fidelity: the candidate's result at every rung it completed ("" without rungs).
std::string RungsText(const quartet::v1::CandidateSummary& c) {
  if (c.rungs().empty()) return "";
  std::vector<std::string> parts;
  for (const auto& r : c.rungs()) {
    parts.push_back(
        absl::StrFormat("rung %d (%d epochs) %.4f%s", r.rung(), r.epochs(), r.test_accuracy(),
                        r.promoted() ? (r.guard() ? " promoted (guard)" : " promoted") : ""));
  }
  return absl::StrCat("rungs: ", absl::StrJoin(parts, " | "), "\n");
}

// The run's resume, and the checkpoint and exported model kept for the candidate.
std::string ArtifactsText(const quartet::v1::CandidateSummary& c) {
  const quartet::v1::Result& r = c.result();
  std::string out;
  if (r.resumed_from_epoch() > 0) {
    absl::StrAppendFormat(&out, "resumed from its checkpoint at epoch %d, trained to epoch %d\n",
                          r.resumed_from_epoch(), r.epochs_trained());
  }
  if (!r.resume_error().empty()) {
    absl::StrAppend(&out, "resume failed, trained from scratch: ", r.resume_error(), "\n");
  }
  if (!r.checkpoint_error().empty()) {
    absl::StrAppend(&out, "checkpoint not written: ", r.checkpoint_error(), "\n");
  }
  for (const auto* a : {&c.checkpoint(), &c.exported_model()}) {
    if (a->uri().empty()) continue;
    absl::StrAppendFormat(&out, "%s: %s (%d bytes, epoch %d, sha256 %s)\n",
                          a == &c.checkpoint() ? "checkpoint" : "exported model", a->uri(),
                          a->size_bytes(), a->epoch(), a->sha256().substr(0, 16));
  }
  return out;
}

std::string CandidateDetailsText(const quartet::v1::CandidateSummary& c) {
  std::string out =
      absl::StrFormat("candidate %d (campaign %d): %s, repeat %d, %s, %d attempt(s)\n",
                      c.candidate_id(), c.campaign_id(), Combination(c.combination()), c.repeat(),
                      StateName(c.state()), c.attempts());
  absl::StrAppend(&out, RungsText(c));
  if (c.state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED &&
      c.state() != quartet::v1::CANDIDATE_STATE_STOPPED_EARLY) {
    absl::StrAppend(&out, "error: ", quartet::v1::ErrorClass_Name(c.error_class()), ": ",
                    c.error_message(), "\n");
    return out;
  }
  const quartet::v1::Result& r = c.result();
  absl::StrAppendFormat(&out,
                        "architecture: %s\ntest accuracy %.4f, test loss %.4f, %d parameters, "
                        "%d px, %s on %s\n",
                        r.architecture().empty() ? "MOE4" : r.architecture(), r.test_accuracy(),
                        r.test_loss(), r.parameter_count(), r.input_size(),
                        Duration(r.wall_seconds()), r.device());
  absl::StrAppend(&out, ArtifactsText(c));
  for (const auto& e : r.epochs()) {
    absl::StrAppendFormat(&out,
                          "  epoch %d: train loss %.4f acc %.4f | test loss %.4f acc %.4f | load "
                          "cv %.3f | entropy %.3f | active %.2f | load %s\n",
                          e.epoch(), e.train_loss(), e.train_accuracy(), e.test_loss(),
                          e.test_accuracy(), e.load_cv(), e.routing_entropy(),
                          e.mean_active_experts(), Nums(e.expert_load(), "%.3f"));
  }
  absl::StrAppend(&out, LayerWiseText(r));
  const auto& m = r.class_expert();
  if (m.classes() > 0 && m.experts() > 1 && m.probability_size() == m.classes() * m.experts()) {
    std::vector<std::vector<std::string>> rows = {{"CLASS"}};
    for (int e = 0; e < m.experts(); ++e) rows[0].push_back(absl::StrCat("E", e));
    for (int k = 0; k < m.classes(); ++k) {
      rows.push_back({absl::StrCat(k)});
      for (int e = 0; e < m.experts(); ++e) {
        rows.back().push_back(absl::StrFormat("%.3f", m.probability(k * m.experts() + e)));
      }
    }
    absl::StrAppend(&out, "class x expert mean gate probability (test):\n", Table(rows));
  }
  if (!r.has_analyses()) return out;
  const quartet::v1::Analyses& a = r.analyses();
  absl::StrAppendFormat(&out, "analyses (%d train / %d test samples, %s):\n", a.train_samples(),
                        a.test_samples(), Duration(a.seconds()));
  for (const auto& h : a.hessian()) {
    absl::StrAppendFormat(
        &out,
        "  hessian %s: eigenvalues %s (iterations %s; max %d, tol %g) | trace %.4g ± %.2g (%d "
        "probes) | %d parameters, seed %d, %d HVPs, %s\n",
        h.subset(), Nums(h.eigenvalues()), absl::StrJoin(h.eigenvalue_iterations(), " "),
        h.max_iterations(), h.tolerance(), h.trace(), h.trace_standard_error(), h.trace_samples(),
        h.parameter_count(), h.seed(), h.hvp_count(), Duration(h.seconds()));
  }
  if (a.has_curvature_sweep()) {
    absl::StrAppend(&out, "  curvature sweep (top eigenvector, alpha ",
                    Nums(a.curvature_sweep().alphas(), "%.2f"), "):\n    loss ",
                    Nums(a.curvature_sweep().losses()), "\n");
  }
  for (int i = 0; i < a.surface_1d_size(); ++i) {
    absl::StrAppend(&out, "  loss surface 1-D, direction ", i, ": loss ",
                    Nums(a.surface_1d(i).losses()), "\n");
  }
  if (a.has_surface_2d()) {
    const auto& g = a.surface_2d();
    double lo = INFINITY, hi = -INFINITY;
    for (double x : g.losses()) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    absl::StrAppendFormat(&out, "  loss surface 2-D: %d x %d points, loss %.4g to %.4g\n",
                          g.alphas_size(), g.alphas_size(), lo, hi);
  }
  if (a.has_efficiency()) {
    const auto& e = a.efficiency();
    absl::StrAppendFormat(&out,
                          "  efficiency: %d parameters (%.2f MB fp32), latency %.3f ± %.3f ms "
                          "(median %.3f) at batch %d over %d batches after %d warm-up, %.0f "
                          "images/s, peak memory %.0f MiB\n",
                          e.parameter_count(), e.fp32_megabytes(), e.latency_ms_mean(),
                          e.latency_ms_std(), e.latency_ms_median(), e.batch_size(),
                          e.timed_batches(), e.warmup_batches(), e.throughput_images_per_second(),
                          e.peak_memory_bytes() / 1048576.0);
  }
  if (a.gradient_variance_size() > 0) {
    std::vector<std::vector<std::string>> rows = {
        {"EPOCH", "GROUP", "PARAMS", "VARIANCE", "|MEAN GRAD|^2", "RELATIVE"}};
    for (const auto& g : a.gradient_variance()) {
      rows.push_back({absl::StrCat(g.epoch()), g.group(), absl::StrCat(g.parameter_count()),
                      absl::StrFormat("%.4g", g.variance()),
                      absl::StrFormat("%.4g", g.mean_gradient_norm_squared()),
                      absl::StrFormat("%.4g", g.relative_variance())});
    }
    absl::StrAppend(&out, "  gradient variance (K minibatches at each epoch's end):\n",
                    Table(rows));
  }
  return out;
}

std::string AnalysesReportText(const std::vector<quartet::v1::CandidateSummary>& results) {
  struct Group {
    int n = 0;
    std::vector<double> acc, eig_train, trace_train, eig_test, trace_test, latency, throughput,
        params;
  };
  std::map<std::string, Group> groups;
  for (const auto& c : results) {
    if (c.state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED) continue;
    const quartet::v1::Result& r = c.result();
    Group& g = groups[r.architecture().empty() ? "MOE4" : r.architecture()];
    ++g.n;
    g.acc.push_back(r.test_accuracy());
    g.params.push_back(static_cast<double>(r.parameter_count()));
    for (const auto& h : r.analyses().hessian()) {
      const bool train = h.subset() == "train";
      if (h.eigenvalues_size() > 0) (train ? g.eig_train : g.eig_test).push_back(h.eigenvalues(0));
      if (h.trace_samples() > 0) (train ? g.trace_train : g.trace_test).push_back(h.trace());
    }
    if (r.analyses().has_efficiency()) {
      g.latency.push_back(r.analyses().efficiency().latency_ms_mean());
      g.throughput.push_back(r.analyses().efficiency().throughput_images_per_second());
    }
  }
  if (groups.empty()) return "no succeeded candidates yet\n";
  std::vector<std::vector<std::string>> rows = {{"ARCHITECTURE", "N", "TEST ACC", "λmax TRAIN",
                                                 "TRACE TRAIN", "λmax TEST", "TRACE TEST",
                                                 "LATENCY MS", "IMAGES/S", "PARAMS"}};
  for (const auto& [name, g] : groups) {
    rows.push_back({name, absl::StrCat(g.n), MeanStd(g.acc, "%.4f"), MeanStd(g.eig_train),
                    MeanStd(g.trace_train), MeanStd(g.eig_test), MeanStd(g.trace_test),
                    MeanStd(g.latency, "%.3f"), MeanStd(g.throughput, "%.0f"),
                    MeanStd(g.params, "%.0f")});
  }
  return absl::StrCat(Table(rows),
                      "mean ± std (n - 1) over the succeeded candidates of each "
                      "architecture; \"-\" where none measured it\n");
}

namespace {

// The candidate's value on the axes that name its router and balance loss ("-" when neither).
std::string RouterKey(const quartet::v1::CandidateSummary& c) {
  std::vector<std::string> parts;
  for (const auto& a : c.axis_levels()) {
    if (a.path() == "recipe.router" || a.path() == "recipe.dynamoe_balance") {
      parts.push_back(a.value());
    }
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

// The last epoch's value of `group` in the result's gradient statistics; false when absent.
bool LastRelativeVariance(const quartet::v1::Result& r, const std::string& group, double* out) {
  int epoch = -1;
  for (const auto& g : r.analyses().gradient_variance()) {
    if (g.group() == group && g.epoch() > epoch) {
      epoch = g.epoch();
      *out = g.relative_variance();
    }
  }
  return epoch >= 0;
}

bool LastNormCv(const quartet::v1::Result& r, const std::string& group, double* out) {
  if (r.epochs_size() == 0) return false;
  for (const auto& g : r.epochs(r.epochs_size() - 1).gradient_norms()) {
    if (g.group() == group) {
      *out = g.cv();
      return true;
    }
  }
  return false;
}

}  // namespace

std::string GradientNoiseText(const std::vector<quartet::v1::CandidateSummary>& results) {
  struct Group {
    std::vector<double> acc, var_all, var_router, cv_all, cv_router, active, active_params;
  };
  std::map<std::string, Group> groups;
  bool any = false;
  for (const auto& c : results) {
    if (c.state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED) continue;
    const quartet::v1::Result& r = c.result();
    Group& g = groups[RouterKey(c)];
    g.acc.push_back(r.test_accuracy());
    double v;
    if (LastRelativeVariance(r, "all", &v)) g.var_all.push_back(v), any = true;
    if (LastRelativeVariance(r, "router", &v)) g.var_router.push_back(v);
    if (LastNormCv(r, "all", &v)) g.cv_all.push_back(v), any = true;
    if (LastNormCv(r, "router", &v)) g.cv_router.push_back(v);
    if (r.epochs_size() > 0 && r.epochs(r.epochs_size() - 1).layers_size() > 0) {
      double sum = 0;
      for (const auto& l : r.epochs(r.epochs_size() - 1).layers()) sum += l.mean_active_experts();
      g.active.push_back(sum / r.epochs(r.epochs_size() - 1).layers_size());
      g.active_params.push_back(r.active_parameters_per_token());
    }
  }
  if (!any) return "";
  std::vector<std::vector<std::string>> rows = {{"ROUTER", "N", "TEST ACC", "REL VAR ALL",
                                                 "REL VAR ROUTER", "NORM CV ALL", "NORM CV ROUTER",
                                                 "ACTIVE/LAYER", "ACTIVE PARAMS"}};
  for (const auto& [key, g] : groups) {
    rows.push_back({key, absl::StrCat(g.acc.size()), MeanStd(g.acc, "%.4f"), MeanStd(g.var_all),
                    MeanStd(g.var_router), MeanStd(g.cv_all, "%.3f"), MeanStd(g.cv_router, "%.3f"),
                    MeanStd(g.active, "%.2f"), MeanStd(g.active_params, "%.0f")});
  }
  return absl::StrCat(
      "\ngradient noise by router (last epoch; mean ± std over succeeded candidates)\n",
      Table(rows),
      "REL VAR: minibatch gradient variance / |mean gradient|^2 (K batches at fixed weights); "
      "NORM CV: std / mean of the per-step gradient norm\n");
}

grpc::Status GradientNoiseReport(const ListResultsFn& list, int64_t campaign_id, std::string* out) {
  std::vector<quartet::v1::CandidateSummary> all;
  grpc::Status s = ListAll(list, campaign_id, &all);
  if (s.ok()) *out = GradientNoiseText(all);
  return s;
}

int RunResultsShow(const GetCandidateFn& get, int64_t candidate_id, bool json) {
  quartet::v1::CandidateSummary c;
  if (grpc::Status s = get(candidate_id, &c); !s.ok()) return PrintGrpcError(s);
  std::cout << (json ? common::MessageToJson(c, true) + "\n" : CandidateDetailsText(c));
  return 0;
}

int RunReportAnalyses(const ListResultsFn& list, int64_t campaign_id, bool json) {
  std::vector<quartet::v1::CandidateSummary> all;
  if (grpc::Status s = ListAll(list, campaign_id, &all); !s.ok()) return PrintGrpcError(s);
  if (json) {
    quartet::v1::ListResultsResponse resp;
    for (const auto& c : all) *resp.add_candidates() = c;
    std::cout << common::MessageToJson(resp, true) << "\n";
  } else {
    std::cout << AnalysesReportText(all);
  }
  return 0;
}

}  // namespace quartet::cli
