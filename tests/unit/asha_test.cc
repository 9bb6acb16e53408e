#include "coordinator/core/asha.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

FidelitySettings Settings(std::vector<int> rungs, int eta, bool guard, int64_t budget_epochs) {
  FidelitySettings s;
  s.rung_epochs = std::move(rungs);
  s.eta = eta;
  s.guard = guard;
  s.guard_min = 1;
  s.budget_epochs = budget_epochs;
  return s;
}

CandidateRecord Leased(int64_t id, std::vector<std::string> families, int rung = 0) {
  CandidateRecord c;
  c.id = id;
  c.families = std::move(families);
  c.rung = rung;
  c.state = CandidateState::kLeased;
  return c;
}

// Tracks, decides and applies one completion; returns the promoted ids (guard ones negated).
std::vector<int64_t> Complete(Asha& asha, const CandidateRecord& c, double accuracy,
                              RungCompletion* plan_out = nullptr) {
  asha.Track(c);
  RungCompletion plan = asha.Decide(c.id, accuracy);
  asha.Apply(c.id, accuracy, plan);
  if (plan_out != nullptr) *plan_out = plan;
  std::vector<int64_t> ids;
  for (const Promotion& p : plan.promotions)
    ids.push_back(p.guard ? -p.candidate_id : p.candidate_id);
  return ids;
}

TEST(Asha, PromotesTheTopThirdAsSoonAsItRanksThere) {
  Asha asha(Settings({1, 3, 9}, 3, false, 1000));
  EXPECT_THAT(Complete(asha, Leased(1, {"A", "B"}), 0.5), IsEmpty());  // quota 0 of 1
  EXPECT_THAT(Complete(asha, Leased(2, {"A", "C"}), 0.7), IsEmpty());  // quota 0 of 2
  // The third completion makes a quota of 1: the best so far (2, stopped) goes on, not 3 itself.
  EXPECT_THAT(Complete(asha, Leased(3, {"B", "C"}), 0.6), ElementsAre(2));
  // A better fourth takes the quota of 1 itself.
  RungCompletion plan;
  EXPECT_THAT(Complete(asha, Leased(4, {"C", "D"}), 0.9, &plan), ElementsAre(4));
  EXPECT_EQ(plan.rung, 0);
  EXPECT_EQ(plan.epochs, 1);
  EXPECT_FALSE(plan.last_rung);
  EXPECT_EQ(plan.promotions[0].to_rung, 1);
  // Two quota places at six completions, held by 4 and 2 already: 5 and 6 stop.
  EXPECT_THAT(Complete(asha, Leased(5, {"A", "D"}), 0.4), IsEmpty());
  EXPECT_THAT(Complete(asha, Leased(6, {"B", "D"}), 0.55), IsEmpty());
  const auto stats = asha.Stats();
  EXPECT_EQ(stats[0].completed, 6);
  EXPECT_EQ(stats[0].promoted, 2);
  EXPECT_EQ(stats[0].stopped_early, 4);
  EXPECT_DOUBLE_EQ(stats[0].best_accuracy, 0.9);
  EXPECT_EQ(stats[1].open, 2);
}

TEST(Asha, TheLastRungSucceedsAndPromotesNothing) {
  Asha asha(Settings({1, 3}, 2, false, 1000));
  CandidateRecord c = Leased(1, {"A", "B"}, 1);
  RungCompletion plan;
  EXPECT_THAT(Complete(asha, c, 0.9, &plan), IsEmpty());
  EXPECT_TRUE(plan.last_rung);
  EXPECT_EQ(plan.epochs, 3);
}

TEST(Asha, PromotionsAreSkippedWhenTheEpochBudgetCannotPayThem) {
  // 2 candidates issued at 1 epoch each; a promotion to rung 1 costs 2 more; 3 left of 5 -> one
  // promotion fits, never two.
  Asha asha(Settings({1, 3}, 2, false, 5));
  asha.set_issued(2);
  EXPECT_EQ(asha.epochs_committed(), 2);
  EXPECT_EQ(asha.NewCandidatesAffordable(), 3);
  EXPECT_THAT(Complete(asha, Leased(1, {"A", "B"}), 0.5), IsEmpty());
  EXPECT_THAT(Complete(asha, Leased(2, {"A", "C"}), 0.7), ElementsAre(2));
  EXPECT_EQ(asha.epochs_committed(), 4);
  EXPECT_EQ(asha.NewCandidatesAffordable(), 1);
  asha.set_issued(3);
  EXPECT_THAT(Complete(asha, Leased(3, {"B", "C"}), 0.9), IsEmpty()) << "no epochs left for it";
}

