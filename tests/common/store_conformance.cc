#include "tests/common/store_conformance.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace quartet::coordinator::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);
const absl::Duration kLease = absl::Seconds(30);

CampaignRecord MakeCampaign(const std::vector<std::string>& pool, int64_t budget,
                            int max_attempts = 3, int priority = 0, int k = 3) {
  CampaignRecord c;
  c.name = "test";
  c.k = k;
  c.budget = budget;
  c.max_attempts = max_attempts;
  c.priority = priority;
  for (const auto& f : pool) c.config.add_pool(f);
  c.config.set_name("test");
  c.config.set_k(k);
  c.config.set_budget(budget);
  c.config.mutable_recipe()->set_epochs(1);
  return c;
}

NewCandidate Cand(uint64_t rank, std::vector<std::string> families, int repeat = 0,
                  int64_t memory = 0) {
  return NewCandidate{rank, repeat, std::move(families), memory};
}

// Two parameter axes: a CATEGORICAL one of 3 values and a CONTINUOUS one of 4 strata.
void AddTwoAxes(CampaignRecord& c) {
  quartet::v1::ParameterAxis* router = c.config.add_axes();
  router->set_path("recipe.router");
  for (const char* v : {"top-k", "soft", "switch"}) router->add_values(v);
  quartet::v1::ParameterAxis* lr = c.config.add_axes();
  lr->set_path("recipe.learning_rate");
  lr->mutable_range()->set_lo(1e-4);
  lr->mutable_range()->set_hi(1e-2);
  lr->mutable_range()->set_log(true);
  lr->mutable_range()->set_strata(4);
}

// A candidate at `levels`, with a value per level that names its axis and level (and holds a
// comma and a quote, so the stores' array encodings are exercised).
NewCandidate AxCand(uint64_t rank, std::vector<std::string> families, std::vector<int> levels,
                    int repeat = 0) {
  NewCandidate c = Cand(rank, std::move(families), repeat);
  for (size_t a = 0; a < levels.size(); ++a) {
    c.axis_values.push_back(absl::StrCat("axis ", a, ", \"level\" ", levels[a]));
  }
  c.levels = std::move(levels);
  return c;
}

quartet::v1::Result MakeResult(double accuracy, double seconds = 10) {
  quartet::v1::Result r;
  r.set_test_accuracy(accuracy);
  r.set_wall_seconds(seconds);
  r.set_device("cpu");
  return r;
}

// Recomputes family and pair counters from the candidates table and compares with the stored
// counters.
void ExpectCoverageMatchesCandidates(Store& store, int64_t campaign_id) {
  auto cov = store.GetCoverage(campaign_id);
  ASSERT_TRUE(cov.ok()) << cov.status();
  auto cands = store.ListCandidates({campaign_id, {}, false, 0});
  ASSERT_TRUE(cands.ok()) << cands.status();
  std::map<std::string, StateCounts> fam;
  std::map<std::pair<std::string, std::string>, StateCounts> pairs;
  StateCounts total;
  for (const CandidateRecord& c : *cands) {
    total.at(c.state)++;
    for (size_t i = 0; i < c.families.size(); ++i) {
      fam[c.families[i]].at(c.state)++;
      for (size_t j = i + 1; j < c.families.size(); ++j) {
        pairs[{c.families[i], c.families[j]}].at(c.state)++;
      }
    }
  }
  for (const FamilyCounter& f : cov->families) {
    EXPECT_EQ(f.counts, fam[f.family]) << "family " << f.family;
  }
  for (const PairCounter& p : cov->pairs) {
    EXPECT_EQ(p.counts, (pairs[{p.family_a, p.family_b}])) << p.family_a << "+" << p.family_b;
  }
  auto camp = store.GetCampaign(campaign_id);
  ASSERT_TRUE(camp.ok());
  // Axis coverage: a row per level and per (level, pool family), every one equal to a recount by
  // state, per level and per (family, level), ordered by axis, level, level row, pool order.
  std::map<std::tuple<int, int, std::string>, StateCounts> cells;
  for (const CandidateRecord& c : *cands) {
    for (size_t a = 0; a < c.levels.size(); ++a) {
      cells[{static_cast<int>(a), c.levels[a], ""}].at(c.state)++;
      for (const std::string& f : c.families) {
        cells[{static_cast<int>(a), c.levels[a], f}].at(c.state)++;
      }
    }
  }
  std::vector<std::tuple<int, int, std::string>> expected_rows;
  const auto& cfg = camp->config;
  for (int a = 0; a < cfg.axes_size(); ++a) {
    const int n = cfg.axes(a).values_size() > 0
                      ? cfg.axes(a).values_size()
                      : (cfg.axes(a).range().strata() > 0 ? cfg.axes(a).range().strata()
                                                          : kDefaultAxisStrata);
    for (int l = 0; l < n; ++l) {
      expected_rows.emplace_back(a, l, "");
      for (const std::string& f : cfg.pool()) expected_rows.emplace_back(a, l, f);
    }
  }
  ASSERT_EQ(cov->levels.size(), expected_rows.size());
  int64_t counted = 0;
  for (size_t i = 0; i < cov->levels.size(); ++i) {
    const LevelCounter& l = cov->levels[i];
    EXPECT_EQ(std::make_tuple(l.axis, l.level, l.family), expected_rows[i]) << "row " << i;
    EXPECT_EQ(l.counts, (cells[{l.axis, l.level, l.family}]))
        << "axis " << l.axis << " level " << l.level << " family '" << l.family << "'";
    counted += l.counts.total();
  }
  int64_t expected_total = 0;
  for (const auto& [key, n] : cells) expected_total += n.total();
  EXPECT_EQ(counted, expected_total) << "a candidate counts in a cell the store does not have";
  EXPECT_EQ(camp->counts, total);
  EXPECT_EQ(camp->issued, static_cast<int64_t>(cands->size()));
}

}  // namespace

void StoreConformanceTest::SetUp() {
  store_ = GetParam().make();
  if (store_ == nullptr) {
    const char* req = std::getenv("QUARTET_REQUIRE_PG");
    if (req && std::string(req) == "1") FAIL() << GetParam().name << " store is not available";
    GTEST_SKIP() << GetParam().name << " store is not available";
  }
}

TEST_P(StoreConformanceTest, CreatesCampaignsWithZeroCoverageForEveryFamilyAndPair) {
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 5), kT0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GT(c->id, 0);
  EXPECT_EQ(c->state, CampaignState::kRunning);
  EXPECT_EQ(c->issued, 0);
  EXPECT_EQ(c->created_at, kT0);
  auto got = store_->GetCampaign(c->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->config.pool_size(), 4);
  EXPECT_EQ(got->budget, 5);
  auto cov = store_->GetCoverage(c->id);
  ASSERT_TRUE(cov.ok());
  ASSERT_EQ(cov->families.size(), 4u);
  EXPECT_EQ(cov->families[0].family, "A");
  EXPECT_EQ(cov->families[3].family, "D");
  ASSERT_EQ(cov->pairs.size(), 6u);
  EXPECT_EQ(cov->pairs[0].family_a, "A");
  EXPECT_EQ(cov->pairs[0].family_b, "B");
  EXPECT_EQ(cov->pairs[5].family_a, "C");
  EXPECT_EQ(cov->pairs[5].family_b, "D");
  for (const auto& p : cov->pairs) EXPECT_EQ(p.counts.total(), 0);
  EXPECT_TRUE(cov->levels.empty());  // no axes, no level rows

  EXPECT_EQ(store_->GetCampaign(c->id + 1000).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, ListsCampaignsNewestFirstFilteredByState) {
  auto a = store_->CreateCampaign(MakeCampaign({"A", "B", "C"}, 1), kT0);
  auto b = store_->CreateCampaign(MakeCampaign({"A", "B", "C"}, 1), kT0);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store_->CancelCampaign(a->id, kT0).ok());
  auto all = store_->ListCampaigns({}, 0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, b->id);
  auto running = store_->ListCampaigns({CampaignState::kRunning}, 0);
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->size(), 1u);
  EXPECT_EQ((*running)[0].id, b->id);
  auto one = store_->ListCampaigns({}, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
}

TEST_P(StoreConformanceTest, InsertsCandidatesAndCountsThemPendingPerFamilyAndPair) {
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 4), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(
      store_->InsertCandidates(c->id, {Cand(0, {"A", "B", "C"}), Cand(1, {"A", "B", "D"})}, kT0)
          .ok());
  auto camp = store_->GetCampaign(c->id);
  EXPECT_EQ(camp->issued, 2);
  EXPECT_EQ(camp->counts.pending, 2);
  auto cov = store_->GetCoverage(c->id);
  EXPECT_EQ(cov->families[0].counts.pending, 2);  // A
  EXPECT_EQ(cov->families[2].counts.pending, 1);  // C
  EXPECT_EQ(cov->pairs[0].counts.pending, 2);     // A+B
  EXPECT_EQ(cov->triples.size(), 2u);
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

TEST_P(StoreConformanceTest, RefusedInsertsChangeNothing) {
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 2), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(store_->InsertCandidates(c->id, {Cand(0, {"A", "B", "C"})}, kT0).ok());

  auto over =
      store_->InsertCandidates(c->id, {Cand(1, {"A", "B", "D"}), Cand(2, {"A", "C", "D"})}, kT0);
  EXPECT_EQ(over.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(over.message()), HasSubstr("budget"));

  auto dup = store_->InsertCandidates(c->id, {Cand(0, {"A", "B", "C"})}, kT0);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);

  auto stranger = store_->InsertCandidates(c->id, {Cand(3, {"A", "B", "Z"})}, kT0);
  EXPECT_EQ(stranger.code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store_->InsertCandidates(c->id + 99, {Cand(0, {"A", "B", "C"})}, kT0).code(),
            absl::StatusCode::kNotFound);

  auto camp = store_->GetCampaign(c->id);
  EXPECT_EQ(camp->issued, 1);
  EXPECT_EQ(camp->counts.pending, 1);
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

