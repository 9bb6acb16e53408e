// CoordinatorCore on a MemoryStore and a FakeClock: validation, issuing, the lease protocol,
// expiry, cancellation, restart, and the reports.
#include <cmath>
#include <map>
#include <set>

#include "common/catalog.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/core/memory_estimate.h"
#include "coordinator/storage/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::coordinator {
namespace {

using quartet::v1::CampaignConfig;
using ::testing::HasSubstr;

CampaignConfig SmallConfig(int64_t budget = 6) {
  CampaignConfig c;
  c.set_name("small");
  for (const char* f : {"AirNet", "BagNet", "ResNet", "ShuffleNet", "VGG"}) c.add_pool(f);
  c.set_k(3);
  c.set_budget(budget);
  c.set_seed(7);
  c.mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  return c;
}

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override { core_ = MakeCore(); }

  std::unique_ptr<CoordinatorCore> MakeCore(int issue_ahead = 2) {
    CoordinatorCore::Options o;
    o.lease = absl::Seconds(30);
    o.issue_ahead = issue_ahead;
    auto core = CoordinatorCore::Create(o, &store_, &clock_);
    EXPECT_TRUE(core.ok()) << core.status();
    return std::move(*core);
  }

  std::string Register(CoordinatorCore& core) {
    quartet::v1::RegisterWorkerRequest r;
    r.set_host("test");
    auto resp = core.RegisterWorker(r);
    EXPECT_TRUE(resp.ok());
    secrets_[resp->worker_id()] = resp->session_secret();
    return resp->worker_id();
  }

  quartet::v1::LeaseCandidateResponse Lease(CoordinatorCore& core, const std::string& worker) {
    quartet::v1::LeaseCandidateRequest req;
    req.set_worker_id(worker);
    req.set_session_secret(secrets_[worker]);
    auto resp = core.LeaseCandidate(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return *resp;
  }

  absl::Status Complete(CoordinatorCore& core, const std::string& worker,
                        const quartet::v1::LeaseCandidateResponse& lease, double accuracy) {
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(worker);
    req.set_session_secret(secrets_[worker]);
    req.set_candidate_id(lease.lease().candidate_id());
    req.set_lease_token(lease.lease().lease_token());
    req.mutable_result()->set_test_accuracy(accuracy);
    req.mutable_result()->set_wall_seconds(3);
    return core.CompleteCandidate(req);
  }

  MemoryStore store_;
  common::FakeClock clock_;
  std::unique_ptr<CoordinatorCore> core_;
  // Session secret of every worker registered through Register().
  std::map<std::string, std::string> secrets_;
};

TEST_F(CoreTest, BadCampaignsAreRefusedNamingTheFieldAndStoreNothing) {
  struct Case {
    const char* field;
    std::function<void(CampaignConfig&)> spoil;
  };
  const std::vector<Case> cases = {
      {"name", [](CampaignConfig& c) { c.set_name(""); }},
      {"pool", [](CampaignConfig& c) { c.add_pool("NoSuchNet"); }},
      {"pool", [](CampaignConfig& c) { c.add_pool("ResNet"); }},  // listed twice
      {"exclude", [](CampaignConfig& c) { c.add_exclude("AlexNet"); }},
      {"required", [](CampaignConfig& c) { c.add_required("DenseNet"); }},
      {"required",
       [](CampaignConfig& c) {
         for (const char* f : {"AirNet", "BagNet", "ResNet"}) c.add_required(f);
       }},
      {"k", [](CampaignConfig& c) { c.set_k(-1); }},
      {"k", [](CampaignConfig& c) { c.set_k(6); }},
      {"budget", [](CampaignConfig& c) { c.set_budget(11); }},  // C(5,3) = 10
      {"budget", [](CampaignConfig& c) { c.set_budget(-1); }},
      {"repeats", [](CampaignConfig& c) { c.set_repeats(-2); }},
      {"recipe.learning_rate",
       [](CampaignConfig& c) { c.mutable_recipe()->set_learning_rate(std::nan("")); }},
      {"recipe.weight_decay", [](CampaignConfig& c) { c.mutable_recipe()->set_weight_decay(-1); }},
      {"recipe.mixup_alpha", [](CampaignConfig& c) { c.mutable_recipe()->set_mixup_alpha(-0.5); }},
      {"recipe.batch_size", [](CampaignConfig& c) { c.mutable_recipe()->set_batch_size(1); }},
      {"recipe.top_k",
       [](CampaignConfig& c) {
         c.mutable_recipe()->set_router(quartet::v1::ROUTER_TOP_K);
         c.mutable_recipe()->set_top_k(4);
       }},
      {"recipe.input_size",
       [](CampaignConfig& c) {
         c.add_pool("AlexNet");
         c.mutable_recipe()->set_input_size(32);
       }},
      {"data.dataset", [](CampaignConfig& c) { c.mutable_data()->clear_dataset(); }},
      {"adaptive.exploration_share",
       [](CampaignConfig& c) { c.mutable_adaptive()->set_exploration_share(1.5); }},
      {"fidelity.rung_epochs",
       [](CampaignConfig& c) {
         for (int e : {1, 3, 3}) c.mutable_fidelity()->add_rung_epochs(e);
       }},
      {"fidelity.rung_epochs", [](CampaignConfig& c) { c.mutable_fidelity()->add_rung_epochs(0); }},
      {"fidelity.eta",
       [](CampaignConfig& c) {
         c.mutable_fidelity()->set_max_epochs(9);
         c.mutable_fidelity()->set_eta(1);
       }},
      {"fidelity.max_epochs", [](CampaignConfig& c) { c.mutable_fidelity()->set_eta(3); }},
      {"fidelity.budget_epochs",
       [](CampaignConfig& c) {
         for (int e : {2, 6}) c.mutable_fidelity()->add_rung_epochs(e);
         c.mutable_fidelity()->set_budget_epochs(1);
       }},
      {"keep_best_checkpoints", [](CampaignConfig& c) { c.set_keep_best_checkpoints(-1); }},
  };
  for (const Case& tc : cases) {
    CampaignConfig c = SmallConfig();
    tc.spoil(c);
    auto r = core_->SubmitCampaign(c);
    ASSERT_FALSE(r.ok()) << tc.field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << tc.field;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(tc.field)) << r.status();
  }
  EXPECT_TRUE(store_.ListCampaigns({}, 0)->empty());
}