TEST(Asha, TheCoverageGuardKeepsAFamilyThatPlainAshaPrunes) {
  // D is a slow starter: every candidate with D ranks last at rung 0.
  for (bool guard : {false, true}) {
    Asha asha(Settings({1, 3}, 3, guard, 1000));
    int64_t id = 0;
    std::vector<int64_t> promoted;
    const std::vector<std::vector<std::string>> combos = {{"A", "B"}, {"A", "C"}, {"B", "C"}};
    for (int round = 0; round < 3; ++round) {
      for (const auto& combo : combos) {
        ++id;
        for (int64_t p : Complete(asha, Leased(id, combo), 0.8 + 0.01 * id)) promoted.push_back(p);
      }
      ++id;
      for (int64_t p : Complete(asha, Leased(id, {"A", "D"}), 0.3 + 0.01 * id)) {
        promoted.push_back(p);
      }
    }
    bool d_promoted = false;
    for (int64_t p : promoted) d_promoted |= (std::abs(p) % 4 == 0);  // ids 4, 8, 12 hold D
    EXPECT_EQ(d_promoted, guard) << "guard " << guard;
    if (guard) {
      // The best of the three D candidates (12), once three of them completed; and 2, the best of
      // the first three A candidates, none of which the top-1/3 rule had promoted.
      EXPECT_THAT(promoted, ::testing::Contains(-12));
      EXPECT_THAT(promoted, ::testing::Contains(-2));
      EXPECT_EQ(asha.guard_promotions(), 2);
      // A was promoted by the top rule later; D and A+D survive only through the guard.
      EXPECT_THAT(asha.GuardKept(), UnorderedElementsAre("A+D", "D"));
    } else {
      EXPECT_THAT(asha.GuardKept(), IsEmpty());
      const Asha::RungTally d = asha.CompletedAtRung()["D"];
      EXPECT_EQ(d.completed, (std::vector<int64_t>{3, 0}));
      // Ids 4, 8, 12 at 0.3 + 0.01 x id.
      EXPECT_NEAR(d.mean_accuracy[0], 0.38, 1e-12);
    }
  }
}

TEST(Asha, StoppedCandidatesNearTheQuotaMayStillBePromoted) {
  Asha asha(Settings({1, 3}, 2, false, 1000));
  // Ranked 0.9 (1), 0.8 (2), 0.7 (3), ... 0.1 (9): quota 4 of 9; 1-4 promoted as they arrive.
  for (int64_t id = 1; id <= 9; ++id) Complete(asha, Leased(id, {"A", "B"}), 1.0 - 0.1 * id);
  EXPECT_FALSE(asha.MayStillPromote(1)) << "promoted, not stopped";
  EXPECT_TRUE(asha.MayStillPromote(5)) << "next in line";
  EXPECT_TRUE(asha.MayStillPromote(6)) << "within eta places of the quota";
  EXPECT_FALSE(asha.MayStillPromote(9)) << "far below the quota";
}

TEST(Asha, TrackingTheStoredRecordsRebuildsTheSameState) {
  Asha live(Settings({1, 3, 9}, 3, true, 1000));
  std::vector<CandidateRecord> stored;
  for (int64_t id = 1; id <= 9; ++id) {
    CandidateRecord c = Leased(id, {id % 2 ? "A" : "B", "C"});
    RungCompletion plan;
    Complete(live, c, 0.1 * id, &plan);
    stored.push_back(c);
    quartet::v1::RungResult r;
    r.set_rung(0);
    r.set_test_accuracy(0.1 * id);
    stored.back().rungs.push_back(r);
    stored.back().state = CandidateState::kStoppedEarly;
    for (const Promotion& p : plan.promotions) {
      CandidateRecord& up = stored[static_cast<size_t>(p.candidate_id - 1)];
      up.rung = p.to_rung;
      up.state = CandidateState::kPending;
      up.rungs[0].set_promoted(true);
      up.rungs[0].set_guard(p.guard);
    }
  }
  live.set_issued(9);
  Asha rebuilt(Settings({1, 3, 9}, 3, true, 1000));
  rebuilt.set_issued(9);
  for (const CandidateRecord& c : stored) rebuilt.Track(c);
  EXPECT_EQ(rebuilt.epochs_committed(), live.epochs_committed());
  EXPECT_EQ(rebuilt.guard_promotions(), live.guard_promotions());
  const auto a = live.Stats(), b = rebuilt.Stats();
  for (size_t r = 0; r < a.size(); ++r) {
    EXPECT_EQ(a[r].completed, b[r].completed);
    EXPECT_EQ(a[r].promoted, b[r].promoted);
    EXPECT_EQ(a[r].open, b[r].open);
  }
  // And both decide a tenth completion alike.
  live.Track(Leased(10, {"A", "C"}));
  rebuilt.Track(Leased(10, {"A", "C"}));
  const RungCompletion x = live.Decide(10, 0.95), y = rebuilt.Decide(10, 0.95);
  ASSERT_EQ(x.promotions.size(), y.promotions.size());
  for (size_t i = 0; i < x.promotions.size(); ++i) {
    EXPECT_EQ(x.promotions[i].candidate_id, y.promotions[i].candidate_id);
  }
}

}  // namespace
}  // namespace quartet::coordinator
