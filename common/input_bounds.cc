#include "common/input_bounds.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/message.h"

namespace quartet::common {
namespace {

constexpr absl::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7F;
}

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// "'<escaped head of value>'" for error messages.
std::string Echo(absl::string_view value) {
  return absl::StrCat("'", EscapeForLog(value, kMaxEchoBytes), "'");
}

absl::Status NoNul(absl::string_view field, absl::string_view value) {
  const size_t at = value.find('\0');
  if (at == absl::string_view::npos) return absl::OkStatus();
  return Invalid(field, absl::StrCat("contains a NUL byte at offset ", at, ": ", Echo(value)));
}

absl::Status NonNegative(absl::string_view field, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be 0 or more, got ", value));
}

absl::Status FiniteNonNegative(absl::string_view field, double value) {
  if (std::isfinite(value) && value >= 0) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be a finite number >= 0, got ", value));
}

// A fraction in [0, 1]; `slack` admits rounding in values derived by floating-point arithmetic.
absl::Status Fraction(absl::string_view field, double value, double slack = 0) {
  if (std::isfinite(value) && value >= 0 && value <= 1 + slack) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be a finite number in [0, 1], got ", value));
}

absl::Status Count(absl::string_view field, int size, int max) {
  if (size <= max) return absl::OkStatus();
  return Invalid(field, absl::StrCat("at most ", max, " entries, got ", size));
}

}  // namespace

