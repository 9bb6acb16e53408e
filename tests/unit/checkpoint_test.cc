// Checkpoints, resume and TorchScript export through the trainer: a resumed run ends where an
// uninterrupted one does, bad checkpoints fall back to training from scratch, a full disk does not
// fail the run, and every architecture exports a module that predicts what the network does.
#include "worker/train/checkpoint.h"

#include <torch/script.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/artifacts.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/train/torch_trainer.h"

namespace quartet::worker::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kEpochs = 3;
constexpr int kFirstLeg = 1;

// A dense MoE4 on synthetic data with every source of randomness on: mixup (host generator),
// augmentation and shuffling (LibTorch's default generator), gate noise and dropout (the MoE4's
// own generators); AdamW (moments and step counts) and a warm-up + cosine schedule.
quartet::v1::CandidateSpec ResumeSpec() {
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(7);
  spec.set_campaign_id(3);
  spec.set_attempt(1);
  for (const char* f : {"ICNet", "DPN107"}) spec.mutable_combination()->add_families(f);
  spec.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  spec.mutable_data()->set_train_limit(128);
  spec.mutable_data()->set_test_limit(64);
  auto* r = spec.mutable_recipe();
  r->set_epochs(kEpochs);
  r->set_batch_size(16);
  r->set_learning_rate(3e-3);
  r->set_mixup_alpha(0.4);
  r->set_seed(11);
  return spec;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("ckpt-", ::getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<TorchTrainer> Trainer(int inject_errno = 0) {
    TorchTrainer::Options o;
    o.threads = 1;  // bitwise reproducible kernels
    o.artifacts_uri = root_.string();
    o.inject_artifact_write_errno = inject_errno;
    auto t = TorchTrainer::Create(o);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(*t);
  }

  quartet::v1::Result TrainOk(const quartet::v1::CandidateSpec& spec) {
    auto r = Trainer()->Train(spec, {});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : quartet::v1::Result();
  }

  fs::path root_;
};

CheckpointContents Contents(const quartet::v1::Artifact& a) {
  auto bytes = common::ReadArtifact(a);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  auto c = ReadCheckpoint(bytes.ok() ? *bytes : "");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : CheckpointContents();
}

TEST_F(CheckpointTest, ResumedRunEqualsAnUninterruptedOneExactly) {
  const quartet::v1::Result whole = TrainOk(ResumeSpec());
  quartet::v1::CandidateSpec first = ResumeSpec();
  first.mutable_fidelity()->set_stop_epoch(kFirstLeg);
  const quartet::v1::Result leg1 = TrainOk(first);
  ASSERT_TRUE(leg1.has_checkpoint());
  EXPECT_EQ(leg1.epochs_trained(), kFirstLeg);
  EXPECT_EQ(leg1.checkpoint().epoch(), kFirstLeg);
  EXPECT_EQ(leg1.checkpoint().attempt(), 1);
  EXPECT_THAT(leg1.checkpoint().uri(), HasSubstr("campaign-3/candidate-7/epoch-1-attempt-1.ckpt"));

  quartet::v1::CandidateSpec second = ResumeSpec();
  second.set_attempt(2);
  *second.mutable_fidelity()->mutable_resume_from() = leg1.checkpoint();
  const quartet::v1::Result leg2 = TrainOk(second);
  EXPECT_EQ(leg2.resume_error(), "");
  EXPECT_EQ(leg2.resumed_from_epoch(), kFirstLeg);
  EXPECT_EQ(leg2.epochs_trained(), kEpochs);
  ASSERT_EQ(leg2.epochs_size(), kEpochs - kFirstLeg);
  EXPECT_EQ(leg2.epochs(0).epoch(), kFirstLeg + 1);

  // Same metrics, same step count, and every parameter and buffer bit for bit.
  EXPECT_EQ(leg2.test_loss(), whole.test_loss());
  EXPECT_EQ(leg2.epochs(0).train_loss(), whole.epochs(kFirstLeg).train_loss());
  EXPECT_EQ(leg2.epochs(0).learning_rate(), whole.epochs(kFirstLeg).learning_rate());
  const CheckpointContents a = Contents(whole.checkpoint());
  const CheckpointContents b = Contents(leg2.checkpoint());
  EXPECT_EQ(a.position.step, b.position.step);
  ASSERT_EQ(a.model.size(), b.model.size());
  ASSERT_FALSE(a.model.empty());
  for (size_t i = 0; i < a.model.size(); ++i) {
    EXPECT_EQ(a.model[i].first, b.model[i].first);
    EXPECT_TRUE(torch::equal(a.model[i].second, b.model[i].second)) << a.model[i].first;
  }
}

TEST_F(CheckpointTest, MissingCorruptOrForeignCheckpointsTrainFromScratch) {
  quartet::v1::CandidateSpec first = ResumeSpec();
  first.mutable_fidelity()->set_stop_epoch(kFirstLeg);
  const quartet::v1::Result leg1 = TrainOk(first);
  ASSERT_TRUE(leg1.has_checkpoint());
  quartet::v1::CandidateSpec scratch = ResumeSpec();
  scratch.mutable_fidelity()->set_stop_epoch(kFirstLeg + 1);
  const quartet::v1::Result clean = TrainOk(scratch);

  quartet::v1::Artifact missing = leg1.checkpoint();
  missing.set_uri(missing.uri() + ".gone");
  quartet::v1::Artifact corrupt = leg1.checkpoint();
  corrupt.set_sha256(std::string(64, '0'));
  quartet::v1::CandidateSpec other = scratch;
  other.set_candidate_id(8);
  const std::vector<std::pair<quartet::v1::Artifact, std::string>> cases = {
      {missing, "missing"}, {corrupt, "SHA-256"}, {leg1.checkpoint(), "candidate 7"}};
  for (const auto& [artifact, why] : cases) {
    quartet::v1::CandidateSpec spec = why == "candidate 7" ? other : scratch;
    *spec.mutable_fidelity()->mutable_resume_from() = artifact;
    const quartet::v1::Result r = TrainOk(spec);
    EXPECT_THAT(r.resume_error(), HasSubstr(why));
    EXPECT_EQ(r.resumed_from_epoch(), 0);
    EXPECT_EQ(r.epochs_trained(), kFirstLeg + 1);
    ASSERT_EQ(r.epochs_size(), kFirstLeg + 1);
    // From scratch means exactly the fresh run (another candidate id trains the same seed).
    EXPECT_EQ(r.test_loss(), clean.test_loss()) << why;
  }
}

TEST_F(CheckpointTest, FullDiskLeavesArtifactsUnsetAndTheResultStands) {
  quartet::v1::CandidateSpec spec = ResumeSpec();
  spec.mutable_fidelity()->set_stop_epoch(kFirstLeg);
  auto r = Trainer(ENOSPC)->Train(spec, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_checkpoint());
  EXPECT_FALSE(r->has_exported_model());
  EXPECT_THAT(r->checkpoint_error(), HasSubstr("No space left on device"));
  EXPECT_GT(r->test_accuracy(), 0);
  // No partial file anywhere under the root.
  for (const auto& e : fs::recursive_directory_iterator(root_)) {
    EXPECT_FALSE(e.is_regular_file()) << e.path();
  }
}

// Analyses without further training: a spec resuming from a checkpoint at its own stop_epoch
// evaluates the stored model (the same test accuracy the training run reported) and runs the
// recipe's analyses on it, mid-schedule too; nothing is trained and nothing new is written.
TEST_F(CheckpointTest, AnalysesRunOnAStoredCheckpointWithoutTraining) {
  quartet::v1::CandidateSpec first = ResumeSpec();
  first.mutable_fidelity()->set_stop_epoch(kFirstLeg);
  int64_t trained_steps = 0;
  TrainCallbacks first_cb;
  first_cb.on_progress = [&](const TrainProgress& p) {
    trained_steps = std::max(trained_steps, p.step);
  };
  auto first_run = Trainer()->Train(first, first_cb);
  ASSERT_TRUE(first_run.ok()) << first_run.status();
  const quartet::v1::Result trained = *first_run;
  ASSERT_TRUE(trained.has_checkpoint());
  quartet::v1::CandidateSpec again = ResumeSpec();
  again.set_attempt(2);
  again.mutable_fidelity()->set_stop_epoch(kFirstLeg);
  *again.mutable_fidelity()->mutable_resume_from() = trained.checkpoint();
  auto* a = again.mutable_recipe()->mutable_analyses();
  a->set_hessian(true);
  a->set_hessian_top_k(1);
  a->set_hessian_max_iterations(3);
  a->set_hutchinson_samples(2);
  a->set_train_samples(16);
  a->set_test_samples(16);
  a->set_batch_size(16);
  int64_t steps = 0;
  TrainCallbacks cb;
  cb.on_progress = [&](const TrainProgress& p) { steps = std::max(steps, p.step); };
  auto r = Trainer()->Train(again, cb);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->resume_error().empty()) << r->resume_error();
  EXPECT_EQ(r->resumed_from_epoch(), kFirstLeg);
  EXPECT_EQ(r->epochs_trained(), kFirstLeg);
  EXPECT_DOUBLE_EQ(r->test_accuracy(), trained.test_accuracy());
  EXPECT_DOUBLE_EQ(r->test_loss(), trained.test_loss());
  ASSERT_EQ(r->analyses().hessian_size(), 2) << "train and test subsets";
  EXPECT_TRUE(std::isfinite(r->analyses().hessian(0).eigenvalues(0)));
  EXPECT_FALSE(r->has_checkpoint()) << "nothing new to keep";
  EXPECT_GT(trained_steps, 0);
  EXPECT_EQ(steps, trained_steps) << "no optimiser step was taken";
}

