// quartetctl's exports and watch line: RFC 4180 quoting, the results table, and the ETA from the
// observed completion rate.
#include <string>

#include "cli/export.h"
#include "cli/format.h"
#include "gmock/gmock.h"

namespace quartet::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Csv, QuotesOnlyWhatNeedsItAndDoublesQuotes) {
  EXPECT_EQ(CsvRecord({"plain", "1.5", ""}), "plain,1.5,\r\n");
  EXPECT_EQ(CsvRecord({"a,b", "say \"hi\"", "two\nlines", "cr\r"}),
            "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\"\r\n");
}

TEST(Csv, ResultsHaveOneRowPerCandidateWithAxisColumns) {
  quartet::v1::CandidateSummary ok;
  ok.set_candidate_id(7);
  ok.set_campaign_id(3);
  ok.mutable_combination()->add_families("AirNet");
  ok.mutable_combination()->add_families("ResNet");
  ok.mutable_combination()->set_rank(12);
  ok.set_state(quartet::v1::CANDIDATE_STATE_SUCCEEDED);
  ok.mutable_result()->set_test_accuracy(0.875);
  ok.mutable_result()->set_wall_seconds(61.5);
  ok.set_attempts(1);
  ok.set_created_unix_ms(1'800'000'000'123);
  auto* level = ok.add_axis_levels();
  level->set_path("recipe.router");
  level->set_value("ROUTER_TOP_K");
  quartet::v1::CandidateSummary bad = ok;
  bad.set_candidate_id(8);
  bad.set_state(quartet::v1::CANDIDATE_STATE_FAILED);
  bad.clear_result();
  bad.set_error_class(quartet::v1::ERROR_CLASS_NUMERIC);
  bad.set_error_message("loss is nan, \"again\"");
  bad.set_attempts(3);

  const std::string csv = ResultsCsv({"recipe.router"}, {ok, bad});
  EXPECT_THAT(csv, ::testing::StartsWith(
                       "candidate_id,campaign_id,families,rank,repeat,recipe.router,state,"
                       "test_accuracy,test_loss,wall_seconds,created_at,started_at,finished_at,"
                       "error_class,error_message,attempts,worker_id\r\n"));
  EXPECT_THAT(csv, HasSubstr("7,3,AirNet+ResNet,12,0,ROUTER_TOP_K,SUCCEEDED,0.875,0,61.5,"
                             "2027-01-15T08:00:00.123Z,,,,,1,\r\n"));
  EXPECT_THAT(csv, HasSubstr("8,3,AirNet+ResNet,12,0,ROUTER_TOP_K,FAILED,,,,"
                             "2027-01-15T08:00:00.123Z,,,NUMERIC,\"loss is nan, \"\"again\"\"\",3,"
                             "\r\n"));
}

TEST(Csv, CoverageAndYieldTablesHaveAKindColumn) {
  quartet::v1::CoverageReport cov;
  auto* f = cov.add_families();
  f->set_family("AirNet");
  f->set_total(4);
  f->mutable_counts()->set_succeeded(3);
  f->mutable_counts()->set_failed(1);
  f->set_share_vs_uniform(1.25);
  auto* p = cov.add_pairs();
  p->set_family_a("AirNet");
  p->set_family_b("ResNet");
  p->set_total(2);
  EXPECT_EQ(CoverageCsv(cov),
            "kind,family_a,family_b,axis,level,total,pending,leased,succeeded,failed,cancelled,"
            "stopped_early,share_vs_uniform\r\n"
            "family,AirNet,,,,4,0,0,3,1,0,0,1.25\r\n"
            "pair,AirNet,ResNet,,,2,0,0,0,0,0,0,\r\n");
  quartet::v1::YieldReport y;
  auto* e = y.add_families();
  e->add_families("AirNet");
  e->set_succeeded(3);
  e->set_failed(1);
  e->set_success_rate(0.75);
  e->set_mean_accuracy(0.5);
  e->set_std_accuracy(0.125);
  e->set_ci95_accuracy(0.25);
  (*e->mutable_failures_by_class())["OOM"] = 1;
  EXPECT_THAT(YieldCsv(y), HasSubstr("family,AirNet,,,,3,1,0.75,0.5,0.125,0.25,0,0,OOM:1\r\n"));
}

TEST(ProgressMeter, EtaFollowsTheObservedRateWithinTheWindow) {
  ProgressMeter meter(absl::Minutes(10));
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(meter.EtaSeconds(10), -1);
  meter.Observe(t0, 0);
  meter.Observe(t0 + absl::Seconds(30), 0);
  EXPECT_EQ(meter.EtaSeconds(10), -1) << "nothing finished yet";
  meter.Observe(t0 + absl::Seconds(60), 2);  // 2 per minute
  EXPECT_DOUBLE_EQ(meter.EtaSeconds(10), 300);
  // An hour later at 1 per minute: the early rate has left the window.
  for (int m = 1; m <= 60; ++m) meter.Observe(t0 + absl::Minutes(1 + m), 2 + m);
  EXPECT_NEAR(meter.EtaSeconds(10), 600, 1e-6);
  EXPECT_EQ(meter.EtaSeconds(0), 0);
}

TEST(ProgressLine, DrawsABarAndUsesTheGivenEtaButNoneWhenPaused) {
  quartet::v1::Campaign c;
  c.mutable_config()->set_budget(10);
  c.mutable_counts()->set_succeeded(5);
  c.set_state(quartet::v1::CAMPAIGN_STATE_RUNNING);
  c.set_eta_seconds(999);
  const std::string line = ProgressLine(c, 10, 125);
  EXPECT_THAT(line, HasSubstr("[#####.....] 5/10 done"));
  EXPECT_THAT(line, HasSubstr("ETA 2m05s"));
  c.set_state(quartet::v1::CAMPAIGN_STATE_PAUSED);
  EXPECT_THAT(ProgressLine(c, 10, 125), Not(HasSubstr("ETA")));
  EXPECT_THAT(ProgressLine(c, 10, 125), HasSubstr("PAUSED"));
}

}  // namespace
}  // namespace quartet::cli
