// quartet-train: trains one candidate with no coordinator (debugging, benchmarks, one-off runs).
//
//   quartet-train --families=ResNet,ShuffleNet,MobileNetV3,RegNet --dataset=fashion-mnist
//   quartet-train --spec=candidate.yaml --output=result.json
//   quartet-train --architecture=heads --families=ResNet --head=sparse-moe --dataset=fashion-mnist
//   \
//       --analyses=hessian,curvature,efficiency
//   quartet-train --architecture=dynamoe --schedule=descending --router=dynamic \
//       --dataset=fashion-mnist --analyses=gradient-variance
//   quartet-train --families=ResNet,VGG --dataset=fashion-mnist --epochs=4 --stop_epoch=2 \
//       --artifacts=/tmp/artifacts
//   quartet-train ... --resume_from=/tmp/artifacts/campaign-0/candidate-0/epoch-2-attempt-0.ckpt
//   quartet-train ... --resume_from=...epoch-2-attempt-0.ckpt --stop_epoch=2 --analyses=hessian
//       (analyses on the stored model, no training)
//   quartet-train --list-families
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/artifacts.h"
#include "common/catalog.h"
#include "common/error_class.h"
#include "common/flag_names.h"
#include "common/logging.h"
#include "common/spec_io.h"
#include "worker/train/torch_trainer.h"

ABSL_FLAG(bool, list_families, false, "Print the family catalog, one family per line, and exit.");
ABSL_FLAG(std::string, spec, "", "CandidateSpec file (JSON or YAML); flags below override it.");
ABSL_FLAG(std::string, families, "", "Comma-separated families (experts), e.g. ResNet,VGG.");
ABSL_FLAG(std::string, dataset, "", "cifar10, mnist, fashion-mnist or synthetic.");
ABSL_FLAG(std::string, data_dir, "", "Dataset directory (default: the dataset's usual place).");
ABSL_FLAG(std::string, data_root, "/var/lib/quartet/data", "Root of dataset directories.");
ABSL_FLAG(int, train_limit, 0, "Use only the first N training samples (0 = all).");
ABSL_FLAG(int, test_limit, 0, "Use only the first N test samples (0 = all).");
ABSL_FLAG(int, epochs, 0, "Epochs (default 1).");
ABSL_FLAG(int, batch_size, 0, "Batch size (default 32).");
ABSL_FLAG(double, lr, 0, "Learning rate (default 1e-3).");
ABSL_FLAG(std::string, optimizer, "", "adamw or sgd.");
ABSL_FLAG(std::string, router, "", "dense, top-k, top-p or dynamic (dynamoe only).");
ABSL_FLAG(int, top_k, 0, "Experts per sample for top-k.");
ABSL_FLAG(double, top_p, 0, "Probability mass for top-p.");
ABSL_FLAG(int, input_size, 0, "Input side in px (default: automatic).");
ABSL_FLAG(double, mixup_alpha, -1, "Mixup alpha (0 = off; default 0.2).");
ABSL_FLAG(double, time_budget, 0, "Seconds before the run fails with TIMEOUT (0 = none).");
ABSL_FLAG(int64_t, seed, -1, "Seed (default 0).");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N.");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = every online CPU).");
ABSL_FLAG(bool, parallel_experts, true,
          "On CPU, run the gate and experts concurrently, one thread each (false: one after "
          "another on all threads).");
ABSL_FLAG(bool, cache_host_memory, true,
          "On CPU, keep freed memory in the process for reuse instead of unmapping large blocks "
          "(faster at large inputs; resident memory stays at its peak).");
ABSL_FLAG(std::string, architecture, "",
          "moe4 (default), heads (one backbone family + a head) or dynamoe (layer-wise MoE CNN, "
          "no families).");
ABSL_FLAG(std::string, schedule, "",
          "Expert schedule of --architecture=dynamoe: uniform (default), descending, ascending, "
          "pyramid, wave or hourglass.");