TEST_P(StoreConformanceTest, LeasesByPriorityThenIdWithUnguessableTokens) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  auto low = store_->CreateCampaign(MakeCampaign({"A", "B", "C"}, 2, 3, 0), kT0);
  auto high = store_->CreateCampaign(MakeCampaign({"A", "B", "C"}, 1, 3, 5), kT0);
  ASSERT_TRUE(low.ok() && high.ok());
  ASSERT_TRUE(store_
                  ->InsertCandidates(
                      low->id, {Cand(0, {"A", "B", "C"}, 0), Cand(0, {"A", "B", "C"}, 1)}, kT0)
                  .ok());
  ASSERT_TRUE(store_->InsertCandidates(high->id, {Cand(0, {"A", "B", "C"})}, kT0).ok());

  auto first = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->candidate.campaign_id, high->id);
  EXPECT_EQ((*first)->candidate.state, CandidateState::kLeased);
  EXPECT_EQ((*first)->candidate.attempt, 1);
  EXPECT_EQ((*first)->candidate.worker_id, "w1");
  EXPECT_EQ((*first)->candidate.lease_deadline, kT0 + kLease);
  EXPECT_EQ((*first)->config.pool_size(), 3);

  auto second = store_->LeaseNext("w1", kT0, kLease);
  auto third = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(second.ok() && second->has_value() && third.ok() && third->has_value());
  EXPECT_EQ((*second)->candidate.campaign_id, low->id);
  EXPECT_EQ((*second)->candidate.repeat, 0);
  EXPECT_EQ((*third)->candidate.repeat, 1);
  // Tokens are random: distinct, never 0, and not one after another (each gap is at least 2^32
  // but with probability about 2^-31).
  const int64_t t1 = (*first)->candidate.lease_token, t2 = (*second)->candidate.lease_token,
                t3 = (*third)->candidate.lease_token;
  EXPECT_NE(t1, 0);
  EXPECT_NE(t2, 0);
  EXPECT_NE(t3, 0);
  EXPECT_NE(t1, t2);
  EXPECT_NE(t2, t3);
  EXPECT_GT(
      std::max(std::abs(static_cast<double>(t2) - t1), std::abs(static_cast<double>(t3) - t2)),
      4294967296.0);

  auto none = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ExpectCoverageMatchesCandidates(*store_, low->id);
  ExpectCoverageMatchesCandidates(*store_, high->id);
}

TEST_P(StoreConformanceTest, UnregisteredWorkerCannotLease) {
  auto r = store_->LeaseNext("ghost", kT0, kLease);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("ghost"));
}

TEST_P(StoreConformanceTest, RegisterAssignsIdsAndReattaches) {
  auto a = store_->RegisterWorker({"", "host-a", "cpu"}, kT0);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->id.empty());
  auto b = store_->RegisterWorker({"", "host-b", "cpu"}, kT0);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(a->id, b->id);
  WorkerRecord again = *a;
  again.device = "cuda:0";
  auto re = store_->RegisterWorker(again, kT0 + absl::Seconds(5));
  ASSERT_TRUE(re.ok());
  EXPECT_EQ(re->id, a->id);
  EXPECT_EQ(re->registered_at, kT0);
}

class LeasedFixture {
 public:
  // One campaign of `budget` over {A,B,C,D}, k=3, all candidates inserted, one leased to w1.
  static void Setup(Store& store, int64_t budget, int max_attempts, int64_t* campaign,
                    LeaseGrant* grant) {
    ASSERT_TRUE(store.RegisterWorker({"w1"}, kT0).ok());
    ASSERT_TRUE(store.RegisterWorker({"w2"}, kT0).ok());
    auto c = store.CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, budget, max_attempts), kT0);
    ASSERT_TRUE(c.ok());
    *campaign = c->id;
    const std::vector<std::vector<std::string>> combos = {
        {"A", "B", "C"}, {"A", "B", "D"}, {"A", "C", "D"}, {"B", "C", "D"}};
    std::vector<NewCandidate> cands;
    for (int64_t i = 0; i < budget; ++i) cands.push_back(Cand(i, combos[i % 4], i / 4));
    ASSERT_TRUE(store.InsertCandidates(c->id, cands, kT0).ok());
    auto g = store.LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(g.ok() && g->has_value());
    *grant = **g;
  }
};

TEST_P(StoreConformanceTest, RenewExtendsTheLeaseAndRefusesStaleTokensAndOtherWorkers) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  const int64_t id = g.candidate.id, token = g.candidate.lease_token;

  auto renewed = store_->RenewLease(id, token, "w1", kT0 + absl::Seconds(10), kLease);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->deadline, kT0 + absl::Seconds(40));
  EXPECT_FALSE(renewed->cancel);
  EXPECT_EQ(store_->GetCandidate(id)->lease_deadline, kT0 + absl::Seconds(40));

  auto stale = store_->RenewLease(id, token + 1000, "w1", kT0, kLease);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("not this worker's current lease"));
  // Neither the current token nor the holder is revealed.
  EXPECT_THAT(std::string(stale.status().message()),
              Not(HasSubstr(absl::StrCat("lease ", token, " "))));
  auto other = store_->RenewLease(id, token, "w2", kT0, kLease);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.status().message()), Not(HasSubstr("w1")));
  EXPECT_EQ(store_->RenewLease(id + 1000, token, "w1", kT0, kLease).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, CompleteStoresTheResultAndARepeatChangesNothing) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  const int64_t id = g.candidate.id, token = g.candidate.lease_token;
  ASSERT_TRUE(store_->CompleteCandidate(id, token, "w1", MakeResult(0.81, 12), {}, kT0).ok());
  auto c = store_->GetCandidate(id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, CandidateState::kSucceeded);
  ASSERT_TRUE(c->result.has_value());
  EXPECT_DOUBLE_EQ(c->result->test_accuracy(), 0.81);
  EXPECT_DOUBLE_EQ(c->test_accuracy, 0.81);
  EXPECT_EQ(c->finished_at, kT0);
  auto camp = store_->GetCampaign(campaign);
  EXPECT_DOUBLE_EQ(camp->best_accuracy, 0.81);
  EXPECT_EQ(camp->best_candidate_id, id);
  EXPECT_DOUBLE_EQ(camp->succeeded_seconds, 12);

  // The same report again (its answer was lost): OK, and nothing changes.
  auto repeat = store_->CompleteCandidate(id, token, "w1", MakeResult(0.99), {}, kT0);
  EXPECT_TRUE(repeat.ok()) << repeat;
  EXPECT_DOUBLE_EQ(store_->GetCandidate(id)->test_accuracy, 0.81);
  EXPECT_EQ(store_->GetCampaign(campaign)->counts.succeeded, 1);
  EXPECT_DOUBLE_EQ(store_->GetCampaign(campaign)->succeeded_seconds, 12);
  // Another worker or a wrong token is still refused.
  EXPECT_EQ(store_->CompleteCandidate(id, token, "w2", MakeResult(0.99), {}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CompleteCandidate(id, token + 1, "w1", MakeResult(0.99), {}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->FailCandidate(id, token, "w1", quartet::v1::ERROR_CLASS_NUMERIC, "x", true, kT0)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, RetryableFailuresRequeueUntilAttemptsRunOut) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 1, 2, &campaign, &g));
  auto first = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                     quartet::v1::ERROR_CLASS_INTERNAL, "device fault", true, kT0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, CandidateState::kPending);
  auto again = store_->LeaseNext("w2", kT0, kLease);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->candidate.id, g.candidate.id);
  EXPECT_EQ((*again)->candidate.attempt, 2);
  EXPECT_NE((*again)->candidate.lease_token, g.candidate.lease_token);
  auto second = store_->FailCandidate(g.candidate.id, (*again)->candidate.lease_token, "w2",
                                      quartet::v1::ERROR_CLASS_INTERNAL, "device fault", true, kT0);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, CandidateState::kFailed);
  auto c = store_->GetCandidate(g.candidate.id);
  EXPECT_EQ(c->error_class, quartet::v1::ERROR_CLASS_INTERNAL);
  EXPECT_EQ(c->error_message, "device fault");
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kDone);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, NonRetryableFailureIsFinal) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  auto r = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                 quartet::v1::ERROR_CLASS_NUMERIC, "loss is nan", false, kT0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, CandidateState::kFailed);
  EXPECT_EQ(store_->GetCampaign(campaign)->counts.failed, 1);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, ExpiredLeaseReturnsToPendingAndTheOldTokenIsRefused) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 1, 2, &campaign, &g));
  auto none = store_->ExpireLeases(kT0 + kLease - absl::Seconds(1));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  auto expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok()) << expired.status();
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].candidate_id, g.candidate.id);
  EXPECT_EQ((*expired)[0].new_state, CandidateState::kPending);
  EXPECT_EQ((*expired)[0].worker_id, "w1");

  auto again = store_->LeaseNext("w2", kT0 + absl::Minutes(1), kLease);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->candidate.attempt, 2);
  // The first worker comes back late: every call with its token is refused.
  EXPECT_EQ(store_
                ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1", MakeResult(0.5),
                                    {}, kT0)
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_
                ->AppendMetrics(g.candidate.id, g.candidate.lease_token, "w1",
                                {{0, 0, 1, 1, "loss", 1.0, 0}})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->RenewLease(g.candidate.id, g.candidate.lease_token, "w1", kT0, kLease)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);

  // The second lease also expires: attempts are used up.
  auto final = store_->ExpireLeases(kT0 + absl::Hours(1));
  ASSERT_TRUE(final.ok());
  ASSERT_EQ(final->size(), 1u);
  EXPECT_EQ((*final)[0].new_state, CandidateState::kFailed);
  auto c = store_->GetCandidate(g.candidate.id);
  EXPECT_EQ(c->state, CandidateState::kFailed);
  EXPECT_EQ(c->error_class, quartet::v1::ERROR_CLASS_LOST);
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kDone);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, PreemptionsCostNoAttemptUpToTheirCap) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 1, 1, &campaign, &g));
  // max_attempts 1: three graceful hand-backs in a row still requeue.
  int64_t token = g.candidate.lease_token;
  for (int i = 0; i < 3; ++i) {
    auto r = store_->FailCandidate(g.candidate.id, token, "w1", quartet::v1::ERROR_CLASS_PREEMPTED,
                                   "draining", true, kT0);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, CandidateState::kPending) << "preemption " << i + 1;
    auto again = store_->LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(again.ok() && again->has_value());
    token = (*again)->candidate.lease_token;
    EXPECT_EQ((*again)->candidate.attempt, i + 2);  // attempts still number every lease
    EXPECT_EQ((*again)->candidate.preemptions, i + 1);
  }
  // A real failure then uses the one attempt.
  auto r = store_->FailCandidate(g.candidate.id, token, "w1", quartet::v1::ERROR_CLASS_INTERNAL,
                                 "device fault", true, kT0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, CandidateState::kFailed);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, PreemptionCapStopsEndlessLoops) {
  CampaignRecord rec = MakeCampaign({"A", "B", "C"}, 1, 3);
  rec.max_preemptions = 2;
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  auto c = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(store_->InsertCandidates(c->id, {Cand(0, {"A", "B", "C"})}, kT0).ok());
  std::vector<CandidateState> states;
  for (int i = 0; i < 3; ++i) {
    auto g = store_->LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(g.ok() && g->has_value());
    auto r = store_->FailCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                   quartet::v1::ERROR_CLASS_PREEMPTED, "draining", true, kT0);
    ASSERT_TRUE(r.ok());
    states.push_back(*r);
  }
  EXPECT_THAT(states, ElementsAre(CandidateState::kPending, CandidateState::kPending,
                                  CandidateState::kFailed));
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

