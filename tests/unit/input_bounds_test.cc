// Bounds on client-supplied fields: each refusal names the field and echoes a short, escaped part
// of the input; each limit admits its boundary value.
#include "common/input_bounds.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace quartet::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A NUL byte inside a std::string.
std::string WithNul(absl::string_view head) { return absl::StrCat(head, std::string(1, '\0')); }

void ExpectInvalid(const absl::Status& s, absl::string_view field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), StartsWith(absl::StrCat(field, ": "))) << s;
}

// ---- EscapeForLog ------------------------------------------------------------------------------

TEST(EscapeForLog, ControlCharactersCannotStartALogLine) {
  EXPECT_EQ(EscapeForLog("ok\n2026-12-02 [info] forged\r\t\x01\x7f\\", 100),
            "ok\\n2026-12-02 [info] forged\\r\\t\\x01\\x7F\\\\");
  EXPECT_EQ(EscapeForLog(std::string("a\0b", 3), 100), "a\\x00b");
  EXPECT_EQ(EscapeForLog("caf\xC3\xA9", 100), "caf\xC3\xA9");
}

TEST(EscapeForLog, KeepsAtMostMaxBytesAtACharacterBoundary) {
  EXPECT_EQ(EscapeForLog(std::string(100, 'x'), 10),
            std::string(10, 'x') + "\xE2\x80\xA6[90 more bytes]");
  // "é" is two bytes; cutting at 4 would split it.
  EXPECT_EQ(EscapeForLog("abc\xC3\xA9z", 4), "abc\xE2\x80\xA6[3 more bytes]");
  EXPECT_EQ(EscapeForLog("short", 64), "short");
}

// ---- Names -------------------------------------------------------------------------------------

TEST(ValidateName, CountsCharactersTheSameWayInCheckAndMessage) {
  EXPECT_TRUE(ValidateName("name", std::string(kMaxNameChars, 'a'), true).ok());
  // 200 two-byte characters: 400 bytes, 200 characters.
  std::string accents;
  for (size_t i = 0; i < kMaxNameChars; ++i) accents += "\xC3\xA9";
  EXPECT_TRUE(ValidateName("name", accents, true).ok());
  auto s = ValidateName("name", accents + "\xC3\xA9", true);
  ExpectInvalid(s, "name");
  EXPECT_THAT(std::string(s.message()), HasSubstr("is 201 characters long; at most 200"));
}

TEST(ValidateName, EchoesAtMostSixtyFourBytes) {
  const std::string huge(10 << 20, 'q');
  auto s = ValidateName("worker_id", huge, false);
  ExpectInvalid(s, "worker_id");
  EXPECT_LT(s.message().size(), 200u);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(std::string(kMaxEchoBytes, 'q') + "\xE2\x80\xA6"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(std::string(kMaxEchoBytes + 1, 'q'))));
}

TEST(ValidateName, RefusesNulAndControlCharactersAndEmptyWhenRequired) {
  ExpectInvalid(ValidateName("name", WithNul("abc"), false), "name");
  auto s = ValidateName("name", "evil\n2026 [info] forged", false);
  ExpectInvalid(s, "name");
  EXPECT_THAT(std::string(s.message()), HasSubstr("evil\\n2026"));
  ExpectInvalid(ValidateName("name", "", true), "name");
  EXPECT_TRUE(ValidateName("name", "", false).ok());
}

// ---- RegisterWorker ----------------------------------------------------------------------------

quartet::v1::RegisterWorkerRequest GoodRegistration() {
  quartet::v1::RegisterWorkerRequest r;
  r.set_host("gpu-box-7");
  r.set_device("cuda:0 (NVIDIA H100 80GB HBM3)");
  r.set_gpu_name("NVIDIA H100 80GB HBM3");
  r.set_gpu_memory_bytes(80LL << 30);
  r.add_families("AirNet");
  r.add_families("DPN68");
  r.set_version("0.1.0");
  r.set_worker_id("gpu-box-7/0");
  return r;
}

TEST(ValidateRegisterWorker, AcceptsAnOrdinaryRegistration) {
  EXPECT_TRUE(ValidateRegisterWorker(GoodRegistration()).ok());
  quartet::v1::RegisterWorkerRequest r = GoodRegistration();
  r.set_host(std::string(kMaxHostBytes, 'h'));
  r.set_device(std::string(kMaxDeviceBytes, 'd'));
  EXPECT_TRUE(ValidateRegisterWorker(r).ok());
}