ABSL_FLAG(int, layers, 0, "MoE layers of dynamoe (default 4).");
ABSL_FLAG(int, min_experts, 0, "E_min of the dynamoe schedule (default 2).");
ABSL_FLAG(int, max_experts, 0, "E_max of the dynamoe schedule (default 8).");
ABSL_FLAG(std::string, balance, "",
          "Balance loss of dynamoe: none (default), switch or importance-cv2.");
ABSL_FLAG(std::string, head, "",
          "Head of --architecture=heads: dense (default), soft-moe, sparse-moe, hard-moe or "
          "slots-soft-moe.");
ABSL_FLAG(int, head_experts, 0, "Experts of a MoE head (default 8).");
ABSL_FLAG(int, head_top_k, 0, "Experts per sample of the sparse head (default 2).");
ABSL_FLAG(
    std::string, small_input_stem, "",
    "true or false: the backbone's 3x3 stride-1 stem without max-pool (heads; default true).");
ABSL_FLAG(std::string, analyses, "",
          "Comma-separated post-training analyses: hessian, curvature, surface, efficiency, "
          "gradient-variance, or all.");
ABSL_FLAG(int, analysis_samples, 0, "Train and test subset size of the analyses (default 2000).");
ABSL_FLAG(int, analysis_batch_size, 0, "Batch of the analysis passes (default 128).");
ABSL_FLAG(int, hessian_top_k, 0, "Hessian eigenvalues (default 5).");
ABSL_FLAG(int, hessian_iterations, 0, "Power-iteration limit per eigenvalue (default 100).");
ABSL_FLAG(int, hutchinson_samples, 0, "Hutchinson probes (default 100).");
ABSL_FLAG(int, surface_directions, 0, "Random 1-D loss-surface directions (default 5).");
ABSL_FLAG(int, surface_points, 0, "Points per 1-D loss-surface sweep (default 51).");
ABSL_FLAG(int, surface_points_2d, 0, "Points per side of the 2-D loss surface (default 51).");
ABSL_FLAG(int, latency_batches, 0, "Timed inference batches (default 200).");
ABSL_FLAG(int, latency_warmup_batches, 0, "Warm-up inference batches (default 30).");
ABSL_FLAG(int, latency_batch_size, 0, "Inference batch size (default 256).");
ABSL_FLAG(std::string, output, "", "Write the result as JSON to this file.");
ABSL_FLAG(std::string, artifacts, "",
          "Write the checkpoint and the TorchScript export under this directory or file:///URI "
          "(campaign-<C>/candidate-<ID>/epoch-<E>-attempt-<A>.{ckpt,pt}).");
ABSL_FLAG(int, stop_epoch, 0,
          "Stop after this many epochs of the --epochs schedule (the learning-rate schedule still "
          "spans --epochs; 0 = train them all).");
ABSL_FLAG(std::string, resume_from, "",
          "Continue from this checkpoint file (written earlier with --artifacts and the same "
          "spec).");