TEST_P(StoreConformanceTest, TheHolderTakesBackALeaseTheSweepEndedWhileNoNewerLeaseExists) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  const int64_t id = g.candidate.id, token = g.candidate.lease_token;
  // An outage: the lease runs out and the sweep requeues the candidate.
  auto expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ(store_->GetCandidate(id)->state, CandidateState::kPending);
  // The holder's heartbeat comes back first: the lease is live again and the queue lost it.
  auto renewed = store_->RenewLease(id, token, "w1", kT0 + absl::Minutes(1), kLease);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  auto c = store_->GetCandidate(id);
  EXPECT_EQ(c->state, CandidateState::kLeased);
  EXPECT_EQ(c->lease_token, token);
  EXPECT_EQ(c->error_class, quartet::v1::ERROR_CLASS_UNSPECIFIED);
  ExpectCoverageMatchesCandidates(*store_, campaign);
  // Nobody else can lease it now: the other pending candidate comes next.
  auto other = store_->LeaseNext("w2", kT0 + absl::Minutes(1), kLease);
  ASSERT_TRUE(other.ok() && other->has_value());
  EXPECT_NE((*other)->candidate.id, id);
  // Its completion is accepted, with the final metrics in the same transaction.
  ASSERT_TRUE(store_
                  ->CompleteCandidate(id, token, "w1", MakeResult(0.7),
                                      {{0, 0, 5, 1, "test_accuracy", 0.7, 1000}}, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCandidate(id)->state, CandidateState::kSucceeded);
  auto metrics = store_->GetMetrics(id);
  ASSERT_TRUE(metrics.ok());
  ASSERT_EQ(metrics->size(), 1u);
  EXPECT_EQ((*metrics)[0].attempt, 1);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, ACompletionAfterTheSweepIsAcceptedEvenWhenAttemptsRanOut) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 1, 1, &campaign, &g));
  auto expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].new_state, CandidateState::kFailed);
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kDone);
  // The finished result arrives after the outage: accepted; the campaign is DONE again with it.
  auto done = store_->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                        MakeResult(0.6), {}, kT0 + absl::Minutes(2));
  ASSERT_TRUE(done.ok()) << done;
  EXPECT_EQ(store_->GetCandidate(g.candidate.id)->state, CandidateState::kSucceeded);
  auto camp = store_->GetCampaign(campaign);
  EXPECT_EQ(camp->state, CampaignState::kDone);
  EXPECT_EQ(camp->counts.succeeded, 1);
  EXPECT_EQ(camp->counts.failed, 0);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, FailIsIdempotent) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 1, &campaign, &g));
  const int64_t id = g.candidate.id, token = g.candidate.lease_token;
  auto first =
      store_->FailCandidate(id, token, "w1", quartet::v1::ERROR_CLASS_PREEMPTED, "stop", true, kT0);
  ASSERT_TRUE(first.ok());
  auto repeat =
      store_->FailCandidate(id, token, "w1", quartet::v1::ERROR_CLASS_PREEMPTED, "stop", true, kT0);
  ASSERT_TRUE(repeat.ok()) << repeat.status();
  EXPECT_EQ(*repeat, *first);
  EXPECT_EQ(store_->GetCandidate(id)->preemptions, 1);
  // A completion after the failure was reported is refused.
  EXPECT_EQ(store_->CompleteCandidate(id, token, "w1", MakeResult(0.5), {}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, WorkersAreLeasedOnlyWhatTheyCanTrain) {
  WorkerRecord narrow{"narrow"}, small{"small"}, any{"any"};
  narrow.families = {"A", "B", "C"};
  small.gpu_memory_bytes = 1000;
  for (const auto& w : {narrow, small, any}) ASSERT_TRUE(store_->RegisterWorker(w, kT0).ok());
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 4), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(
      store_
          ->InsertCandidates(c->id,
                             {Cand(0, {"A", "B", "D"}, 0, 2000), Cand(1, {"A", "B", "C"}, 0, 500),
                              Cand(2, {"A", "C", "D"}, 0, 500), Cand(3, {"B", "C", "D"}, 0, 5000)},
                             kT0)
          .ok());
  auto families_of = [&](const std::string& worker) -> std::vector<std::string> {
    auto g = store_->LeaseNext(worker, kT0, kLease);
    EXPECT_TRUE(g.ok()) << g.status();
    if (!g.ok() || !g->has_value()) return {};
    return (*g)->candidate.families;
  };
  // The narrow worker builds only A, B and C; the small one has 1000 bytes of device memory.
  EXPECT_THAT(families_of("narrow"), ElementsAre("A", "B", "C"));
  EXPECT_TRUE(families_of("narrow").empty());
  EXPECT_THAT(families_of("small"), ElementsAre("A", "C", "D"));
  EXPECT_TRUE(families_of("small").empty());
  EXPECT_THAT(families_of("any"), ElementsAre("A", "B", "D"));
  EXPECT_THAT(families_of("any"), ElementsAre("B", "C", "D"));
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

TEST_P(StoreConformanceTest, MetricsAreIdempotentAndBoundToTheLease) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  const int64_t id = g.candidate.id, token = g.candidate.lease_token;
  std::vector<MetricRecord> points = {{0, 0, 10, 1, "train_loss", 1.5, 1000},
                                      {0, 0, 10, 1, "test_accuracy", 0.5, 1000},
                                      {0, 0, 20, 2, "train_loss", 1.2, 2000}};
  auto n = store_->AppendMetrics(id, token, "w1", points);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  points.push_back({0, 0, 30, 3, "train_loss", std::nan(""), 3000});
  auto again = store_->AppendMetrics(id, token, "w1", points);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 1);
  EXPECT_EQ(store_->AppendMetrics(id, token, "w2", points).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AppendMetrics(id, token + 7, "w1", points).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto stored = store_->GetMetrics(id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 4u);
  EXPECT_EQ((*stored)[0].attempt, 1);
  EXPECT_EQ((*stored)[0].step, 10);
  EXPECT_TRUE(std::isnan((*stored)[3].value));
}

TEST_P(StoreConformanceTest, CancelStopsPendingFlagsLeasedAndIsFinal) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 4, 3, &campaign, &g));
  auto c = store_->CancelCampaign(campaign, kT0 + absl::Seconds(1));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state, CampaignState::kCancelled);
  EXPECT_EQ(c->counts.cancelled, 3);
  EXPECT_EQ(c->counts.leased, 1);
  EXPECT_EQ(c->counts.pending, 0);
  auto none = store_->LeaseNext("w2", kT0, kLease);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto renewal = store_->RenewLease(g.candidate.id, g.candidate.lease_token, "w1", kT0, kLease);
  ASSERT_TRUE(renewal.ok());
  EXPECT_TRUE(renewal->cancel);
  auto stopped = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                       quartet::v1::ERROR_CLASS_CANCELLED, "cancelled", true, kT0);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(*stopped, CandidateState::kCancelled);
  EXPECT_EQ(store_->CancelCampaign(campaign, kT0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->InsertCandidates(campaign, {Cand(9, {"A", "B", "C"}, 9)}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, CampaignIsDoneOnlyWhenTheWholeBudgetIsFinal) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 2), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(store_->InsertCandidates(c->id, {Cand(0, {"A", "B", "C"})}, kT0).ok());
  auto g = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(g.ok() && g->has_value());
  ASSERT_TRUE(store_
                  ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                      MakeResult(0.4), {}, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCampaign(c->id)->state, CampaignState::kRunning);  // 1 of 2 issued
  ASSERT_TRUE(store_->InsertCandidates(c->id, {Cand(1, {"A", "B", "D"})}, kT0).ok());
  g = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(g.ok() && g->has_value());
  ASSERT_TRUE(store_
                  ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                      MakeResult(0.3), {}, kT0 + absl::Seconds(9))
                  .ok());
  auto done = store_->GetCampaign(c->id);
  EXPECT_EQ(done->state, CampaignState::kDone);
  EXPECT_EQ(done->finished_at, kT0 + absl::Seconds(9));
  EXPECT_DOUBLE_EQ(done->best_accuracy, 0.4);
}