TEST_F(CoreTest, SubmitFillsDefaultsAndIssuesAhead) {
  CampaignConfig c;
  c.set_name("defaults");
  c.set_budget(100);
  c.mutable_data()->set_dataset(quartet::v1::DATASET_FASHION_MNIST);
  auto campaign = core_->SubmitCampaign(c);
  ASSERT_TRUE(campaign.ok()) << campaign.status();
  EXPECT_EQ(campaign->config().pool_size(), 29);
  EXPECT_EQ(campaign->config().k(), 4);
  EXPECT_EQ(campaign->space_size(), 23751u);
  EXPECT_EQ(campaign->config().sampler(), quartet::v1::SAMPLER_KIND_STRATIFIED);
  EXPECT_EQ(campaign->config().repeats(), 1);
  EXPECT_EQ(campaign->config().max_attempts(), 3);
  EXPECT_DOUBLE_EQ(campaign->config().recipe().learning_rate(), 1e-3);
  EXPECT_EQ(campaign->config().recipe().batch_size(), 32);
  EXPECT_EQ(campaign->issued(), 2);  // issue_ahead
  EXPECT_EQ(campaign->counts().pending(), 2);
  EXPECT_EQ(campaign->state(), quartet::v1::CAMPAIGN_STATE_RUNNING);
}