ABSL_FLAG(std::string, predictions_out, "",
          "Write the predicted class of each of the first 256 test images after the last epoch, "
          "one per line.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

namespace {

int Fail(absl::string_view message) {
  std::cerr << "quartet-train: " << message << "\n";
  return 1;
}

template <typename Enum>
bool ParseEnum(std::string value, const std::string& prefix,
               bool (*parse)(const std::string&, Enum*), Enum* out) {
  absl::AsciiStrToUpper(&value);
  absl::StrReplaceAll({{"-", "_"}}, &value);
  if (value == "FASHION_MNIST" || value == "FMNIST") value = "FASHION_MNIST";
  return parse(value, out) || parse(prefix + value, out);
}

void ListFamilies() {
  for (const auto& f : quartet::common::FamilyCatalog::Get().families()) {
    const auto& v = f.default_variant();
    std::vector<std::string> variants;
    for (const auto& x : f.variants) variants.emplace_back(x.name);
    std::cout << absl::StrFormat(
        "%-18s variants=%s min_input=%d native32=%s one_channel=%s params=%d  %s\n", f.name,
        absl::StrJoin(variants, ","), v.min_input_size, v.native_32 ? "yes" : "no",
        v.supports_one_channel ? "yes" : "no", v.cifar_parameters, v.note);
  }
}

// --schedule, --layers, --min_experts, --max_experts, --balance; an error message or "".
std::string ApplyDynaMoEFlags(quartet::v1::TrainingRecipe* r) {
  if (!absl::GetFlag(FLAGS_schedule).empty()) {
    quartet::v1::ExpertSchedule s;
    if (!ParseEnum<quartet::v1::ExpertSchedule>(absl::GetFlag(FLAGS_schedule), "EXPERT_SCHEDULE_",
                                                &quartet::v1::ExpertSchedule_Parse, &s)) {
      return "--schedule: not one of uniform, descending, ascending, pyramid, wave, hourglass";
    }
    r->set_dynamoe_schedule(s);
  }
  if (!absl::GetFlag(FLAGS_balance).empty()) {
    quartet::v1::BalanceLoss b;
    if (!ParseEnum<quartet::v1::BalanceLoss>(absl::GetFlag(FLAGS_balance), "BALANCE_LOSS_",
                                             &quartet::v1::BalanceLoss_Parse, &b)) {
      return "--balance: not one of none, switch, importance-cv2";
    }
    r->set_dynamoe_balance(b);
  }
  if (int n = absl::GetFlag(FLAGS_layers)) r->set_dynamoe_layers(n);
  if (int n = absl::GetFlag(FLAGS_min_experts)) r->set_dynamoe_min_experts(n);
  if (int n = absl::GetFlag(FLAGS_max_experts)) r->set_dynamoe_max_experts(n);
  return "";
}

// The artifact of a checkpoint file named on the command line: its absolute URI, size and hash.
absl::StatusOr<quartet::v1::Artifact> LocalArtifact(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--resume_from: cannot read ", path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  quartet::v1::Artifact a;
  a.set_uri(absl::StrCat("file://", std::filesystem::absolute(path).lexically_normal().string()));
  a.set_size_bytes(static_cast<int64_t>(bytes.str().size()));
  a.set_sha256(quartet::common::Sha256Hex(bytes.str()));
  return a;
}

constexpr int kPredictionImages = 256;

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> normalized_flags;
  quartet::common::ParseFlags(
      argc, argv,
      "quartet-train --families=A,B,C,D --dataset=fashion-mnist [--output=result.json]\n"
      "Trains one MoE candidate locally. --list-families prints the catalog.",
      normalized_flags);
  if (absl::GetFlag(FLAGS_list_families)) {
    ListFamilies();
    return 0;
  }
  if (auto s = quartet::common::InitLogging("train", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    return Fail(s.message());
  }

  quartet::v1::CandidateSpec spec;
  if (!absl::GetFlag(FLAGS_spec).empty()) {
    if (auto s = quartet::common::ReadMessageFile(absl::GetFlag(FLAGS_spec), &spec); !s.ok()) {
      return Fail(s.message());
    }
  }
  if (!absl::GetFlag(FLAGS_families).empty()) {
    spec.mutable_combination()->clear_families();
    for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_families), ',')) {
      spec.mutable_combination()->add_families(std::string(absl::StripAsciiWhitespace(f)));
    }
  }
  auto* r = spec.mutable_recipe();
  if (!absl::GetFlag(FLAGS_architecture).empty()) {
    quartet::v1::Architecture a;
    if (!ParseEnum<quartet::v1::Architecture>(absl::GetFlag(FLAGS_architecture), "ARCHITECTURE_",
                                              &quartet::v1::Architecture_Parse, &a)) {
      return Fail("--architecture: not one of moe4, heads, dynamoe");
    }
    r->set_architecture(a);
  }
  const bool heads = r->architecture() == quartet::v1::ARCHITECTURE_HEADS;
  const bool dynamoe = r->architecture() == quartet::v1::ARCHITECTURE_DYNAMOE;
  if (heads && spec.combination().families_size() != 1) {
    return Fail("--families: --architecture=heads takes exactly 1 family (the backbone)");
  }
  if (dynamoe && spec.combination().families_size() != 0) {
    return Fail("--families: --architecture=dynamoe builds its own network; name no families");
  }
  if (const std::string error = ApplyDynaMoEFlags(r); !error.empty()) return Fail(error);
  if (!heads && !dynamoe && spec.combination().families_size() < 2) {
    return Fail("--families: name at least 2 families (quartet-train --list-families lists them)");
  }
  if (!absl::GetFlag(FLAGS_head).empty()) {
    quartet::v1::HeadKind h;
    if (!ParseEnum<quartet::v1::HeadKind>(absl::GetFlag(FLAGS_head), "HEAD_KIND_",
                                          &quartet::v1::HeadKind_Parse, &h)) {
      return Fail("--head: not one of dense, soft-moe, sparse-moe, hard-moe, slots-soft-moe");
    }
    r->set_head(h);
  }
  if (absl::GetFlag(FLAGS_head_experts)) r->set_head_experts(absl::GetFlag(FLAGS_head_experts));
  if (absl::GetFlag(FLAGS_head_top_k)) r->set_head_top_k(absl::GetFlag(FLAGS_head_top_k));
  if (!absl::GetFlag(FLAGS_small_input_stem).empty()) {
    const std::string v = absl::AsciiStrToLower(absl::GetFlag(FLAGS_small_input_stem));
    if (v != "true" && v != "false") return Fail("--small_input_stem: true or false");
    r->set_head_small_input_stem(v == "true");
  }
  auto* an = r->mutable_analyses();
  for (absl::string_view a :
       absl::StrSplit(absl::GetFlag(FLAGS_analyses), ',', absl::SkipEmpty())) {
    const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(a));
    const bool all = name == "all";
    bool known = all;
    if (all || name == "hessian") an->set_hessian(known = true);
    if (all || name == "curvature") an->set_curvature_sweep(known = true);
    if (all || name == "surface") an->set_loss_surface(known = true);
    if (all || name == "efficiency") an->set_efficiency(known = true);
    if (all || name == "gradient-variance") an->set_gradient_variance(known = true);
    if (!known) {
      return Fail(absl::StrCat("--analyses: '", name,
                               "' is not one of hessian, curvature, surface, efficiency, "
                               "gradient-variance, all"));
    }
  }
  if (int n = absl::GetFlag(FLAGS_analysis_samples)) {
    an->set_train_samples(n);
    an->set_test_samples(n);
  }
  if (int n = absl::GetFlag(FLAGS_analysis_batch_size)) an->set_batch_size(n);
  if (int n = absl::GetFlag(FLAGS_hessian_top_k)) an->set_hessian_top_k(n);
  if (int n = absl::GetFlag(FLAGS_hessian_iterations)) an->set_hessian_max_iterations(n);
  if (int n = absl::GetFlag(FLAGS_hutchinson_samples)) an->set_hutchinson_samples(n);
  if (int n = absl::GetFlag(FLAGS_surface_directions)) an->set_surface_directions(n);
  if (int n = absl::GetFlag(FLAGS_surface_points)) an->set_surface_points(n);
  if (int n = absl::GetFlag(FLAGS_surface_points_2d)) an->set_surface_points_2d(n);
  if (int n = absl::GetFlag(FLAGS_latency_batches)) an->set_latency_batches(n);
  if (int n = absl::GetFlag(FLAGS_latency_warmup_batches)) an->set_latency_warmup_batches(n);
  if (int n = absl::GetFlag(FLAGS_latency_batch_size)) an->set_latency_batch_size(n);
  auto* data = spec.mutable_data();
  if (!absl::GetFlag(FLAGS_dataset).empty()) {
    quartet::v1::Dataset d;
    if (!ParseEnum<quartet::v1::Dataset>(absl::GetFlag(FLAGS_dataset), "DATASET_",
                                         &quartet::v1::Dataset_Parse, &d)) {
      return Fail(absl::StrCat("--dataset: '", absl::GetFlag(FLAGS_dataset),
                               "' is not one of cifar10, mnist, fashion-mnist, synthetic"));
    }
    data->set_dataset(d);
  }
  if (data->dataset() == quartet::v1::DATASET_UNSPECIFIED) {
    return Fail("--dataset: required (cifar10, mnist, fashion-mnist or synthetic)");
  }
  if (!absl::GetFlag(FLAGS_data_dir).empty()) data->set_data_dir(absl::GetFlag(FLAGS_data_dir));
  if (absl::GetFlag(FLAGS_train_limit)) data->set_train_limit(absl::GetFlag(FLAGS_train_limit));
  if (absl::GetFlag(FLAGS_test_limit)) data->set_test_limit(absl::GetFlag(FLAGS_test_limit));
  if (absl::GetFlag(FLAGS_epochs)) r->set_epochs(absl::GetFlag(FLAGS_epochs));
  if (absl::GetFlag(FLAGS_batch_size)) r->set_batch_size(absl::GetFlag(FLAGS_batch_size));
  if (absl::GetFlag(FLAGS_lr) > 0) r->set_learning_rate(absl::GetFlag(FLAGS_lr));
  if (absl::GetFlag(FLAGS_top_k)) r->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (absl::GetFlag(FLAGS_top_p) > 0) r->set_top_p(absl::GetFlag(FLAGS_top_p));
  if (absl::GetFlag(FLAGS_input_size)) r->set_input_size(absl::GetFlag(FLAGS_input_size));
  if (absl::GetFlag(FLAGS_mixup_alpha) >= 0) r->set_mixup_alpha(absl::GetFlag(FLAGS_mixup_alpha));
  if (absl::GetFlag(FLAGS_time_budget) > 0) {
    r->set_time_budget_seconds(absl::GetFlag(FLAGS_time_budget));
  }
  if (absl::GetFlag(FLAGS_seed) >= 0) r->set_seed(absl::GetFlag(FLAGS_seed));
  if (!absl::GetFlag(FLAGS_optimizer).empty()) {
    quartet::v1::Optimizer o;
    if (!ParseEnum<quartet::v1::Optimizer>(absl::GetFlag(FLAGS_optimizer), "OPTIMIZER_",
                                           &quartet::v1::Optimizer_Parse, &o)) {
      return Fail("--optimizer: not one of adamw, sgd");
    }
    r->set_optimizer(o);
  }
  if (!absl::GetFlag(FLAGS_router).empty()) {
    quartet::v1::Router ro;
    if (!ParseEnum<quartet::v1::Router>(absl::GetFlag(FLAGS_router), "ROUTER_",
                                        &quartet::v1::Router_Parse, &ro)) {
      return Fail("--router: not one of dense, top-k, top-p, dynamic");
    }
    r->set_router(ro);
  }

  if (absl::GetFlag(FLAGS_stop_epoch)) {
    spec.mutable_fidelity()->set_stop_epoch(absl::GetFlag(FLAGS_stop_epoch));
  }
  if (!absl::GetFlag(FLAGS_resume_from).empty()) {
    auto from = LocalArtifact(absl::GetFlag(FLAGS_resume_from));
    if (!from.ok()) return Fail(from.status().message());
    *spec.mutable_fidelity()->mutable_resume_from() = *from;
  }

  quartet::worker::train::TorchTrainer::Options topts;
  if (const std::string root = absl::GetFlag(FLAGS_artifacts); !root.empty()) {
    auto store = quartet::common::ArtifactStore::Open(root);
    absl::Status usable = store.ok() ? store->CheckWritable() : store.status();
    if (!usable.ok()) return Fail(absl::StrCat("--artifacts=", root, ": ", usable.message()));
    topts.artifacts_uri = store->uri();
  }
  if (!absl::GetFlag(FLAGS_predictions_out).empty()) {
    topts.keep_test_predictions = kPredictionImages;
  }
  topts.device = absl::GetFlag(FLAGS_device);
  topts.data_root = absl::GetFlag(FLAGS_data_root);
  topts.threads = absl::GetFlag(FLAGS_threads);
  topts.parallel_experts = absl::GetFlag(FLAGS_parallel_experts);
  topts.cache_host_memory = absl::GetFlag(FLAGS_cache_host_memory);
  auto trainer = quartet::worker::train::TorchTrainer::Create(topts);
  if (!trainer.ok()) return Fail(trainer.status().message());

  const bool tty = isatty(STDERR_FILENO);
  quartet::worker::train::TrainCallbacks callbacks;
  callbacks.on_progress = [&](const quartet::worker::train::TrainProgress& p) {
    const int width = 30;
    const double frac = p.total_steps ? static_cast<double>(p.step) / p.total_steps : 0;
    const int filled = static_cast<int>(frac * width);
    std::string line =
        absl::StrFormat("[%s%s] step %d/%d epoch %d", std::string(filled, '#'),
                        std::string(width - filled, '.'), p.step, p.total_steps, p.epoch);
    if (tty) {
      std::cerr << "\r\033[K" << line << std::flush;
      if (p.step == p.total_steps) std::cerr << "\n";
    }
  };
  auto result = (*trainer)->Train(spec, callbacks);
  if (!result.ok()) {
    return Fail(
        absl::StrCat(quartet::v1::ErrorClass_Name(quartet::common::ErrorClassOf(result.status())),
                     ": ", result.status().message()));
  }
  if (!absl::GetFlag(FLAGS_predictions_out).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_predictions_out));
    for (int64_t p : (*trainer)->LastTestPredictions()) out << p << "\n";
    if (!out) return Fail(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_predictions_out)));
  }
  if (!result->resume_error().empty()) {
    std::cerr << "quartet-train: not resumed (trained from scratch): " << result->resume_error()
              << "\n";
  }
  if (!result->checkpoint_error().empty()) {
    std::cerr << "quartet-train: artifacts: " << result->checkpoint_error() << "\n";
  }
  for (const auto* a : {&result->checkpoint(), &result->exported_model()}) {
    if (!a->uri().empty())
      std::cout << "wrote " << a->uri() << " (" << a->size_bytes() << " bytes)\n";
  }
  const std::string json = quartet::common::MessageToJson(*result, true);
  if (!absl::GetFlag(FLAGS_output).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_output));
    out << json << "\n";
    if (!out) return Fail(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_output)));
  }
  std::cout << absl::StrFormat("test accuracy %.4f, test loss %.4f, %.1f s, %d parameters, %d px\n",
                               result->test_accuracy(), result->test_loss(), result->wall_seconds(),
                               result->parameter_count(), result->input_size());
  for (const auto& e : result->epochs()) {
    std::cout << absl::StrFormat(
        "  epoch %d: train loss %.4f acc %.4f | test loss %.4f acc %.4f | %.1f samples/s | "
        "load cv %.3f | entropy %.3f | active %.2f | T %.3f | peak %.0f MiB\n",
        e.epoch(), e.train_loss(), e.train_accuracy(), e.test_loss(), e.test_accuracy(),
        e.samples_per_second(), e.load_cv(), e.routing_entropy(), e.mean_active_experts(),
        e.gate_temperature(), e.peak_memory_bytes() / 1048576.0);
  }
  const auto& an_out = result->analyses();
  for (const auto& h : an_out.hessian()) {
    std::cout << absl::StrFormat(
        "  hessian %s (%d samples): eigenvalues %s | trace %.4g +- %.2g | %d HVPs in %.1f s\n",
        h.subset(), h.samples(), absl::StrJoin(h.eigenvalues(), ", "), h.trace(),
        h.trace_standard_error(), h.hvp_count(), h.seconds());
  }
  if (an_out.has_efficiency()) {
    const auto& e = an_out.efficiency();
    std::cout << absl::StrFormat(
        "  efficiency: %d parameters (%.2f MB fp32), latency %.2f +- %.2f ms (median %.2f) at "
        "batch %d, %.0f images/s, peak %.0f MiB\n",
        e.parameter_count(), e.fp32_megabytes(), e.latency_ms_mean(), e.latency_ms_std(),
        e.latency_ms_median(), e.batch_size(), e.throughput_images_per_second(),
        e.peak_memory_bytes() / 1048576.0);
  }
  if (an_out.seconds() > 0) {
    std::cout << absl::StrFormat("  analyses: %.1f s\n", an_out.seconds());
  }
  return 0;
}