TEST_P(StoreConformanceTest, ListsCandidatesByStateAndAccuracy) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 3), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(
      store_
          ->InsertCandidates(
              c->id, {Cand(0, {"A", "B", "C"}), Cand(1, {"A", "B", "D"}), Cand(2, {"A", "C", "D"})},
              kT0)
          .ok());
  const double acc[] = {0.2, 0.7};
  for (double a : acc) {
    auto g = store_->LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(g.ok() && g->has_value());
    ASSERT_TRUE(store_
                    ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                        MakeResult(a), {}, kT0)
                    .ok());
  }
  auto best = store_->ListCandidates({c->id, {CandidateState::kSucceeded}, true, 0});
  ASSERT_TRUE(best.ok());
  ASSERT_EQ(best->size(), 2u);
  EXPECT_DOUBLE_EQ((*best)[0].test_accuracy, 0.7);
  EXPECT_TRUE((*best)[0].result.has_value());
  // Without results: the same rows and accuracies, no result documents.
  CandidateQuery light{c->id, {CandidateState::kSucceeded}, true, 0};
  light.without_results = true;
  auto bare = store_->ListCandidates(light);
  ASSERT_TRUE(bare.ok());
  ASSERT_EQ(bare->size(), 2u);
  EXPECT_DOUBLE_EQ((*bare)[0].test_accuracy, 0.7);
  EXPECT_EQ((*bare)[1].id, (*best)[1].id);
  EXPECT_FALSE((*bare)[0].result.has_value());
  EXPECT_FALSE((*bare)[1].result.has_value());
  auto pending = store_->ListCandidates({c->id, {CandidateState::kPending}, false, 0});
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].rank, 2u);
  EXPECT_THAT((*pending)[0].families, ElementsAre("A", "C", "D"));
  auto limited = store_->ListCandidates({c->id, {}, false, 2});
  EXPECT_EQ(limited->size(), 2u);
  EXPECT_EQ(store_->ListCandidates({c->id + 50, {}, false, 0}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, ConcurrentLeasesNeverShareACandidate) {
  constexpr int kWorkers = 4, kCandidates = 24;
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(store_->RegisterWorker({"w" + std::to_string(w)}, kT0).ok());
  }
  std::vector<std::string> pool;
  for (int i = 0; i < 10; ++i) pool.push_back("F" + std::to_string(i));
  auto c = store_->CreateCampaign(MakeCampaign(pool, kCandidates), kT0);
  ASSERT_TRUE(c.ok());
  std::vector<NewCandidate> cands;
  for (int i = 0; i < kCandidates; ++i)
    cands.push_back(Cand(0, {pool[i % 8], pool[8], pool[9]}, i));
  ASSERT_TRUE(store_->InsertCandidates(c->id, cands, kT0).ok());
  std::mutex mu;
  std::vector<int64_t> leased;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kCandidates; ++i) {  // bounded
        auto g = store_->LeaseNext("w" + std::to_string(w), kT0, kLease);
        if (!g.ok()) {
          if (g.status().code() != absl::StatusCode::kAborted) errors++;
          continue;
        }
        if (!g->has_value()) break;
        std::lock_guard<std::mutex> lock(mu);
        leased.push_back((*g)->candidate.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<int64_t> unique(leased.begin(), leased.end());
  EXPECT_EQ(unique.size(), leased.size());
  EXPECT_EQ(static_cast<int>(leased.size()), kCandidates);
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

// Random operations; afterwards the stored counters must equal a recount of the candidates. With
// `axes`, the campaign has two parameter axes and every candidate a point on them.
void RunRandomOperations(Store* store_, bool axes) {
  std::mt19937 rng(42);
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  const std::vector<std::string> pool = {"A", "B", "C", "D", "E"};
  CampaignRecord rec = MakeCampaign(pool, 30, 2);
  if (axes) AddTwoAxes(rec);
  auto c = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok());
  std::vector<std::vector<std::string>> combos;
  for (int a = 0; a < 5; ++a)
    for (int b = a + 1; b < 5; ++b)
      for (int d = b + 1; d < 5; ++d) combos.push_back({pool[a], pool[b], pool[d]});
  int issued = 0;
  std::vector<LeaseGrant> held;
  absl::Time now = kT0;
  for (int step = 0; step < 150; ++step) {
    now += absl::Seconds(1);
    switch (rng() % 5) {
      case 0:
        if (issued < 30) {
          const NewCandidate nc =
              axes ? AxCand(issued, combos[issued % 10], {issued % 3, (issued / 3) % 4})
                   : Cand(issued % 10, combos[issued % 10], issued / 10);
          ASSERT_TRUE(store_->InsertCandidates(c->id, {nc}, now).ok());
          ++issued;
        }
        break;
      case 1: {
        auto g = store_->LeaseNext("w1", now, absl::Seconds(5));
        ASSERT_TRUE(g.ok());
        if (g->has_value()) held.push_back(**g);
        break;
      }
      case 2:
        if (!held.empty()) {
          auto g = held.back();
          held.pop_back();
          (void)store_->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                          MakeResult((rng() % 100) / 100.0), {}, now);
        }
        break;
      case 3:
        if (!held.empty()) {
          auto g = held.front();
          held.erase(held.begin());
          (void)store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      quartet::v1::ERROR_CLASS_OOM, "oom", rng() % 2 == 0, now);
        }
        break;
      case 4:
        ASSERT_TRUE(store_->ExpireLeases(now).ok());
        break;
    }
  }
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

TEST_P(StoreConformanceTest, CountersEqualARecountAfterRandomOperations) {
  RunRandomOperations(store_.get(), /*axes=*/false);
}

TEST_P(StoreConformanceTest, AxisCountersEqualARecountAfterRandomOperations) {
  RunRandomOperations(store_.get(), /*axes=*/true);
}

// ---- Parameter axes ----

TEST_P(StoreConformanceTest, CreatesZeroAxisCoverageForEveryLevelAndFamilyLevel) {
  CampaignRecord rec = MakeCampaign({"A", "B", "C", "D"}, 4, 3, 0, 2);
  AddTwoAxes(rec);
  auto c = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok()) << c.status();
  auto cov = store_->GetCoverage(c->id);
  ASSERT_TRUE(cov.ok()) << cov.status();
  ASSERT_EQ(cov->levels.size(), (3u + 4u) * 5u);
  EXPECT_EQ(cov->levels[0].axis, 0);
  EXPECT_EQ(cov->levels[0].level, 0);
  EXPECT_EQ(cov->levels[0].family, "");
  EXPECT_EQ(cov->levels[1].family, "A");
  EXPECT_EQ(cov->levels[4].family, "D");
  EXPECT_EQ(cov->levels[5].level, 1);
  EXPECT_EQ(cov->levels[5].family, "");
  EXPECT_EQ(cov->levels[15].axis, 1);
  EXPECT_EQ(cov->levels[15].level, 0);
  EXPECT_EQ(cov->levels.back().axis, 1);
  EXPECT_EQ(cov->levels.back().level, 3);
  EXPECT_EQ(cov->levels.back().family, "D");
  for (const LevelCounter& l : cov->levels) EXPECT_EQ(l.counts.total(), 0);
  ExpectCoverageMatchesCandidates(*store_, c->id);
}