absl::Status ValidateText(absl::string_view field, absl::string_view value, size_t max_bytes,
                          bool single_line) {
  if (auto s = NoNul(field, value); !s.ok()) return s;
  if (value.size() > max_bytes) {
    return Invalid(field, absl::StrCat("is ", value.size(), " bytes long; at most ", max_bytes,
                                       " allowed: ", Echo(value)));
  }
  if (single_line) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (IsControl(value[i])) {
        return Invalid(
            field, absl::StrCat("contains a control character at offset ", i, ": ", Echo(value)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateName(absl::string_view field, absl::string_view value, bool required) {
  if (required && value.empty()) return Invalid(field, "required");
  if (auto s = NoNul(field, value); !s.ok()) return s;
  const size_t chars = CountChars(value);
  if (chars > kMaxNameChars) {
    return Invalid(field, absl::StrCat("is ", chars, " characters long; at most ", kMaxNameChars,
                                       " allowed: ", Echo(value)));
  }
  return ValidateText(field, value, value.size(), /*single_line=*/true);
}

absl::Status ValidateRegisterWorker(const quartet::v1::RegisterWorkerRequest& request) {
  if (auto s = ValidateText("host", request.host(), kMaxHostBytes, true); !s.ok()) return s;
  if (auto s = ValidateText("device", request.device(), kMaxDeviceBytes, true); !s.ok()) return s;
  if (auto s = ValidateName("gpu_name", request.gpu_name(), false); !s.ok()) return s;
  if (auto s = NonNegative("gpu_memory_bytes", request.gpu_memory_bytes()); !s.ok()) return s;
  if (auto s = Count("families", request.families_size(), kMaxWorkerFamilies); !s.ok()) return s;
  for (int i = 0; i < request.families_size(); ++i) {
    if (auto s = ValidateName(absl::StrCat("families[", i, "]"), request.families(i), true);
        !s.ok()) {
      return s;
    }
  }
  if (auto s = ValidateName("version", request.version(), false); !s.ok()) return s;
  return ValidateName("worker_id", request.worker_id(), false);
}

absl::Status ValidateMetricBatch(const quartet::v1::MetricBatch& batch, absl::Time now) {
  if (auto s = ValidateName("worker_id", batch.worker_id(), false); !s.ok()) return s;
  return ValidateMetricPoints("points", batch.points(), now);
}

absl::Status ValidateMetricPoints(
    absl::string_view points_field,
    const google::protobuf::RepeatedPtrField<quartet::v1::MetricPoint>& points, absl::Time now) {
  if (auto s = Count(std::string(points_field), points.size(), kMaxMetricPoints); !s.ok()) {
    return s;
  }
  const int64_t now_ms = absl::ToUnixMillis(now);
  const int64_t skew_ms = absl::ToInt64Milliseconds(kMaxMetricTimeSkew);
  for (int i = 0; i < points.size(); ++i) {
    const quartet::v1::MetricPoint& p = points.Get(i);
    const std::string field = absl::StrCat(points_field, "[", i, "]");
    const std::string& name = p.name();
    if (name.empty()) return Invalid(field + ".name", "required");
    if (auto s = NoNul(field + ".name", name); !s.ok()) return s;
    if (name.size() > kMaxMetricNameBytes) {
      return Invalid(field + ".name", absl::StrCat("is ", name.size(), " bytes long; at most ",
                                                   kMaxMetricNameBytes, " allowed: ", Echo(name)));
    }
    const size_t bad = absl::string_view(name).find_first_not_of(kMetricNameCharset);
    if (bad != std::string::npos) {
      return Invalid(field + ".name", absl::StrCat("character at offset ", bad,
                                                   " is outside [A-Za-z0-9_./-]: ", Echo(name)));
    }
    if (auto s = NonNegative(field + ".step", p.step()); !s.ok()) return s;
    if (auto s = NonNegative(field + ".epoch", p.epoch()); !s.ok()) return s;
    const int64_t t = p.time_unix_ms();
    // Written to avoid overflow: t is any int64.
    if (t != 0 && (t < now_ms - skew_ms || t > now_ms + skew_ms)) {
      return Invalid(field + ".time_unix_ms",
                     absl::StrCat("must be 0 (now) or within ten years of the coordinator's "
                                  "clock (",
                                  now_ms, " ms), got ", t));
    }
  }
  return absl::OkStatus();
}

namespace {

// Elements of every repeated field in `m` and its sub-messages, and bytes of its strings; stops
// counting past `limit`.
int64_t CountValues(const google::protobuf::Message& m, int64_t limit) {
  const google::protobuf::Reflection* r = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  int64_t n = 0;
  for (const auto* f : fields) {
    if (n > limit) break;
    const bool message = f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE;
    if (!f->is_repeated()) {
      if (message) n += CountValues(r->GetMessage(m, f), limit - n);
      continue;
    }
    const int size = r->FieldSize(m, f);
    n += size;
    for (int i = 0; message && i < size && n <= limit; ++i) {
      n += CountValues(r->GetRepeatedMessage(m, f, i), limit - n);
    }
  }
  return n;
}

}  // namespace

absl::Status ValidateResult(const quartet::v1::Result& r) {
  if (const int64_t n = CountValues(r, kMaxResultValues); n > kMaxResultValues) {
    return absl::InvalidArgumentError(absl::StrCat(
        "result: more than ", kMaxResultValues,
        " values in its lists (epochs, analyses, matrices); a result is a summary, not a log"));
  }
  if (auto s = Fraction("test_accuracy", r.test_accuracy()); !s.ok()) return s;
  if (auto s = FiniteNonNegative("test_loss", r.test_loss()); !s.ok()) return s;
  if (auto s = FiniteNonNegative("wall_seconds", r.wall_seconds()); !s.ok()) return s;
  if (auto s = NonNegative("parameter_count", r.parameter_count()); !s.ok()) return s;
  if (auto s = NonNegative("input_size", r.input_size()); !s.ok()) return s;
  if (auto s = NonNegative("micro_batch_size", r.micro_batch_size()); !s.ok()) return s;
  if (auto s = ValidateText("device", r.device(), kMaxDeviceBytes, true); !s.ok()) return s;
  if (auto s = NonNegative("oom_fallbacks", r.oom_fallbacks()); !s.ok()) return s;
  if (auto s = FiniteNonNegative("active_parameters_per_token", r.active_parameters_per_token());
      !s.ok()) {
    return s;
  }
  if (auto s = Count("epochs", r.epochs_size(), kMaxResultEpochs); !s.ok()) return s;
  // Derived quantities (sums of floats) may exceed 1 by rounding.
  constexpr double kSlack = 1e-6;
  for (int i = 0; i < r.epochs_size(); ++i) {
    const quartet::v1::EpochMetrics& e = r.epochs(i);
    const std::string f = absl::StrCat("epochs[", i, "].");
    absl::Status s;
    s.Update(NonNegative(f + "epoch", e.epoch()));
    s.Update(FiniteNonNegative(f + "train_loss", e.train_loss()));
    s.Update(Fraction(f + "train_accuracy", e.train_accuracy()));
    s.Update(FiniteNonNegative(f + "test_loss", e.test_loss()));
    s.Update(Fraction(f + "test_accuracy", e.test_accuracy()));
    s.Update(FiniteNonNegative(f + "learning_rate", e.learning_rate()));
    s.Update(FiniteNonNegative(f + "gate_temperature", e.gate_temperature()));
    s.Update(Count(f + "expert_load", e.expert_load_size(), kMaxExpertLoads));
    for (int j = 0; s.ok() && j < e.expert_load_size(); ++j) {
      s.Update(Fraction(absl::StrCat(f, "expert_load[", j, "]"), e.expert_load(j), kSlack));
    }
    s.Update(FiniteNonNegative(f + "load_cv", e.load_cv()));
    s.Update(Fraction(f + "routing_entropy", e.routing_entropy(), kSlack));
    s.Update(FiniteNonNegative(f + "mean_active_experts", e.mean_active_experts()));
    s.Update(FiniteNonNegative(f + "samples_per_second", e.samples_per_second()));
    s.Update(NonNegative(f + "peak_memory_bytes", e.peak_memory_bytes()));
    s.Update(FiniteNonNegative(f + "wall_seconds", e.wall_seconds()));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateFailCandidate(const quartet::v1::FailCandidateRequest& request) {
  if (auto s = ValidateName("worker_id", request.worker_id(), false); !s.ok()) return s;
  return NoNul("message", request.message());
}

std::string SanitizeFailMessage(std::string message) {
  if (message.size() <= kMaxMessageBytes) return message;
  // The marker's length depends on the count it prints; reserve room for the largest count.
  const std::string widest = absl::StrCat(kEllipsis, "[truncated ", message.size(), " bytes]");
  const absl::string_view head = Utf8Head(message, kMaxMessageBytes - widest.size());
  const std::string marker =
      absl::StrCat(kEllipsis, "[truncated ", message.size() - head.size(), " bytes]");
  message.resize(head.size());
  message += marker;
  return message;
}

}  // namespace quartet::common