TEST(ValidateRegisterWorker, RefusesEachOversizedOrMalformedField) {
  struct Case {
    std::string field;
    void (*mutate)(quartet::v1::RegisterWorkerRequest*);
  };
  const Case cases[] = {
      {"host", [](auto* r) { r->set_host(std::string(kMaxHostBytes + 1, 'h')); }},
      {"host", [](auto* r) { r->set_host("box\nforged line"); }},
      {"host", [](auto* r) { r->set_host(WithNul("box")); }},
      {"device", [](auto* r) { r->set_device(std::string(kMaxDeviceBytes + 1, 'd')); }},
      {"device", [](auto* r) { r->set_device(WithNul("cpu")); }},
      {"gpu_name", [](auto* r) { r->set_gpu_name(std::string(kMaxNameChars + 1, 'g')); }},
      {"gpu_memory_bytes", [](auto* r) { r->set_gpu_memory_bytes(-1); }},
      {"families[1]", [](auto* r) { r->set_families(1, std::string(kMaxNameChars + 1, 'f')); }},
      {"families[0]", [](auto* r) { r->set_families(0, WithNul("AirNet")); }},
      {"families",
       [](auto* r) {
         for (int i = 0; i <= kMaxWorkerFamilies; ++i) r->add_families("AirNet");
       }},
      {"version", [](auto* r) { r->set_version(WithNul("1")); }},
      {"worker_id", [](auto* r) { r->set_worker_id(std::string(10 << 20, 'w')); }},
  };
  for (const Case& c : cases) {
    quartet::v1::RegisterWorkerRequest r = GoodRegistration();
    c.mutate(&r);
    SCOPED_TRACE(c.field);
    ExpectInvalid(ValidateRegisterWorker(r), c.field);
  }
}

// ---- MetricBatch -------------------------------------------------------------------------------

const absl::Time kNow = absl::FromUnixMillis(1'800'000'000'000);

quartet::v1::MetricBatch GoodBatch() {
  quartet::v1::MetricBatch b;
  b.set_worker_id("w");
  auto* p = b.add_points();
  p->set_step(10);
  p->set_epoch(1);
  p->set_name("expert_load/2");
  p->set_value(0.25);
  p->set_time_unix_ms(absl::ToUnixMillis(kNow));
  auto* q = b.add_points();
  q->set_name("train.loss-smoothed");
  q->set_value(kNaN);  // a diverging loss is a measurement, not a malformed point
  return b;
}

TEST(ValidateMetricBatch, AcceptsOrdinaryPointsAndBoundaryValues) {
  EXPECT_TRUE(ValidateMetricBatch(GoodBatch(), kNow).ok());
  quartet::v1::MetricBatch b = GoodBatch();
  b.mutable_points(0)->set_name(std::string(kMaxMetricNameBytes, 'm'));
  b.mutable_points(0)->set_time_unix_ms(absl::ToUnixMillis(kNow - kMaxMetricTimeSkew));
  b.mutable_points(1)->set_time_unix_ms(absl::ToUnixMillis(kNow + kMaxMetricTimeSkew));
  EXPECT_TRUE(ValidateMetricBatch(b, kNow).ok());
  quartet::v1::MetricBatch full;
  for (int i = 0; i < kMaxMetricPoints; ++i) full.add_points()->set_name("x");
  EXPECT_TRUE(ValidateMetricBatch(full, kNow).ok());
}

TEST(ValidateMetricBatch, RefusesEachOversizedOrMalformedField) {
  struct Case {
    std::string field;
    void (*mutate)(quartet::v1::MetricBatch*);
  };
  const Case cases[] = {
      {"points[0].step", [](auto* b) { b->mutable_points(0)->set_step(-5); }},
      {"points[1].epoch", [](auto* b) { b->mutable_points(1)->set_epoch(-1); }},
      {"points[0].name",
       [](auto* b) { b->mutable_points(0)->set_name(std::string(kMaxMetricNameBytes + 1, 'm')); }},
      {"points[0].name", [](auto* b) { b->mutable_points(0)->set_name(std::string(8192, 'm')); }},
      {"points[0].name", [](auto* b) { b->mutable_points(0)->set_name(WithNul("loss")); }},
      {"points[0].name", [](auto* b) { b->mutable_points(0)->set_name("loss rate"); }},
      {"points[0].name", [](auto* b) { b->mutable_points(0)->set_name("loss\n"); }},
      {"points[0].name", [](auto* b) { b->mutable_points(0)->set_name(""); }},
      {"points[1].time_unix_ms",
       [](auto* b) { b->mutable_points(1)->set_time_unix_ms(int64_t{1} << 62); }},
      {"points[1].time_unix_ms",
       [](auto* b) {
         b->mutable_points(1)->set_time_unix_ms(std::numeric_limits<int64_t>::min());
       }},
      {"points[0].time_unix_ms",
       [](auto* b) {
         b->mutable_points(0)->set_time_unix_ms(absl::ToUnixMillis(kNow + kMaxMetricTimeSkew) + 1);
       }},
      {"points",
       [](auto* b) {
         for (int i = 0; i < kMaxMetricPoints; ++i) b->add_points()->set_name("x");
       }},
      {"worker_id", [](auto* b) { b->set_worker_id(WithNul("w")); }},
  };
  for (const Case& c : cases) {
    quartet::v1::MetricBatch b = GoodBatch();
    c.mutate(&b);
    SCOPED_TRACE(c.field);
    ExpectInvalid(ValidateMetricBatch(b, kNow), c.field);
  }
}