// Every transition moves a candidate's axis cells with it: after each step the axis counters
// equal a recount; levels and axis values round-trip through every read.
TEST_P(StoreConformanceTest, AxisCoverageFollowsEveryTransition) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  ASSERT_TRUE(store_->RegisterWorker({"w2"}, kT0).ok());
  CampaignRecord rec = MakeCampaign({"A", "B", "C", "D"}, 12, 2, 0, 2);
  AddTwoAxes(rec);
  auto camp = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(camp.ok()) << camp.status();
  const int64_t id = camp->id;
  std::vector<NewCandidate> inserted = {
      AxCand(0, {"A", "B"}, {0, 0}), AxCand(1, {"A", "C"}, {1, 3}),   AxCand(2, {"B", "D"}, {2, 1}),
      AxCand(3, {"C", "D"}, {0, 2}), AxCand(4, {"A", "D"}, {1, 1}),   AxCand(5, {"B", "C"}, {2, 0}),
      AxCand(6, {"A", "B"}, {2, 3}), AxCand(7, {"A", "B"}, {2, 3}, 1)};
  ASSERT_TRUE(store_->InsertCandidates(id, inserted, kT0).ok());
  ExpectCoverageMatchesCandidates(*store_, id);
  std::map<uint64_t, NewCandidate> by_rank;
  for (const NewCandidate& nc : inserted) by_rank[nc.rank * 10 + nc.repeat] = nc;
  auto expect_round_trip = [&](const CandidateRecord& c) {
    const NewCandidate& nc = by_rank.at(c.rank * 10 + c.repeat);
    EXPECT_EQ(c.levels, nc.levels) << "candidate " << c.id;
    EXPECT_EQ(c.axis_values, nc.axis_values) << "candidate " << c.id;
    EXPECT_EQ(c.families, nc.families) << "candidate " << c.id;
  };
  auto all = store_->ListCandidates({id, {}, false, 0});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), inserted.size());
  for (const CandidateRecord& c : *all) {
    expect_round_trip(c);
    auto got = store_->GetCandidate(c.id);
    ASSERT_TRUE(got.ok());
    expect_round_trip(*got);
  }
  auto lease = [&](const std::string& worker, absl::Time now) {
    auto g = store_->LeaseNext(worker, now, kLease);
    EXPECT_TRUE(g.ok() && g->has_value());
    if (!g.ok() || !g->has_value()) return LeaseGrant{};
    LeaseGrant grant = **g;
    expect_round_trip(grant.candidate);
    return grant;
  };

  // Lease, then complete.
  LeaseGrant g = lease("w1", kT0);
  ExpectCoverageMatchesCandidates(*store_, id);
  ASSERT_TRUE(store_
                  ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      MakeResult(0.6), {}, kT0)
                  .ok());
  ExpectCoverageMatchesCandidates(*store_, id);

  // Retryable failure: back to PENDING.
  g = lease("w1", kT0);
  auto failed = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      quartet::v1::ERROR_CLASS_OOM, "oom", true, kT0);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(*failed, CandidateState::kPending);
  ExpectCoverageMatchesCandidates(*store_, id);

  // Non-retryable failure: FAILED (the requeued candidate comes first again).
  g = lease("w2", kT0);
  failed = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w2",
                                 quartet::v1::ERROR_CLASS_NUMERIC, "nan", false, kT0);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(*failed, CandidateState::kFailed);
  ExpectCoverageMatchesCandidates(*store_, id);

  // Preemption: back to PENDING, no attempt used.
  g = lease("w1", kT0);
  failed = store_->FailCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                 quartet::v1::ERROR_CLASS_PREEMPTED, "preempted", true, kT0);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(*failed, CandidateState::kPending);
  ExpectCoverageMatchesCandidates(*store_, id);

  // Expiry: back to PENDING; then the holder comes back and completes (revival).
  g = lease("w1", kT0);
  auto expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].new_state, CandidateState::kPending);
  ExpectCoverageMatchesCandidates(*store_, id);
  ASSERT_TRUE(store_
                  ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      MakeResult(0.7), {}, kT0 + kLease + absl::Seconds(2))
                  .ok());
  EXPECT_EQ(store_->GetCandidate(g.candidate.id)->state, CandidateState::kSucceeded);
  ExpectCoverageMatchesCandidates(*store_, id);

  // Expiry with attempts used up: FAILED; the holder's heartbeat revives it to LEASED.
  g = lease("w2", kT0);
  ASSERT_TRUE(store_
                  ->FailCandidate(g.candidate.id, g.candidate.lease_token, "w2",
                                  quartet::v1::ERROR_CLASS_INTERNAL, "fault", true, kT0)
                  .ok());
  g = lease("w2", kT0);  // the same candidate, attempt 2 of 2
  expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].new_state, CandidateState::kFailed);
  ExpectCoverageMatchesCandidates(*store_, id);
  ASSERT_TRUE(store_->RenewLease(g.candidate.id, g.candidate.lease_token, "w2", kT0, kLease).ok());
  EXPECT_EQ(store_->GetCandidate(g.candidate.id)->state, CandidateState::kLeased);
  ExpectCoverageMatchesCandidates(*store_, id);

  // Cancel: pending candidates CANCELLED, the leased one flagged; its hand-back CANCELLED.
  auto cancelled = store_->CancelCampaign(id, kT0 + absl::Seconds(5));
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  ExpectCoverageMatchesCandidates(*store_, id);
  ASSERT_TRUE(store_
                  ->FailCandidate(g.candidate.id, g.candidate.lease_token, "w2",
                                  quartet::v1::ERROR_CLASS_CANCELLED, "cancelled", true, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCandidate(g.candidate.id)->state, CandidateState::kCancelled);
  ExpectCoverageMatchesCandidates(*store_, id);

  auto cov = store_->GetCoverage(id);
  ASSERT_TRUE(cov.ok());
  StateCounts axis0;
  for (const LevelCounter& l : cov->levels) {
    if (l.axis == 0 && l.family.empty()) {
      axis0.pending += l.counts.pending;
      axis0.leased += l.counts.leased;
      axis0.succeeded += l.counts.succeeded;
      axis0.failed += l.counts.failed;
      axis0.cancelled += l.counts.cancelled;
    }
  }
  EXPECT_EQ(axis0, store_->GetCampaign(id)->counts);  // each candidate in one level per axis
  auto final_list = store_->ListCandidates({id, {}, false, 0});
  ASSERT_TRUE(final_list.ok());
  for (const CandidateRecord& c : *final_list) expect_round_trip(c);
}

TEST_P(StoreConformanceTest, RefusesCandidatesWhoseLevelsDoNotFitTheAxes) {
  CampaignRecord rec = MakeCampaign({"A", "B", "C"}, 10, 3, 0, 2);
  AddTwoAxes(rec);
  auto c = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(store_->InsertCandidates(c->id, {AxCand(0, {"A", "B"}, {0, 0})}, kT0).ok());
  NewCandidate no_values = AxCand(5, {"A", "B"}, {0, 0});
  no_values.axis_values.pop_back();
  for (const NewCandidate& bad :
       {AxCand(1, {"A", "B"}, {0}), AxCand(2, {"A", "B"}, {0, 0, 0}), AxCand(3, {"A", "B"}, {3, 0}),
        AxCand(4, {"A", "B"}, {0, -1}), no_values, Cand(6, {"A", "B"})}) {
    // Alone, and after a good candidate of the same batch: nothing of the batch is inserted.
    EXPECT_EQ(store_->InsertCandidates(c->id, {bad}, kT0).code(),
              absl::StatusCode::kInvalidArgument)
        << bad.rank;
    EXPECT_EQ(store_->InsertCandidates(c->id, {AxCand(9, {"A", "C"}, {1, 1}), bad}, kT0).code(),
              absl::StatusCode::kInvalidArgument)
        << bad.rank;
  }
  EXPECT_EQ(store_->GetCampaign(c->id)->issued, 1);
  ExpectCoverageMatchesCandidates(*store_, c->id);

  // A campaign without axes takes no levels.
  auto plain = store_->CreateCampaign(MakeCampaign({"A", "B", "C"}, 2, 3, 0, 2), kT0);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(store_->InsertCandidates(plain->id, {AxCand(0, {"A", "B"}, {0})}, kT0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetCampaign(plain->id)->issued, 0);
  ExpectCoverageMatchesCandidates(*store_, plain->id);
}

TEST_P(StoreConformanceTest, RefusesCampaignsWhoseKDoesNotFitThePool) {
  EXPECT_EQ(store_->CreateCampaign(MakeCampaign({"A", "B"}, 1, 3, 0, 3), kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateCampaign(MakeCampaign({"A", "B"}, 1, 3, 0, -1), kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  CampaignRecord pooled = MakeCampaign({"A"}, 1, 3, 0, 0);
  pooled.config.set_without_families(true);
  EXPECT_EQ(store_->CreateCampaign(pooled, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->ListCampaigns({}, 0)->empty());
}

// One backbone family per candidate (k = 1): no pairs to count, axis cells per family.
TEST_P(StoreConformanceTest, SingleFamilyCampaignsWork) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  for (const std::vector<std::string>& pool :
       {std::vector<std::string>{"A"}, std::vector<std::string>{"A", "B", "C"}}) {
    CampaignRecord rec = MakeCampaign(pool, 3, 3, 0, 1);
    AddTwoAxes(rec);
    auto c = store_->CreateCampaign(rec, kT0);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->k, 1);
    auto cov = store_->GetCoverage(c->id);
    ASSERT_TRUE(cov.ok());
    EXPECT_EQ(cov->families.size(), pool.size());
    EXPECT_EQ(cov->pairs.size(), pool.size() * (pool.size() - 1) / 2);
    EXPECT_EQ(cov->levels.size(), 7 * (pool.size() + 1));
    ASSERT_TRUE(
        store_
            ->InsertCandidates(c->id,
                               {AxCand(0, {pool[0]}, {0, 1}), AxCand(1, {pool.back()}, {2, 3}),
                                AxCand(2, {pool[0]}, {0, 1}, 1)},
                               kT0)
            .ok());
    ExpectCoverageMatchesCandidates(*store_, c->id);
    for (int i = 0; i < 2; ++i) {
      auto g = store_->LeaseNext("w1", kT0, kLease);
      ASSERT_TRUE(g.ok() && g->has_value());
      EXPECT_EQ((*g)->candidate.families.size(), 1u);
      EXPECT_EQ((*g)->candidate.levels.size(), 2u);
      ASSERT_TRUE(store_
                      ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                          MakeResult(0.5), {}, kT0)
                      .ok());
      ExpectCoverageMatchesCandidates(*store_, c->id);
    }
    auto left = store_->LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(left.ok() && left->has_value());
    ASSERT_TRUE(store_
                    ->FailCandidate((*left)->candidate.id, (*left)->candidate.lease_token, "w1",
                                    quartet::v1::ERROR_CLASS_NUMERIC, "nan", false, kT0)
                    .ok());
    ExpectCoverageMatchesCandidates(*store_, c->id);
    EXPECT_EQ(store_->GetCampaign(c->id)->state, CampaignState::kDone);
    cov = store_->GetCoverage(c->id);
    EXPECT_EQ(cov->families[0].counts.succeeded, pool.size() == 1 ? 2 : 1);
  }
}

// No family axis (k = 0, empty pool): candidates carry no families, only axis levels; any worker
// can take them.
TEST_P(StoreConformanceTest, CampaignsWithoutFamiliesWork) {
  WorkerRecord picky;
  picky.id = "w1";
  picky.families = {"A"};
  ASSERT_TRUE(store_->RegisterWorker(picky, kT0).ok());
  CampaignRecord rec = MakeCampaign({}, 4, 3, 0, 0);
  rec.config.set_without_families(true);
  AddTwoAxes(rec);
  auto c = store_->CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->k, 0);
  auto cov = store_->GetCoverage(c->id);
  ASSERT_TRUE(cov.ok());
  EXPECT_TRUE(cov->families.empty());
  EXPECT_TRUE(cov->pairs.empty());
  ASSERT_EQ(cov->levels.size(), 7u);  // level rows only
  for (const LevelCounter& l : cov->levels) EXPECT_EQ(l.family, "");

  EXPECT_EQ(store_->InsertCandidates(c->id, {AxCand(9, {"A"}, {0, 0})}, kT0).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_
                  ->InsertCandidates(c->id,
                                     {AxCand(0, {}, {0, 0}), AxCand(1, {}, {1, 2}),
                                      AxCand(2, {}, {2, 3}), AxCand(3, {}, {2, 3}, 1)},
                                     kT0)
                  .ok());
  ExpectCoverageMatchesCandidates(*store_, c->id);
  auto g = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_TRUE((*g)->candidate.families.empty());
  EXPECT_EQ((*g)->candidate.levels, (std::vector<int>{0, 0}));
  EXPECT_EQ((*g)->config.pool_size(), 0);
  EXPECT_TRUE((*g)->config.without_families());
  ExpectCoverageMatchesCandidates(*store_, c->id);
  ASSERT_TRUE(store_
                  ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1",
                                      MakeResult(0.8), {}, kT0)
                  .ok());
  ExpectCoverageMatchesCandidates(*store_, c->id);
  g = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(g.ok() && g->has_value());
  auto expired = store_->ExpireLeases(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(expired->size(), 1u);
  ExpectCoverageMatchesCandidates(*store_, c->id);
  auto cancelled = store_->CancelCampaign(c->id, kT0);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->counts.cancelled, 3);
  ExpectCoverageMatchesCandidates(*store_, c->id);
  cov = store_->GetCoverage(c->id);
  EXPECT_EQ(cov->levels[0].counts.succeeded, 1);  // axis 0, level 0
}