TEST_F(CoreTest, RunsACampaignToDoneWithConsistentCoverage) {
  auto campaign = core_->SubmitCampaign(SmallConfig(6));
  ASSERT_TRUE(campaign.ok());
  const std::string w = Register(*core_);
  std::set<uint64_t> ranks;
  std::map<std::string, std::vector<double>> family_accuracies;
  for (int i = 0; i < 6; ++i) {
    auto lease = Lease(*core_, w);
    ASSERT_TRUE(lease.has_lease()) << i;
    for (const auto& f : lease.spec().combination().families()) {
      family_accuracies[f].push_back(0.1 * (i + 1));
    }
    EXPECT_EQ(lease.spec().combination().families_size(), 3);
    EXPECT_TRUE(lease.spec().recipe().has_seed());
    EXPECT_EQ(lease.spec().data().dataset(), quartet::v1::DATASET_SYNTHETIC);
    EXPECT_TRUE(ranks.insert(lease.spec().combination().rank()).second) << "combination re-issued";
    ASSERT_TRUE(Complete(*core_, w, lease, 0.1 * (i + 1)).ok());
  }
  auto none = Lease(*core_, w);
  EXPECT_FALSE(none.has_lease());
  EXPECT_GT(none.retry_after_ms(), 0);
  auto done = core_->GetCampaign(campaign->id());
  EXPECT_EQ(done->state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_NEAR(done->best_accuracy(), 0.6, 1e-9);
  EXPECT_EQ(done->best_combination().families_size(), 3);

  auto cov = core_->GetCoverageReport(campaign->id(), true);
  ASSERT_TRUE(cov.ok());
  int64_t family_total = 0;
  for (const auto& f : cov->families()) family_total += f.counts().succeeded();
  EXPECT_EQ(family_total, 6 * 3);
  EXPECT_EQ(cov->pairs_total(), 10);
  EXPECT_EQ(cov->pairs_size(), 10);
  EXPECT_EQ(cov->distinct_issued(), 6);
  EXPECT_NEAR(cov->space_fraction(), 0.6, 1e-9);
  // STRATIFIED: 18 family slots over 5 families: counts 3 or 4.
  EXPECT_LE(cov->max_family_deviation(), 1);

  auto yield = core_->GetYieldReport(campaign->id(), 1, 3);
  ASSERT_TRUE(yield.ok());
  EXPECT_EQ(yield->families_size(), 5);
  EXPECT_EQ(yield->low_yield_families_size(), 3);
  EXPECT_LE(yield->low_yield_families(0).mean_accuracy(),
            yield->low_yield_families(1).mean_accuracy());
  EXPECT_GE(yield->best_pairs(0).mean_accuracy(), yield->best_pairs(1).mean_accuracy());
  // Sample std and the 95% t interval of the mean, recomputed from the completions.
  const std::map<size_t, double> t975 = {{2, 12.706}, {3, 4.303}, {4, 3.182}, {5, 2.776}};
  for (const auto& f : yield->families()) {
    const std::vector<double>& acc = family_accuracies[f.families(0)];
    ASSERT_EQ(static_cast<size_t>(f.succeeded()), acc.size());
    if (acc.size() < 2) {
      EXPECT_EQ(f.ci95_accuracy(), 0);
      continue;
    }
    double mean = 0, squares = 0;
    for (double a : acc) mean += a / acc.size();
    for (double a : acc) squares += (a - mean) * (a - mean);
    const double sd = std::sqrt(squares / (acc.size() - 1));
    EXPECT_NEAR(f.std_accuracy(), sd, 1e-12);
    EXPECT_NEAR(f.ci95_accuracy(), t975.at(acc.size()) * sd / std::sqrt(acc.size()), 1e-12);
  }

  quartet::v1::ListResultsRequest req;
  req.set_campaign_id(campaign->id());
  req.set_limit(2);
  auto top = core_->ListResults(req);
  ASSERT_TRUE(top.ok());
  ASSERT_EQ(top->size(), 2u);
  EXPECT_NEAR((*top)[0].result().test_accuracy(), 0.6, 1e-9);
  EXPECT_DOUBLE_EQ((*top)[0].result().wall_seconds(), 3);
  req.set_without_results(true);
  auto bare = core_->ListResults(req);
  ASSERT_TRUE(bare.ok());
  ASSERT_EQ(bare->size(), 2u);
  EXPECT_NEAR((*bare)[0].result().test_accuracy(), 0.6, 1e-9);
  EXPECT_DOUBLE_EQ((*bare)[0].result().wall_seconds(), 0);  // the document was not read
}

TEST_F(CoreTest, RepeatsIssueEachCombinationSeveralTimes) {
  CampaignConfig c = SmallConfig(6);
  c.set_repeats(2);
  auto campaign = core_->SubmitCampaign(c);
  ASSERT_TRUE(campaign.ok());
  const std::string w = Register(*core_);
  std::map<uint64_t, std::set<int>> repeats;
  for (int i = 0; i < 6; ++i) {
    auto lease = Lease(*core_, w);
    ASSERT_TRUE(lease.has_lease());
    repeats[lease.spec().combination().rank()].insert(lease.spec().repeat());
    ASSERT_TRUE(Complete(*core_, w, lease, 0.5).ok());
  }
  EXPECT_EQ(repeats.size(), 3u);
  for (const auto& [rank, reps] : repeats) EXPECT_EQ(reps, (std::set<int>{0, 1}));
}

TEST_F(CoreTest, ExpiredLeaseIsRetriedAndTheLateWorkerIsRefused) {
  auto campaign = core_->SubmitCampaign(SmallConfig(1));
  ASSERT_TRUE(campaign.ok());
  const std::string a = Register(*core_), b = Register(*core_);
  auto first = Lease(*core_, a);
  ASSERT_TRUE(first.has_lease());
  clock_.Advance(absl::Seconds(20));
  quartet::v1::HeartbeatRequest hb;
  hb.set_worker_id(a);
  hb.set_session_secret(secrets_[a]);
  hb.set_candidate_id(first.lease().candidate_id());
  hb.set_lease_token(first.lease().lease_token());
  ASSERT_TRUE(core_->Heartbeat(hb).ok());  // renewed to t+50
  clock_.Advance(absl::Seconds(25));
  EXPECT_EQ(*core_->SweepExpiredLeases(), 0);
  clock_.Advance(absl::Seconds(10));  // t+55 > t+50: expired
  EXPECT_EQ(*core_->SweepExpiredLeases(), 1);
  auto second = Lease(*core_, b);
  ASSERT_TRUE(second.has_lease());
  EXPECT_EQ(second.lease().candidate_id(), first.lease().candidate_id());
  EXPECT_EQ(second.spec().attempt(), 2);
  EXPECT_NE(second.lease().lease_token(), first.lease().lease_token());
  EXPECT_EQ(core_->Heartbeat(hb).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Complete(*core_, a, first, 0.9).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Complete(*core_, b, second, 0.4).ok());
  auto done = core_->GetCampaign(campaign->id());
  EXPECT_EQ(done->state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_NEAR(done->best_accuracy(), 0.4, 1e-9);
}

TEST_F(CoreTest, CancelTellsHeartbeatsToStop) {
  auto campaign = core_->SubmitCampaign(SmallConfig(4));
  ASSERT_TRUE(campaign.ok());
  const std::string w = Register(*core_);
  auto lease = Lease(*core_, w);
  ASSERT_TRUE(lease.has_lease());
  auto cancelled = core_->CancelCampaign(campaign->id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), quartet::v1::CAMPAIGN_STATE_CANCELLED);
  quartet::v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  hb.set_session_secret(secrets_[w]);
  hb.set_candidate_id(lease.lease().candidate_id());
  hb.set_lease_token(lease.lease().lease_token());
  auto resp = core_->Heartbeat(hb);
  ASSERT_TRUE(resp.ok());
  EXPECT_TRUE(resp->cancel());
  EXPECT_FALSE(Lease(*core_, w).has_lease());
  EXPECT_EQ(core_->CancelCampaign(campaign->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoreTest, FailNeedsAnErrorClassAndRetryableFailuresAreRequeued) {
  auto campaign = core_->SubmitCampaign(SmallConfig(2));
  ASSERT_TRUE(campaign.ok());
  const std::string w = Register(*core_);
  auto lease = Lease(*core_, w);
  quartet::v1::FailCandidateRequest req;
  req.set_worker_id(w);
  req.set_session_secret(secrets_[w]);
  req.set_candidate_id(lease.lease().candidate_id());
  req.set_lease_token(lease.lease().lease_token());
  EXPECT_EQ(core_->FailCandidate(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.set_error_class(quartet::v1::ERROR_CLASS_PREEMPTED);
  req.set_retryable(true);
  auto r = core_->FailCandidate(req);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->requeued());
}

TEST_F(CoreTest, ARestartedCoreContinuesWithoutReissuingAndKeepsBalance) {
  CampaignConfig c = SmallConfig(10);
  c.set_k(2);  // C(5,2) = 10: the whole space
  auto campaign = core_->SubmitCampaign(c);
  ASSERT_TRUE(campaign.ok());
  const std::string w = Register(*core_);
  std::set<uint64_t> ranks;
  for (int i = 0; i < 4; ++i) {
    auto lease = Lease(*core_, w);
    ASSERT_TRUE(lease.has_lease());
    ranks.insert(lease.spec().combination().rank());
    ASSERT_TRUE(Complete(*core_, w, lease, 0.5).ok());
  }
  core_.reset();
  auto restarted = MakeCore();
  for (int i = 0; i < 6; ++i) {
    auto lease = Lease(*restarted, w);
    ASSERT_TRUE(lease.has_lease()) << i;
    EXPECT_TRUE(ranks.insert(lease.spec().combination().rank()).second)
        << "re-issued after restart";
    ASSERT_TRUE(Complete(*restarted, w, lease, 0.5).ok());
  }
  EXPECT_EQ(ranks.size(), 10u);
  auto cov = restarted->GetCoverageReport(campaign->id(), false);
  EXPECT_EQ(cov->max_family_deviation(), 0);  // every family in 4 of the 10 pairs
  EXPECT_EQ(restarted->GetCampaign(campaign->id())->state(), quartet::v1::CAMPAIGN_STATE_DONE);
}

TEST_F(CoreTest, HigherPriorityCampaignsAreLeasedFirst) {
  CampaignConfig low = SmallConfig(2);
  CampaignConfig high = SmallConfig(2);
  high.set_name("urgent");
  high.set_priority(10);
  auto a = core_->SubmitCampaign(low);
  auto b = core_->SubmitCampaign(high);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string w = Register(*core_);
  EXPECT_EQ(Lease(*core_, w).spec().campaign_id(), b->id());
  EXPECT_EQ(Lease(*core_, w).spec().campaign_id(), b->id());
  EXPECT_EQ(Lease(*core_, w).spec().campaign_id(), a->id());
}

}  // namespace
}  // namespace quartet::coordinator

namespace quartet::coordinator {
namespace {

// A MemoryStore whose database can be "down".
class FlakyStore : public MemoryStore {
 public:
  absl::Status Ping() override {
    return down ? absl::UnavailableError("database down") : absl::OkStatus();
  }
  bool down = false;
};

class GraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorCore::Options o;
    o.lease = absl::Seconds(30);
    core_ = std::move(*CoordinatorCore::Create(o, &store_, &clock_));
    ASSERT_TRUE(core_->SubmitCampaign(SmallConfig(2)).ok());
    quartet::v1::RegisterWorkerRequest r;
    auto registered = core_->RegisterWorker(r);
    ASSERT_TRUE(registered.ok());
    worker_ = registered->worker_id();
    quartet::v1::LeaseCandidateRequest lease;
    lease.set_worker_id(worker_);
    lease.set_session_secret(registered->session_secret());
    ASSERT_TRUE(core_->LeaseCandidate(lease)->has_lease());
  }

  FlakyStore store_;
  common::FakeClock clock_;
  std::unique_ptr<CoordinatorCore> core_;
  std::string worker_;
};

TEST_F(GraceTest, NoLeaseExpiresUntilOneLeaseAfterStart) {
  clock_.Advance(absl::Seconds(20));
  core_->Start();  // a restarted coordinator at t+20: grace until t+50
  core_->Stop();
  clock_.Advance(absl::Seconds(11));  // t+31: the lease (deadline t+30) is overdue, grace runs
  EXPECT_EQ(*core_->Tick(), 0);
  clock_.Advance(absl::Seconds(20));  // t+51
  EXPECT_EQ(*core_->Tick(), 1);
}

TEST_F(GraceTest, ADatabaseOutageSuspendsExpiryAndGrantsGraceAfterwards) {
  store_.down = true;
  clock_.Advance(absl::Seconds(40));
  EXPECT_EQ(*core_->Tick(), 0);
  EXPECT_FALSE(core_->serving());
  store_.down = false;
  EXPECT_EQ(*core_->Tick(), 0);  // back: one lease of grace first
  EXPECT_TRUE(core_->serving());
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(*core_->Tick(), 0);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(*core_->Tick(), 1);
}

}  // namespace
}  // namespace quartet::coordinator