// ---- Result ------------------------------------------------------------------------------------

quartet::v1::Result GoodResult() {
  quartet::v1::Result r;
  r.set_test_accuracy(0.61);
  r.set_test_loss(1.1);
  r.set_wall_seconds(12.5);
  r.set_parameter_count(1'000'000);
  r.set_input_size(32);
  r.set_micro_batch_size(32);
  r.set_device("cpu");
  auto* e = r.add_epochs();
  e->set_epoch(1);
  e->set_train_loss(1.5);
  e->set_train_accuracy(0.5);
  e->set_test_loss(1.1);
  e->set_test_accuracy(0.61);
  e->set_learning_rate(1e-3);
  e->set_gate_temperature(1.0);
  for (double load : {0.25, 0.25, 0.25, 0.25}) e->add_expert_load(load);
  e->set_routing_entropy(1.0 + 1e-9);  // rounding above 1 is tolerated
  e->set_mean_active_experts(4);
  e->set_samples_per_second(300);
  e->set_peak_memory_bytes(1 << 30);
  e->set_wall_seconds(12);
  return r;
}

TEST(ValidateResult, AcceptsAnOrdinaryResultAndTheBoundsOfAccuracy) {
  EXPECT_TRUE(ValidateResult(GoodResult()).ok());
  quartet::v1::Result r = GoodResult();
  r.set_test_accuracy(0);
  EXPECT_TRUE(ValidateResult(r).ok());
  r.set_test_accuracy(1);
  EXPECT_TRUE(ValidateResult(r).ok());
}

TEST(ValidateResult, BoundsTheValuesOfTheAnalysesInAll) {
  quartet::v1::Result r = GoodResult();
  auto* h = r.mutable_analyses()->add_hessian();
  for (int i = 0; i < 1000; ++i) h->add_eigenvalues(1.0);
  EXPECT_TRUE(ValidateResult(r).ok());
  // Spread over many nested entries, the total still counts.
  for (int i = 0; i < 1100; ++i) {
    auto* more = r.mutable_analyses()->add_hessian();
    for (int j = 0; j < 1000; ++j) more->add_eigenvalues(1.0);
  }
  auto s = ValidateResult(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("result: more than"));
}

TEST(ValidateResult, RefusesEveryNonFiniteOrOutOfRangeNumber) {
  struct Case {
    std::string field;
    void (*mutate)(quartet::v1::Result*);
  };
  const Case cases[] = {
      {"test_accuracy", [](auto* r) { r->set_test_accuracy(1.0000001); }},
      {"test_accuracy", [](auto* r) { r->set_test_accuracy(-0.1); }},
      {"test_accuracy", [](auto* r) { r->set_test_accuracy(kNaN); }},
      {"test_loss", [](auto* r) { r->set_test_loss(kInf); }},
      {"test_loss", [](auto* r) { r->set_test_loss(-1); }},
      {"wall_seconds", [](auto* r) { r->set_wall_seconds(kNaN); }},
      {"wall_seconds", [](auto* r) { r->set_wall_seconds(-1); }},
      {"parameter_count", [](auto* r) { r->set_parameter_count(-1); }},
      {"input_size", [](auto* r) { r->set_input_size(-32); }},
      {"micro_batch_size", [](auto* r) { r->set_micro_batch_size(-1); }},
      {"oom_fallbacks", [](auto* r) { r->set_oom_fallbacks(-1); }},
      {"device", [](auto* r) { r->set_device(std::string(10 << 20, 'd')); }},
      {"device", [](auto* r) { r->set_device(WithNul("cpu")); }},
      {"device", [](auto* r) { r->set_device("cpu\r\nforged"); }},
      {"epochs[0].epoch", [](auto* r) { r->mutable_epochs(0)->set_epoch(-1); }},
      {"epochs[0].train_loss", [](auto* r) { r->mutable_epochs(0)->set_train_loss(kNaN); }},
      {"epochs[0].train_accuracy", [](auto* r) { r->mutable_epochs(0)->set_train_accuracy(2); }},
      {"epochs[0].test_loss", [](auto* r) { r->mutable_epochs(0)->set_test_loss(-kInf); }},
      {"epochs[0].test_accuracy", [](auto* r) { r->mutable_epochs(0)->set_test_accuracy(kNaN); }},
      {"epochs[0].learning_rate", [](auto* r) { r->mutable_epochs(0)->set_learning_rate(-1e-3); }},
      {"epochs[0].gate_temperature",
       [](auto* r) { r->mutable_epochs(0)->set_gate_temperature(kInf); }},
      {"epochs[0].expert_load[2]", [](auto* r) { r->mutable_epochs(0)->set_expert_load(2, kNaN); }},
      {"epochs[0].expert_load[3]", [](auto* r) { r->mutable_epochs(0)->set_expert_load(3, 1.5); }},
      {"epochs[0].expert_load",
       [](auto* r) {
         for (int i = 0; i < kMaxExpertLoads; ++i) r->mutable_epochs(0)->add_expert_load(0);
       }},
      {"epochs[0].load_cv", [](auto* r) { r->mutable_epochs(0)->set_load_cv(-0.5); }},
      {"epochs[0].routing_entropy",
       [](auto* r) { r->mutable_epochs(0)->set_routing_entropy(1.1); }},
      {"epochs[0].mean_active_experts",
       [](auto* r) { r->mutable_epochs(0)->set_mean_active_experts(kNaN); }},
      {"epochs[0].samples_per_second",
       [](auto* r) { r->mutable_epochs(0)->set_samples_per_second(-1); }},
      {"epochs[0].peak_memory_bytes",
       [](auto* r) { r->mutable_epochs(0)->set_peak_memory_bytes(-1); }},
      {"epochs[0].wall_seconds", [](auto* r) { r->mutable_epochs(0)->set_wall_seconds(kNaN); }},
  };
  for (const Case& c : cases) {
    quartet::v1::Result r = GoodResult();
    c.mutate(&r);
    SCOPED_TRACE(c.field);
    ExpectInvalid(ValidateResult(r), c.field);
  }
}