// ---- Operator control: pause, resume, update, drain, the fleet ----

TEST_P(StoreConformanceTest, PausedCampaignsLeaseNothingAndLeasedCandidatesFinish) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 4, 3, &campaign, &g));
  auto paused = store_->SetCampaignPaused(campaign, true, kT0 + absl::Seconds(1));
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state, CampaignState::kPaused);
  EXPECT_EQ(paused->updated_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kPaused);
  auto none = store_->LeaseNext("w2", kT0, kLease);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "a paused campaign leased candidate " << (*none)->candidate.id;
  // Pausing again changes nothing; the leased candidate renews and completes as usual.
  auto again = store_->SetCampaignPaused(campaign, true, kT0 + absl::Seconds(5));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->updated_at, kT0 + absl::Seconds(1));
  auto renewal = store_->RenewLease(g.candidate.id, g.candidate.lease_token, "w1", kT0, kLease);
  ASSERT_TRUE(renewal.ok());
  EXPECT_FALSE(renewal->cancel);
  ASSERT_TRUE(store_
                  ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      MakeResult(0.6), {}, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCampaign(campaign)->counts.succeeded, 1);
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kPaused);

  auto resumed = store_->SetCampaignPaused(campaign, false, kT0 + absl::Seconds(2));
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->state, CampaignState::kRunning);
  auto next = store_->LeaseNext("w2", kT0, kLease);
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->candidate.campaign_id, campaign);
  ExpectCoverageMatchesCandidates(*store_, campaign);

  ASSERT_TRUE(store_->CancelCampaign(campaign, kT0).ok());
  auto refused = store_->SetCampaignPaused(campaign, true, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("CANCELLED"));
  EXPECT_EQ(store_->SetCampaignPaused(campaign, false, kT0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->SetCampaignPaused(campaign + 50, true, kT0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, APausedCampaignIsDoneWhenItsLastLeasedCandidateFinishes) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 1, 3, &campaign, &g));
  ASSERT_TRUE(store_->SetCampaignPaused(campaign, true, kT0).ok());
  ASSERT_TRUE(store_
                  ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      MakeResult(0.6), {}, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCampaign(campaign)->state, CampaignState::kDone);
  auto refused = store_->SetCampaignPaused(campaign, true, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("DONE"));
}

TEST_P(StoreConformanceTest, UpdateChangesPriorityAndBudgetButNeverBelowIssued) {
  ASSERT_TRUE(store_->RegisterWorker({"w1"}, kT0).ok());
  auto low = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 2, 3, 0), kT0);
  auto high = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 2, 3, 5), kT0);
  ASSERT_TRUE(low.ok() && high.ok());
  ASSERT_TRUE(
      store_->InsertCandidates(low->id, {Cand(0, {"A", "B", "C"}), Cand(1, {"A", "B", "D"})}, kT0)
          .ok());
  ASSERT_TRUE(store_->InsertCandidates(high->id, {Cand(0, {"A", "B", "C"})}, kT0).ok());

  // Raised above the other campaign, the queued candidates of `low` are leased first.
  CampaignUpdate up;
  up.priority = 9;
  auto raised = store_->UpdateCampaign(low->id, up, kT0 + absl::Seconds(3));
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->priority, 9);
  EXPECT_EQ(raised->config.priority(), 9);
  EXPECT_EQ(raised->budget, 2);
  EXPECT_EQ(raised->updated_at, kT0 + absl::Seconds(3));
  auto g = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->candidate.campaign_id, low->id);

  // The budget: below what is issued is refused and changes nothing; raising it lets more in.
  CampaignUpdate below;
  below.budget = 1;
  below.priority = 1;
  auto refused = store_->UpdateCampaign(low->id, below, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("issued 2"));
  EXPECT_EQ(store_->GetCampaign(low->id)->priority, 9);
  CampaignUpdate zero;
  zero.budget = 0;
  EXPECT_EQ(store_->UpdateCampaign(low->id, zero, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->InsertCandidates(low->id, {Cand(2, {"A", "C", "D"})}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  CampaignUpdate more;
  more.budget = 3;
  auto grown = store_->UpdateCampaign(low->id, more, kT0);
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(grown->budget, 3);
  EXPECT_EQ(grown->config.budget(), 3);
  EXPECT_EQ(grown->priority, 9);
  EXPECT_TRUE(store_->InsertCandidates(low->id, {Cand(2, {"A", "C", "D"})}, kT0).ok());
  ExpectCoverageMatchesCandidates(*store_, low->id);

  // A budget lowered to what is issued, with nothing open, finishes the campaign; a finished one
  // cannot be updated.
  auto h = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(h.ok() && h->has_value());
  ASSERT_EQ((*h)->candidate.campaign_id, low->id);
  ASSERT_TRUE(store_->CancelCampaign(low->id, kT0).ok());
  EXPECT_EQ(store_->UpdateCampaign(low->id, more, kT0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto one = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(one.ok() && one->has_value());
  ASSERT_EQ((*one)->candidate.campaign_id, high->id);
  ASSERT_TRUE(store_
                  ->CompleteCandidate((*one)->candidate.id, (*one)->candidate.lease_token, "w1",
                                      MakeResult(0.5), {}, kT0)
                  .ok());
  EXPECT_EQ(store_->GetCampaign(high->id)->state, CampaignState::kRunning);  // 1 of 2 issued
  CampaignUpdate exact;
  exact.budget = 1;
  auto done = store_->UpdateCampaign(high->id, exact, kT0 + absl::Seconds(7));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state, CampaignState::kDone);
  EXPECT_EQ(done->finished_at, kT0 + absl::Seconds(7));
  auto after = store_->UpdateCampaign(high->id, more, kT0);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(after.status().message()), HasSubstr("DONE"));
}

TEST_P(StoreConformanceTest, DrainingIsStoredAndKeptWhenTheWorkerReattaches) {
  auto w = store_->RegisterWorker({"w1", "host-a", "cpu"}, kT0);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->draining);
  auto drained = store_->SetWorkerDraining("w1", true);
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_TRUE(drained->draining);
  EXPECT_TRUE(store_->GetWorker("w1")->draining);
  auto again = store_->RegisterWorker({"w1", "host-a", "cuda:0"}, kT0 + absl::Seconds(1));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->draining);
  EXPECT_TRUE(store_->GetWorker("w1")->draining);
  EXPECT_EQ(store_->GetWorker("w1")->device, "cuda:0");
  ASSERT_TRUE(store_->SetWorkerDraining("w1", false).ok());
  EXPECT_FALSE(store_->GetWorker("w1")->draining);
  EXPECT_EQ(store_->SetWorkerDraining("ghost", true).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreConformanceTest, ListWorkersShowsWhatEachHoldsAndHasFinished) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 4, 3, &campaign, &g));
  // w1 completes its candidate and holds another; w2 fails one for good and holds nothing.
  ASSERT_TRUE(store_
                  ->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1",
                                      MakeResult(0.6), {}, kT0)
                  .ok());
  auto held = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(held.ok() && held->has_value());
  auto bad = store_->LeaseNext("w2", kT0, kLease);
  ASSERT_TRUE(bad.ok() && bad->has_value());
  ASSERT_TRUE(store_
                  ->FailCandidate((*bad)->candidate.id, (*bad)->candidate.lease_token, "w2",
                                  quartet::v1::ERROR_CLASS_NUMERIC, "nan", false, kT0)
                  .ok());
  ASSERT_TRUE(store_->SetWorkerDraining("w2", true).ok());
  // Progress: the latest epoch among the held candidate's metric points of this attempt.
  std::vector<MetricRecord> points(2);
  points[0].step = 10;
  points[0].epoch = 1;
  points[0].name = "train_loss";
  points[1].step = 20;
  points[1].epoch = 2;
  points[1].name = "step/loss";
  ASSERT_TRUE(
      store_->AppendMetrics((*held)->candidate.id, (*held)->candidate.lease_token, "w1", points)
          .ok());
  auto fleet = store_->ListWorkers();
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  ASSERT_EQ(fleet->size(), 2u);
  const WorkerActivity& w1 = (*fleet)[0];
  const WorkerActivity& w2 = (*fleet)[1];
  EXPECT_EQ(w1.worker.id, "w1");
  ASSERT_EQ(w1.leased.size(), 1u);
  EXPECT_EQ(w1.leased[0].candidate.id, (*held)->candidate.id);
  EXPECT_EQ(w1.leased[0].epoch, 2);
  EXPECT_EQ(w1.succeeded, 1);
  EXPECT_EQ(w1.failed, 0);
  EXPECT_FALSE(w1.worker.draining);
  EXPECT_EQ(w2.worker.id, "w2");
  EXPECT_TRUE(w2.leased.empty());
  EXPECT_EQ(w2.succeeded, 0);
  EXPECT_EQ(w2.failed, 1);
  EXPECT_TRUE(w2.worker.draining);
}