namespace quartet::coordinator {
namespace {

class WorkerIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core_ = std::move(*CoordinatorCore::Create({}, &store_, &clock_));
    ASSERT_TRUE(core_->SubmitCampaign(SmallConfig(3)).ok());
  }
  quartet::v1::RegisterWorkerResponse Register(const std::string& id, const std::string& secret) {
    quartet::v1::RegisterWorkerRequest r;
    r.set_host("h");
    r.set_worker_id(id);
    r.set_session_secret(secret);
    auto resp = core_->RegisterWorker(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return *resp;
  }
  absl::StatusOr<quartet::v1::LeaseCandidateResponse> Lease(const std::string& id,
                                                            const std::string& secret) {
    quartet::v1::LeaseCandidateRequest r;
    r.set_worker_id(id);
    r.set_session_secret(secret);
    return core_->LeaseCandidate(r);
  }

  MemoryStore store_;
  common::FakeClock clock_;
  std::unique_ptr<CoordinatorCore> core_;
};

TEST_F(WorkerIdentityTest, IdsAreChosenByTheServerAndNeverCollide) {
  const auto a = Register("gpu0", "");
  const auto b = Register("gpu0", "");  // the same label again: a different worker
  EXPECT_THAT(a.worker_id(), ::testing::StartsWith("gpu0-"));
  EXPECT_NE(a.worker_id(), b.worker_id());
  EXPECT_EQ(a.session_secret().size(), 64u);
  EXPECT_NE(a.session_secret(), b.session_secret());
  // Claiming another worker's id without its secret gives a new id; the row is not overwritten.
  const auto spoof = Register(a.worker_id(), "guess");
  EXPECT_NE(spoof.worker_id(), a.worker_id());
  EXPECT_TRUE(Lease(a.worker_id(), a.session_secret()).ok());
}

TEST_F(WorkerIdentityTest, ReattachesOnlyWithItsSecret) {
  const auto a = Register("gpu0", "");
  const auto again = Register(a.worker_id(), a.session_secret());
  EXPECT_EQ(again.worker_id(), a.worker_id());
  EXPECT_EQ(again.session_secret(), a.session_secret());
}

TEST_F(WorkerIdentityTest, EveryWorkerCallNeedsTheSecretOfItsId) {
  const auto a = Register("a", "");
  const auto b = Register("b", "");
  auto leased = Lease(a.worker_id(), a.session_secret());
  ASSERT_TRUE(leased.ok() && leased->has_lease());
  EXPECT_EQ(Lease(a.worker_id(), "").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Lease(a.worker_id(), b.session_secret()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Lease("nobody-00000000", "x").status().code(), absl::StatusCode::kNotFound);
  // A forged completion: b's credentials, a's lease and the leaked token, under a's id.
  quartet::v1::CompleteCandidateRequest forged;
  forged.set_worker_id(a.worker_id());
  forged.set_session_secret(b.session_secret());
  forged.set_candidate_id(leased->lease().candidate_id());
  forged.set_lease_token(leased->lease().lease_token());
  forged.mutable_result()->set_test_accuracy(0.99);
  EXPECT_EQ(core_->CompleteCandidate(forged).code(), absl::StatusCode::kPermissionDenied);
  // Under b's own id the token is not b's lease.
  forged.set_worker_id(b.worker_id());
  EXPECT_EQ(core_->CompleteCandidate(forged).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.GetCandidate(leased->lease().candidate_id())->state, CandidateState::kLeased);
  // A coordinator restart (a new core on the same store) still knows the secret.
  auto restarted = std::move(*CoordinatorCore::Create({}, &store_, &clock_));
  quartet::v1::HeartbeatRequest hb;
  hb.set_worker_id(a.worker_id());
  hb.set_session_secret(a.session_secret());
  hb.set_candidate_id(leased->lease().candidate_id());
  hb.set_lease_token(leased->lease().lease_token());
  EXPECT_TRUE(restarted->Heartbeat(hb).ok());
}

}  // namespace
}  // namespace quartet::coordinator