// ---- FailCandidate -----------------------------------------------------------------------------

TEST(ValidateFailCandidate, RefusesNulButNotLength) {
  quartet::v1::FailCandidateRequest r;
  r.set_worker_id("w");
  r.set_message(std::string(1 << 20, 'm') + "\nsecond line");
  EXPECT_TRUE(ValidateFailCandidate(r).ok());
  r.set_message(WithNul("out of memory"));
  ExpectInvalid(ValidateFailCandidate(r), "message");
  r.set_message("");
  r.set_worker_id(WithNul("w"));
  ExpectInvalid(ValidateFailCandidate(r), "worker_id");
}

TEST(SanitizeFailMessage, TruncatesToFourKibWithAMarker) {
  EXPECT_EQ(SanitizeFailMessage("short"), "short");
  const std::string exact(kMaxMessageBytes, 'a');
  EXPECT_EQ(SanitizeFailMessage(exact), exact);

  const std::string big(10 << 20, 'b');
  const std::string out = SanitizeFailMessage(big);
  EXPECT_LE(out.size(), kMaxMessageBytes);
  EXPECT_GT(out.size(), kMaxMessageBytes - 64);
  const size_t kept = out.find("\xE2\x80\xA6");
  ASSERT_NE(kept, std::string::npos);
  EXPECT_EQ(out.substr(kept),
            absl::StrCat("\xE2\x80\xA6[truncated ", big.size() - kept, " bytes]"));
  EXPECT_EQ(out.substr(0, kept), std::string(kept, 'b'));
}

TEST(SanitizeFailMessage, NeverSplitsAUtf8Character) {
  std::string euros;
  while (euros.size() < 2 * kMaxMessageBytes) euros += "\xE2\x82\xAC";  // U+20AC, 3 bytes
  const std::string out = SanitizeFailMessage(euros);
  const size_t kept = out.find("\xE2\x80\xA6");
  ASSERT_NE(kept, std::string::npos);
  EXPECT_EQ(kept % 3, 0u);
  EXPECT_LE(out.size(), kMaxMessageBytes);
}

TEST(ValidateMetricPoints, ACompletionsFinalMetricsFollowTheBatchRulesNamingTheirField) {
  quartet::v1::CompleteCandidateRequest req;
  auto* ok = req.add_final_metrics();
  ok->set_name("test_accuracy");
  ok->set_epoch(1);
  EXPECT_TRUE(ValidateMetricPoints("final_metrics", req.final_metrics(), absl::Now()).ok());
  auto* bad = req.add_final_metrics();
  bad->set_name("test accuracy");
  absl::Status s = ValidateMetricPoints("final_metrics", req.final_metrics(), absl::Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), StartsWith("final_metrics[1].name"));
  bad->set_name("test_accuracy");
  bad->set_step(-1);
  EXPECT_THAT(
      std::string(
          ValidateMetricPoints("final_metrics", req.final_metrics(), absl::Now()).message()),
      StartsWith("final_metrics[1].step"));
}

}  // namespace
}  // namespace quartet::common