TEST_P(StoreConformanceTest, ListsCandidatesAPageAfterAnId) {
  auto c = store_->CreateCampaign(MakeCampaign({"A", "B", "C", "D"}, 4), kT0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(store_
                  ->InsertCandidates(c->id,
                                     {Cand(0, {"A", "B", "C"}), Cand(1, {"A", "B", "D"}),
                                      Cand(2, {"A", "C", "D"}), Cand(3, {"B", "C", "D"})},
                                     kT0)
                  .ok());
  std::vector<uint64_t> ranks;
  CandidateQuery q{c->id, {}, false, 3};
  while (true) {
    auto page = store_->ListCandidates(q);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->empty()) break;
    ASSERT_LE(page->size(), 3u);
    for (const CandidateRecord& r : *page) ranks.push_back(r.rank);
    q.after_id = page->back().id;
  }
  EXPECT_THAT(ranks, ElementsAre(0, 1, 2, 3));
}

// ---- Multi-fidelity (CompleteRung) and artifacts ----

// A multi-fidelity campaign of 4 candidates over {A,B,C,D}, k = 3, rungs 1 and 3 epochs; every
// candidate leased to w1 (grants in id order).
void RungFixture(Store& store, int64_t* campaign, std::vector<LeaseGrant>* grants) {
  ASSERT_TRUE(store.RegisterWorker({"w1"}, kT0).ok());
  CampaignRecord rec = MakeCampaign({"A", "B", "C", "D"}, 4);
  quartet::v1::MultiFidelity* f = rec.config.mutable_fidelity();
  f->add_rung_epochs(1);
  f->add_rung_epochs(3);
  f->set_eta(2);
  auto c = store.CreateCampaign(rec, kT0);
  ASSERT_TRUE(c.ok());
  *campaign = c->id;
  ASSERT_TRUE(store
                  .InsertCandidates(c->id,
                                    {Cand(0, {"A", "B", "C"}), Cand(1, {"A", "B", "D"}),
                                     Cand(2, {"A", "C", "D"}), Cand(3, {"B", "C", "D"})},
                                    kT0)
                  .ok());
  for (int i = 0; i < 4; ++i) {
    auto g = store.LeaseNext("w1", kT0, kLease);
    ASSERT_TRUE(g.ok() && g->has_value());
    grants->push_back(**g);
  }
}

quartet::v1::Artifact MakeArtifact(const std::string& name, int epoch) {
  quartet::v1::Artifact a;
  a.set_uri(absl::StrCat("file:///artifacts/", name));
  a.set_size_bytes(1000 + epoch);
  a.set_sha256(std::string(64, 'a'));
  a.set_epoch(epoch);
  a.set_attempt(1);
  return a;
}

TEST_P(StoreConformanceTest, RungCompletionsStopEarlyPromoteAndQueuePromotedWorkFirst) {
  int64_t campaign;
  std::vector<LeaseGrant> g;
  ASSERT_NO_FATAL_FAILURE(RungFixture(*store_, &campaign, &g));
  const auto& c0 = g[0].candidate;
  const auto& c1 = g[1].candidate;
  // c0 completes rung 0, not promoted: STOPPED_EARLY with its rung result.
  RungCompletion stop{0, 1, false, {}};
  quartet::v1::Result r0 = MakeResult(0.60);
  *r0.mutable_checkpoint() = MakeArtifact("c0-e1.ckpt", 1);
  ASSERT_TRUE(store_->CompleteRung(c0.id, c0.lease_token, "w1", r0, {}, stop, kT0).ok());
  auto s0 = store_->GetCandidate(c0.id);
  EXPECT_EQ(s0->state, CandidateState::kStoppedEarly);
  ASSERT_EQ(s0->rungs.size(), 1u);
  EXPECT_EQ(s0->rungs[0].epochs(), 1);
  EXPECT_DOUBLE_EQ(s0->rungs[0].test_accuracy(), 0.60);
  EXPECT_FALSE(s0->rungs[0].promoted());
  ASSERT_TRUE(s0->checkpoint.has_value());
  EXPECT_EQ(s0->checkpoint->uri(), "file:///artifacts/c0-e1.ckpt");
  EXPECT_EQ(store_->GetCampaign(campaign)->counts.stopped_early, 1);

  // c1 completes rung 0 and promotes itself and c0 (the guard's pick): both PENDING at rung 1.
  RungCompletion up{0, 1, false, {{c1.id, 1, false}, {c0.id, 1, true}}};
  ASSERT_TRUE(
      store_->CompleteRung(c1.id, c1.lease_token, "w1", MakeResult(0.70), {}, up, kT0).ok());
  for (int64_t id : {c0.id, c1.id}) {
    auto s = store_->GetCandidate(id);
    EXPECT_EQ(s->state, CandidateState::kPending) << id;
    EXPECT_EQ(s->rung, 1) << id;
    ASSERT_EQ(s->rungs.size(), 1u);
    EXPECT_TRUE(s->rungs[0].promoted()) << id;
    EXPECT_EQ(s->rungs[0].guard(), id == c0.id) << id;
  }
  // A repeat of a completion that promoted its own candidate answers OK and changes nothing.
  EXPECT_TRUE(
      store_->CompleteRung(c1.id, c1.lease_token, "w1", MakeResult(0.99), {}, up, kT0).ok());
  EXPECT_EQ(store_->GetCandidate(c1.id)->state, CandidateState::kPending);
  // Promoting a candidate that is not STOPPED_EARLY is refused and stores nothing.
  const auto& c2 = g[2].candidate;
  RungCompletion bad{0, 1, false, {{c1.id, 1, false}}};
  EXPECT_EQ(store_->CompleteRung(c2.id, c2.lease_token, "w1", MakeResult(0.5), {}, bad, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetCandidate(c2.id)->state, CandidateState::kLeased);

  // Promoted work is queued: leased again (rung 1) with the checkpoint to resume from.
  auto again = store_->LeaseNext("w1", kT0, kLease);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->candidate.rung, 1);
  EXPECT_EQ((*again)->candidate.id, c0.id);
  ASSERT_TRUE((*again)->candidate.checkpoint.has_value());
  // The last rung: SUCCEEDED; the campaign is not DONE while candidates are open.
  RungCompletion last{1, 3, true, {}};
  ASSERT_TRUE(store_
                  ->CompleteRung(c0.id, (*again)->candidate.lease_token, "w1", MakeResult(0.8), {},
                                 last, kT0)
                  .ok());
  auto done0 = store_->GetCandidate(c0.id);
  EXPECT_EQ(done0->state, CandidateState::kSucceeded);
  EXPECT_EQ(done0->rungs.size(), 2u);
  EXPECT_NE(store_->GetCampaign(campaign)->state, CampaignState::kDone);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, StoppedEarlyIsNeverAFailureAndEndsTheCampaign) {
  int64_t campaign;
  std::vector<LeaseGrant> g;
  ASSERT_NO_FATAL_FAILURE(RungFixture(*store_, &campaign, &g));
  for (size_t i = 0; i < g.size(); ++i) {
    RungCompletion stop{0, 1, false, {}};
    ASSERT_TRUE(store_
                    ->CompleteRung(g[i].candidate.id, g[i].candidate.lease_token, "w1",
                                   MakeResult(0.5 + 0.01 * i), {}, stop, kT0)
                    .ok());
  }
  auto camp = store_->GetCampaign(campaign);
  EXPECT_EQ(camp->counts.stopped_early, 4);
  EXPECT_EQ(camp->counts.failed, 0);
  EXPECT_EQ(camp->state, CampaignState::kDone);
  auto cov = store_->GetCoverage(campaign);
  for (const FamilyCounter& f : cov->families) EXPECT_EQ(f.counts.failed, 0);
  ExpectCoverageMatchesCandidates(*store_, campaign);
}