TEST_F(CheckpointTest, StopEpochOutsideTheScheduleIsABuildError) {
  quartet::v1::CandidateSpec spec = ResumeSpec();
  spec.mutable_fidelity()->set_stop_epoch(kEpochs + 1);
  auto r = Trainer()->Train(spec, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("fidelity.stop_epoch"));
}

struct ExportCase {
  const char* name;
  quartet::v1::Architecture architecture;
  quartet::v1::Router router;
  quartet::v1::HeadKind head;
  // HEADS: the backbone (slots need a spatial feature map).
  const char* backbone = "DPN107";
};

class ExportTest : public CheckpointTest, public ::testing::WithParamInterface<ExportCase> {};

// One epoch, then the export: the trainer refuses an export that does not reproduce the network's
// predictions on other images than the traced ones, so a set exported_model is the check passing.
TEST_P(ExportTest, ExportReproducesTheNetworkAndRecordsItsPreprocessing) {
  const ExportCase& c = GetParam();
  quartet::v1::CandidateSpec spec = ResumeSpec();
  auto* r = spec.mutable_recipe();
  r->set_epochs(1);
  r->set_architecture(c.architecture);
  r->set_router(c.router);
  if (c.router == quartet::v1::ROUTER_TOP_K) r->set_top_k(1);
  if (c.architecture == quartet::v1::ARCHITECTURE_HEADS) {
    spec.mutable_combination()->clear_families();
    spec.mutable_combination()->add_families(c.backbone);
    r->set_head(c.head);
    r->set_head_hidden(32);
  }
  if (c.architecture == quartet::v1::ARCHITECTURE_DYNAMOE) {
    spec.mutable_combination()->clear_families();
    r->set_dynamoe_schedule(quartet::v1::EXPERT_SCHEDULE_DESCENDING);
    r->set_dynamoe_layers(3);
    r->set_dynamoe_width(8);
    r->set_dynamoe_expert_hidden(8);
  }
  const quartet::v1::Result result = TrainOk(spec);
  EXPECT_EQ(result.checkpoint_error(), "");
  ASSERT_TRUE(result.has_exported_model());
  EXPECT_THAT(result.exported_model().uri(), HasSubstr("epoch-1-attempt-1.pt"));
  auto bytes = common::ReadArtifact(result.exported_model());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::istringstream in(*bytes);
  torch::jit::ExtraFilesMap extra{{"quartet.json", ""}};
  torch::jit::Module m = torch::jit::load(in, torch::kCPU, extra);
  const auto info = nlohmann::json::parse(extra["quartet.json"]);
  EXPECT_EQ(info["input_size"], 32);
  EXPECT_EQ(info["channels"], 3);
  EXPECT_EQ(info["candidate_id"], 7);
  EXPECT_EQ(info["architecture"], result.architecture());
  EXPECT_EQ(info["classes"].size(), 10u);
  EXPECT_EQ(info["preprocessing"]["mean"].size(), 3u);
  // Any batch size: 11 is neither the traced chunk nor a multiple of it.
  torch::NoGradGuard no_grad;
  const torch::Tensor out = m.forward({torch::randn({11, 3, 32, 32})}).toTensor();
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{11, 10}));
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, ExportTest,
    ::testing::Values(ExportCase{"Moe4Dense", quartet::v1::ARCHITECTURE_MOE4,
                                 quartet::v1::ROUTER_DENSE, quartet::v1::HEAD_KIND_UNSPECIFIED},
                      ExportCase{"Moe4TopK", quartet::v1::ARCHITECTURE_MOE4,
                                 quartet::v1::ROUTER_TOP_K, quartet::v1::HEAD_KIND_UNSPECIFIED},
                      ExportCase{"Moe4TopP", quartet::v1::ARCHITECTURE_MOE4,
                                 quartet::v1::ROUTER_TOP_P, quartet::v1::HEAD_KIND_UNSPECIFIED},
                      ExportCase{"HeadsDense", quartet::v1::ARCHITECTURE_HEADS,
                                 quartet::v1::ROUTER_UNSPECIFIED, quartet::v1::HEAD_KIND_DENSE},
                      ExportCase{"HeadsSparseMoE", quartet::v1::ARCHITECTURE_HEADS,
                                 quartet::v1::ROUTER_UNSPECIFIED,
                                 quartet::v1::HEAD_KIND_SPARSE_MOE},
                      ExportCase{"HeadsSlotsSoftMoE", quartet::v1::ARCHITECTURE_HEADS,
                                 quartet::v1::ROUTER_UNSPECIFIED,
                                 quartet::v1::HEAD_KIND_SLOTS_SOFT_MOE, "ResNet"},
                      ExportCase{"DynaMoEDynamic", quartet::v1::ARCHITECTURE_DYNAMOE,
                                 quartet::v1::ROUTER_DYNAMIC, quartet::v1::HEAD_KIND_UNSPECIFIED},
                      ExportCase{"DynaMoETopK", quartet::v1::ARCHITECTURE_DYNAMOE,
                                 quartet::v1::ROUTER_TOP_K, quartet::v1::HEAD_KIND_UNSPECIFIED}),
    [](const ::testing::TestParamInfo<ExportCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace quartet::worker::train
