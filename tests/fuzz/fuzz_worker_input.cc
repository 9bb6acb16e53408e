// What a worker sends: a MetricBatch, a Result or a RegisterWorkerRequest, as protobuf bytes or,
// when it starts with '{', as JSON (readable seeds). The first byte picks the message by its value
// modulo 3 (the seeds use '0' MetricBatch, '1' Result, '2' RegisterWorkerRequest).
// Validation must not crash, and whatever it accepts must hold the documented bounds.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/input_bounds.h"
#include "common/spec_io.h"
#include "quartet/v1/worker.pb.h"

namespace {

// Parses JSON (input starting with '{') or protobuf bytes.
bool Parse(absl::string_view text, google::protobuf::Message* message) {
  if (!text.empty() && text[0] == '{') {
    return quartet::common::ParseMessage(text, quartet::common::TextFormat::kJson, "fuzz", message)
        .ok();
  }
  return message->ParseFromArray(text.data(), static_cast<int>(text.size()));
}

void Check(bool ok) {
  if (!ok) std::abort();
}

bool Fraction(double v) { return std::isfinite(v) && v >= 0 && v <= 1; }

// Refusals are short whatever the input.
void CheckRefusal(const absl::Status& s) {
  Check(s.code() == absl::StatusCode::kInvalidArgument);
  Check(s.message().size() <= 512);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  switch (data[0] % 3) {
    case 0: {
      quartet::v1::MetricBatch batch;
      if (!Parse(text, &batch)) return 0;
      absl::Status s = quartet::common::ValidateMetricBatch(batch, now);
      if (!s.ok()) {
        CheckRefusal(s);
        return 0;
      }
      Check(batch.points_size() <= quartet::common::kMaxMetricPoints);
      for (const auto& p : batch.points()) {
        Check(p.step() >= 0 && p.epoch() >= 0);
        Check(!p.name().empty() && p.name().size() <= quartet::common::kMaxMetricNameBytes);
        Check(absl::string_view(p.name()).find_first_not_of(quartet::common::kMetricNameCharset) ==
              absl::string_view::npos);
        Check(p.time_unix_ms() == 0 ||
              absl::AbsDuration(absl::FromUnixMillis(p.time_unix_ms()) - now) <=
                  quartet::common::kMaxMetricTimeSkew);
      }
      break;
    }
    case 1: {
      quartet::v1::Result result;
      if (!Parse(text, &result)) return 0;
      absl::Status s = quartet::common::ValidateResult(result);
      if (!s.ok()) {
        CheckRefusal(s);
        return 0;
      }
      Check(Fraction(result.test_accuracy()));
      Check(std::isfinite(result.wall_seconds()) && result.wall_seconds() >= 0);
      Check(std::isfinite(result.test_loss()) && result.test_loss() >= 0);
      Check(result.device().size() <= quartet::common::kMaxDeviceBytes);
      for (const auto& e : result.epochs()) {
        Check(Fraction(e.test_accuracy()) && Fraction(e.train_accuracy()));
        Check(std::isfinite(e.wall_seconds()) && e.wall_seconds() >= 0);
      }
      break;
    }
    case 2: {
      quartet::v1::RegisterWorkerRequest r;
      if (!Parse(text, &r)) return 0;
      absl::Status s = quartet::common::ValidateRegisterWorker(r);
      if (!s.ok()) {
        CheckRefusal(s);
        return 0;
      }
      Check(r.host().size() <= quartet::common::kMaxHostBytes);
      Check(r.device().size() <= quartet::common::kMaxDeviceBytes);
      Check(quartet::common::CountChars(r.worker_id()) <= quartet::common::kMaxNameChars);
      for (char c : r.host()) Check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7F);
      break;
    }
  }
  return 0;
}