TEST_P(StoreConformanceTest, ArtifactsAreRecordedListedAndDeleted) {
  int64_t campaign;
  LeaseGrant g;
  ASSERT_NO_FATAL_FAILURE(LeasedFixture::Setup(*store_, 2, 3, &campaign, &g));
  quartet::v1::Result r = MakeResult(0.7);
  *r.mutable_checkpoint() = MakeArtifact("x.ckpt", 1);
  *r.mutable_exported_model() = MakeArtifact("x.pt", 1);
  r.set_resume_error("checkpoint missing");
  ASSERT_TRUE(
      store_->CompleteCandidate(g.candidate.id, g.candidate.lease_token, "w1", r, {}, kT0).ok());
  EXPECT_EQ(store_->GetCampaign(campaign)->checkpoint_failures, 1);
  auto listed = store_->ListArtifacts(campaign);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].kind, ArtifactKind::kCheckpoint);
  EXPECT_EQ((*listed)[0].artifact.uri(), "file:///artifacts/x.ckpt");
  EXPECT_EQ((*listed)[0].artifact.size_bytes(), 1001);
  EXPECT_EQ((*listed)[1].kind, ArtifactKind::kExportedModel);
  EXPECT_EQ((*listed)[1].candidate_id, g.candidate.id);
  auto c = store_->GetCandidate(g.candidate.id);
  ASSERT_TRUE(c->checkpoint.has_value() && c->exported_model.has_value());
  EXPECT_EQ(c->exported_model->uri(), "file:///artifacts/x.pt");

  ASSERT_TRUE(store_->MarkArtifactsDeleted({(*listed)[0].id, 987654}, kT0).ok());
  EXPECT_EQ(store_->ListArtifacts(campaign)->size(), 1u);
  c = store_->GetCandidate(g.candidate.id);
  EXPECT_FALSE(c->checkpoint.has_value());
  EXPECT_TRUE(c->exported_model.has_value());
  EXPECT_EQ(store_->ListArtifacts(campaign + 1000).status().code(), absl::StatusCode::kNotFound);
}

// 256 leasers (threads) cycle lease -> complete, fail or renew against two campaigns while a
// sweeper advances a fake clock and ends overdue leases, an inserter issues more work, some leases
// are left to expire and reported late, and one campaign is cancelled halfway. Afterwards every
// counter and coverage row equals a recount, no candidate was leased while its previous lease was
// live, and every completion answered OK is stored.
TEST_P(StoreConformanceTest, ManyLeasersWithCancelsAndExpiriesKeepCountersAndFencing) {
  constexpr int kLeasers = 256, kInitial = 400, kChunk = 40;
  constexpr int64_t kBudget = 1000000;  // never all issued: neither campaign ends DONE
  const absl::Duration kRun = absl::Seconds(4);
  const std::vector<std::string> pool = {"A", "B", "C", "D", "E", "F"};
  std::vector<std::vector<std::string>> combos;
  for (int a = 0; a < 6; ++a)
    for (int b = a + 1; b < 6; ++b)
      for (int d = b + 1; d < 6; ++d) combos.push_back({pool[a], pool[b], pool[d]});
  for (int w = 0; w < kLeasers; ++w) {
    ASSERT_TRUE(store_->RegisterWorker({absl::StrCat("L", w)}, kT0).ok());
  }
  CampaignRecord kept_rec = MakeCampaign(pool, kBudget, 3, /*priority=*/1);
  AddTwoAxes(kept_rec);
  auto kept = store_->CreateCampaign(kept_rec, kT0);
  auto dropped = store_->CreateCampaign(MakeCampaign(pool, kBudget, 3), kT0);
  ASSERT_TRUE(kept.ok() && dropped.ok());
  auto batch = [&](bool axes, int first, int n) {
    std::vector<NewCandidate> out;
    for (int i = first; i < first + n; ++i) {
      const auto& combo = combos[i % combos.size()];
      const int repeat = i / static_cast<int>(combos.size());
      out.push_back(axes ? AxCand(i % combos.size(), combo, {i % 3, (i / 3) % 4}, repeat)
                         : Cand(i % combos.size(), combo, repeat));
    }
    return out;
  };
  ASSERT_TRUE(store_->InsertCandidates(kept->id, batch(true, 0, kInitial), kT0).ok());
  ASSERT_TRUE(store_->InsertCandidates(dropped->id, batch(false, 0, kInitial), kT0).ok());

  std::atomic<int64_t> clock_us{absl::ToUnixMicros(kT0)};
  auto now = [&] { return absl::FromUnixMicros(clock_us.load()); };
  struct Grant {
    int64_t candidate = 0;
    int attempt = 0;
    int64_t token = 0;
  };
  std::mutex mu;
  std::vector<Grant> grants;
  std::set<std::pair<int64_t, int>> ended;  // (candidate, attempt): ended without a result
  std::map<int64_t, int64_t> completed;     // candidate -> token of a completion answered OK
  std::atomic<int> unexpected{0};
  std::atomic<bool> stop{false};
  auto expect_ok_or_refused = [&](const absl::Status& s, const char* what) {
    if (s.ok() || s.code() == absl::StatusCode::kFailedPrecondition) return s.ok();
    if (unexpected++ < 5) ADD_FAILURE() << what << ": " << s;
    return false;
  };
  auto complete = [&](const std::string& worker, const Grant& g) {
    absl::Status s = store_->CompleteCandidate(g.candidate, g.token, worker,
                                               MakeResult(g.candidate % 97 / 100.0), {}, now());
    if (expect_ok_or_refused(s, "complete")) {
      std::lock_guard<std::mutex> lock(mu);
      completed[g.candidate] = g.token;
    }
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kLeasers; ++w) {
    threads.emplace_back([&, w] {
      const std::string worker = absl::StrCat("L", w);
      std::mt19937 rng(w);
      std::optional<Grant> late;  // left to expire, reported later
      while (!stop.load()) {
        auto g = store_->LeaseNext(worker, now(), kLease);
        if (!g.ok()) {
          if (unexpected++ < 5) ADD_FAILURE() << "lease: " << g.status();
          continue;
        }
        if (!g->has_value()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
        const Grant mine{(*g)->candidate.id, (*g)->candidate.attempt, (*g)->candidate.lease_token};
        {
          std::lock_guard<std::mutex> lock(mu);
          grants.push_back(mine);
        }
        const int r = static_cast<int>(rng() % 10);
        if (r == 0 && !late.has_value()) {
          late = mine;
          continue;
        }
        if (r == 1) {
          expect_ok_or_refused(
              store_->RenewLease(mine.candidate, mine.token, worker, now(), kLease).status(),
              "renew");
        }
        if (r == 2 || r == 3) {
          auto f = store_->FailCandidate(
              mine.candidate, mine.token, worker,
              r == 2 ? quartet::v1::ERROR_CLASS_PREEMPTED : quartet::v1::ERROR_CLASS_OOM, "x",
              /*retryable=*/true, now());
          if (expect_ok_or_refused(f.status(), "fail")) {
            std::lock_guard<std::mutex> lock(mu);
            ended.insert({mine.candidate, mine.attempt});
          }
        } else {
          complete(worker, mine);
        }
        if (late.has_value() && rng() % 4 == 0) {
          complete(worker, *late);
          late.reset();
        }
      }
    });
  }
  threads.emplace_back([&] {  // the sweep, on a clock that runs 1 s per 5 ms
    while (!stop.load()) {
      clock_us += absl::ToInt64Microseconds(absl::Seconds(1));
      auto expired = store_->ExpireLeases(now());
      if (!expired.ok()) {
        if (unexpected++ < 5) ADD_FAILURE() << "expire: " << expired.status();
      } else {
        std::lock_guard<std::mutex> lock(mu);
        for (const ExpiredLease& e : *expired) ended.insert({e.candidate_id, e.attempt});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  threads.emplace_back([&] {  // more work, and the cancel halfway
    const absl::Time start = absl::Now();
    bool cancelled = false;
    for (int issued = kInitial; !stop.load(); issued += kChunk) {
      if (issued + kChunk <= kBudget) {
        expect_ok_or_refused(store_->InsertCandidates(kept->id, batch(true, issued, kChunk), now()),
                             "insert");
        if (!cancelled) {
          expect_ok_or_refused(
              store_->InsertCandidates(dropped->id, batch(false, issued, kChunk), now()), "insert");
        }
      }
      if (!cancelled && absl::Now() - start > kRun / 2) {
        expect_ok_or_refused(store_->CancelCampaign(dropped->id, now()).status(), "cancel");
        cancelled = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  absl::SleepFor(kRun);
  stop = true;
  for (auto& t : threads) t.join();

  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(grants.size(), 0u);
  std::set<int64_t> tokens;
  std::set<std::pair<int64_t, int>> granted;
  for (const Grant& g : grants) {
    EXPECT_TRUE(tokens.insert(g.token).second) << "token given twice";
    EXPECT_TRUE(granted.insert({g.candidate, g.attempt}).second)
        << "candidate " << g.candidate << " attempt " << g.attempt << " granted twice";
  }
  // Every lease after the first began after the one before it ended (failed, or swept).
  for (const Grant& g : grants) {
    if (g.attempt > 1) {
      EXPECT_TRUE(ended.count({g.candidate, g.attempt - 1}))
          << "candidate " << g.candidate << " leased (attempt " << g.attempt
          << ") while its lease of attempt " << g.attempt - 1 << " was live";
    }
  }
  for (const auto& [id, token] : completed) {
    auto c = store_->GetCandidate(id);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->state, CandidateState::kSucceeded) << "candidate " << id;
    EXPECT_EQ(c->completed_token, token) << "candidate " << id;
    EXPECT_TRUE(c->result.has_value()) << "candidate " << id;
  }
  auto d = store_->GetCampaign(dropped->id);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state, CampaignState::kCancelled);
  ExpectCoverageMatchesCandidates(*store_, kept->id);
  ExpectCoverageMatchesCandidates(*store_, dropped->id);
}

}  // namespace quartet::coordinator::testing