namespace quartet::coordinator {
namespace {

TEST(MemoryEstimateTest, GrowsWithInputAndBatchAndCoversEveryFamily) {
  const int64_t small = EstimateTrainingBytes({"ShuffleNet", "SqueezeNet-2"}, 32, 32);
  EXPECT_GT(EstimateTrainingBytes({"ShuffleNet", "SqueezeNet-2"}, 256, 32), 10 * small / 2);
  EXPECT_GT(EstimateTrainingBytes({"ShuffleNet", "SqueezeNet-2"}, 32, 128), small);
  EXPECT_GT(EstimateTrainingBytes({"VGG", "VisionTransformer"}, 32, 32), small);
  // Every catalog family has a measured entry (none falls back to the largest figure).
  for (const auto& f : common::FamilyCatalog::Get().families()) {
    EXPECT_TRUE(HasMeasuredMemory(std::string(f.name))) << f.name;
  }
  EXPECT_FALSE(HasMeasuredMemory("NoSuchNet"));
}

}  // namespace
}  // namespace quartet::coordinator

namespace quartet::coordinator {
namespace {

TEST_F(CoreTest, AxesReachTheSpecAndTheReportsAndSurviveARestart) {
  CampaignConfig c = SmallConfig(12);
  c.set_sampler(quartet::v1::SAMPLER_KIND_STRATIFIED);
  auto* router = c.add_axes();
  router->set_path("recipe.router");
  for (const char* v : {"dense", "top-k", "top-p"}) router->add_values(v);
  auto* lr = c.add_axes();
  lr->set_path("recipe.learning_rate");
  lr->mutable_range()->set_lo(1e-4);
  lr->mutable_range()->set_hi(1e-2);
  lr->mutable_range()->set_log(true);
  lr->mutable_range()->set_strata(4);
  auto campaign = core_->SubmitCampaign(c);
  ASSERT_TRUE(campaign.ok()) << campaign.status();
  EXPECT_EQ(campaign->space_size(), 10u * 3 * 4);
  const std::string w = Register(*core_);
  std::map<std::string, int> routers;
  for (int i = 0; i < 6; ++i) {
    auto lease = Lease(*core_, w);
    ASSERT_TRUE(lease.has_lease());
    const auto& spec = lease.spec();
    ASSERT_EQ(spec.axis_levels_size(), 2);
    EXPECT_EQ(spec.axis_levels(0).path(), "recipe.router");
    EXPECT_EQ(quartet::v1::Router_Name(spec.recipe().router()), spec.axis_levels(0).value());
    ++routers[spec.axis_levels(0).value()];
    // The learning rate lies in its stratum of [1e-4, 1e-2] on a log scale.
    const double rate = spec.recipe().learning_rate();
    const int stratum = spec.axis_levels(1).level();
    const double lo = std::pow(10.0, -4 + 0.5 * stratum),
                 hi = std::pow(10.0, -4 + 0.5 * (stratum + 1));
    EXPECT_GE(rate, lo * (1 - 1e-12));
    EXPECT_LT(rate, hi);
    ASSERT_TRUE(Complete(*core_, w, lease, 0.5 + 0.01 * i).ok());
  }
  // STRATIFIED: 6 draws over 3 routers: 2 each.
  EXPECT_EQ(routers, (std::map<std::string, int>{
                         {"ROUTER_DENSE", 2}, {"ROUTER_TOP_K", 2}, {"ROUTER_TOP_P", 2}}));

  auto cov = core_->GetCoverageReport(campaign->id(), false);
  ASSERT_TRUE(cov.ok());
  ASSERT_EQ(cov->axes_size(), 2);
  EXPECT_EQ(cov->axes(0).levels_size(), 3);
  EXPECT_TRUE(cov->axes(1).continuous());
  EXPECT_EQ(cov->axes(1).levels(0).label(), "[0.0001, 0.0003162)");
  int64_t succeeded = 0, cells = 0;
  for (const auto& level : cov->axes(0).levels()) {
    succeeded += level.counts().succeeded();
    for (const auto& f : level.families()) cells += f.counts().succeeded();
  }
  EXPECT_EQ(succeeded, 6);
  EXPECT_EQ(cells, 6 * 3);
  EXPECT_LE(cov->axes(0).max_level_deviation(), 1);

  auto yield = core_->GetYieldReport(campaign->id(), 1, 5);
  ASSERT_TRUE(yield.ok());
  ASSERT_EQ(yield->axes_size(), 2);
  ASSERT_EQ(yield->axes(0).levels_size(), 3);
  for (const auto& level : yield->axes(0).levels()) EXPECT_EQ(level.succeeded(), 2);
  EXPECT_EQ(yield->best_cells_size(), 5);

  // A restarted core carries on with the same space and never re-issues a point.
  // The listing is kept in a local: a range-for over `*StatusOr` temporary would read freed memory.
  std::set<uint64_t> ranks;
  auto before = store_.ListCandidates({campaign->id(), {}, false, 0});
  ASSERT_TRUE(before.ok());
  for (const auto& cand : *before) ranks.insert(cand.rank);
  core_.reset();
  core_ = MakeCore();
  for (int i = 0; i < 6; ++i) {
    auto lease = Lease(*core_, w);
    ASSERT_TRUE(lease.has_lease());
    ASSERT_TRUE(Complete(*core_, w, lease, 0.4).ok());
  }
  auto after = store_.ListCandidates({campaign->id(), {}, false, 0});
  ASSERT_TRUE(after.ok());
  for (const auto& cand : *after) ranks.insert(cand.rank);
  EXPECT_EQ(ranks.size(), 12u);
  EXPECT_EQ(core_->GetCampaign(campaign->id())->state(), quartet::v1::CAMPAIGN_STATE_DONE);
}

// An ASHA campaign through the core: rung specs, resumes from the reported checkpoint, promotions
// of the top 1/eta, STOPPED_EARLY never a failure, the epoch budget, the rung report, and a
// restart halfway that carries on with the same promotion state.
TEST_F(CoreTest, AshaCampaignPromotesResumesAndSurvivesARestart) {
  CampaignConfig c = SmallConfig(10);
  c.set_k(2);  // C(5,2) = 10
  for (int e : {1, 3}) c.mutable_fidelity()->add_rung_epochs(e);
  c.mutable_fidelity()->set_eta(2);
  c.mutable_fidelity()->set_budget_epochs(16);
  c.set_keep_best_checkpoints(10);  // every checkpoint stays: each promotion must resume
  auto campaign = core_->SubmitCampaign(c);
  ASSERT_TRUE(campaign.ok()) << campaign.status();
  EXPECT_EQ(campaign->config().recipe().epochs(), 3) << "the schedule spans the last rung";
  EXPECT_TRUE(campaign->config().fidelity().coverage_guard());
  const std::string w = Register(*core_);
  std::map<int64_t, quartet::v1::Artifact> checkpoints;
  int leases = 0, resumed = 0, succeeded = 0;
  auto accuracy = [](uint64_t rank, int rung) { return 0.5 + 0.04 * rank + 0.1 * rung; };
  for (int i = 0; i < 40; ++i) {
    if (i == 8) core_ = MakeCore();  // a restart halfway
    auto lease = Lease(*core_, w);
    if (!lease.has_lease()) break;
    ++leases;
    const auto& spec = lease.spec();
    const int rung = spec.fidelity().rung();
    EXPECT_EQ(spec.fidelity().stop_epoch(), rung == 0 ? 1 : 3);
    EXPECT_EQ(spec.recipe().epochs(), 3);
    if (rung > 0) {
      ASSERT_TRUE(spec.fidelity().has_resume_from()) << "a promotion resumes";
      EXPECT_EQ(spec.fidelity().resume_from().uri(), checkpoints.at(spec.candidate_id()).uri());
      ++resumed;
    }
    quartet::v1::CompleteCandidateRequest req;
    req.set_worker_id(w);
    req.set_session_secret(secrets_[w]);
    req.set_candidate_id(lease.lease().candidate_id());
    req.set_lease_token(lease.lease().lease_token());
    quartet::v1::Result* r = req.mutable_result();
    r->set_test_accuracy(accuracy(spec.combination().rank(), rung));
    r->set_epochs_trained(spec.fidelity().stop_epoch());
    quartet::v1::Artifact* ckpt = r->mutable_checkpoint();
    ckpt->set_uri(absl::StrCat("file:///nonexistent/candidate-", spec.candidate_id(), "/e",
                               spec.fidelity().stop_epoch(), ".ckpt"));
    ckpt->set_epoch(spec.fidelity().stop_epoch());
    checkpoints[spec.candidate_id()] = *ckpt;
    ASSERT_TRUE(core_->CompleteCandidate(req).ok());
    if (rung == 1) ++succeeded;
  }
  auto done = core_->GetCampaign(campaign->id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), quartet::v1::CAMPAIGN_STATE_DONE);
  EXPECT_EQ(done->counts().failed(), 0);
  EXPECT_EQ(done->counts().succeeded(), succeeded);
  EXPECT_EQ(done->counts().stopped_early() + done->counts().succeeded(), done->issued());
  EXPECT_LE(done->epochs_committed(), 16);
  EXPECT_GT(resumed, 0);
  EXPECT_EQ(leases, done->issued() + resumed);
  // 16 epochs: each promotion costs 2 more than a new candidate's 1.
  EXPECT_EQ(done->issued() + 2 * resumed, done->epochs_committed());
  auto cov = core_->GetCoverageReport(campaign->id(), true);
  ASSERT_TRUE(cov.ok());
  ASSERT_EQ(cov->rungs_size(), 2);
  EXPECT_EQ(cov->rungs(0).completed(), done->issued());
  EXPECT_EQ(cov->rungs(0).promoted(), resumed);
  EXPECT_EQ(cov->rungs(1).completed(), succeeded);
  EXPECT_EQ(cov->rungs(0).stopped_early(), done->counts().stopped_early());
  int64_t family_completions = 0;
  for (const auto& f : cov->families()) {
    ASSERT_EQ(f.completed_at_rung_size(), 2);
    family_completions += f.completed_at_rung(0);
  }
  EXPECT_EQ(family_completions, 2 * done->issued());
  // The yield report's rung dimension agrees with the coverage report's.
  auto yield = core_->GetYieldReport(campaign->id(), 1, 3);
  ASSERT_TRUE(yield.ok());
  int64_t yield_completions = 0;
  for (const auto& f : yield->families()) {
    ASSERT_EQ(f.completed_at_rung_size(), 2);
    yield_completions += f.completed_at_rung(0);
    if (f.completed_at_rung(1) > 0) {
      EXPECT_GT(f.mean_accuracy_at_rung(1), f.mean_accuracy_at_rung(0) - 1e-9) << f.families(0);
    }
  }
  EXPECT_EQ(yield_completions, family_completions);
  // Every succeeded candidate went through rung 0 and was promoted from it.
  quartet::v1::ListResultsRequest lr;
  lr.set_campaign_id(campaign->id());
  auto all = core_->ListResults(lr);
  ASSERT_TRUE(all.ok());
  for (const auto& s : *all) {
    if (s.state() != quartet::v1::CANDIDATE_STATE_SUCCEEDED) continue;
    ASSERT_EQ(s.rungs_size(), 2);
    EXPECT_TRUE(s.rungs(0).promoted());
    EXPECT_EQ(s.rung(), 1);
  }
}

}  // namespace
}  // namespace quartet::coordinator
