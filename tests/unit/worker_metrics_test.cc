// The worker's Prometheus metrics from the trainer's points, served over loopback.
#include "worker/metrics/worker_metrics.h"

#include <httplib.h>

#include "common/metrics_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::worker {
namespace {

using ::testing::HasSubstr;

quartet::v1::MetricPoint Point(const std::string& name, double value, int64_t step, int64_t ms) {
  quartet::v1::MetricPoint p;
  p.set_name(name);
  p.set_value(value);
  p.set_step(step);
  p.set_time_unix_ms(ms);
  return p;
}

TEST(WorkerMetrics, FollowTheRunningCandidateAndServeOnMetricsListen) {
  WorkerMetrics m;
  auto server = common::MetricsServer::Start("127.0.0.1:0", m.registry());
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto scrape = [&] { return client.Get("/metrics")->body; };

  EXPECT_THAT(scrape(), HasSubstr("quartet_worker_current_candidate 0"));
  m.CandidateStarted(42);
  // Steps 10 and 30, 5 s apart: 0.25 s per step.
  m.Observe({Point("step/train_loss", 2.0, 10, 1'000'000)});
  m.Observe({Point("step/train_loss", 1.5, 30, 1'005'000)});
  m.Observe({Point("samples_per_second", 123.5, 30, 1'006'000),
             Point("peak_memory_bytes", 2e9, 30, 1'006'000),
             Point("test_accuracy", 0.9, 30, 1'006'000)});
  std::string text = scrape();
  EXPECT_THAT(text, HasSubstr("quartet_worker_current_candidate 42"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_step_seconds 0.25"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_steps 30"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_samples_per_second 123.5"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_device_memory_peak_bytes 2000000000"));
  m.CandidateFinished("succeeded");
  // A new candidate starts its step timing afresh: one point gives no step time yet.
  m.CandidateStarted(43);
  m.Observe({Point("step/train_loss", 2.0, 5, 2'000'000)});
  text = scrape();
  EXPECT_THAT(text, HasSubstr("quartet_worker_current_candidate 43"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_step_seconds 0.25"));
  EXPECT_THAT(text, HasSubstr("quartet_worker_candidates_total{outcome=\"succeeded\"} 1"));
  m.CandidateFinished("handed_back");
  EXPECT_THAT(scrape(), HasSubstr("quartet_worker_current_candidate 0"));
}

}  // namespace
}  // namespace quartet::worker
