// Bounds on every client-supplied field, checked where a request enters the coordinator. Escaping
// for client strings that reach a log line (EscapeForLog) comes with it from log_escape.h.
//
// Every Validate* function returns OK or INVALID_ARGUMENT whose message starts with the field's
// path ("points[3].name: ...") and echoes at most kMaxEchoBytes of the offending input, escaped
// with EscapeForLog. NUL bytes are refused in every string field. Pure functions; thread-safe.
#ifndef QUARTET_COMMON_INPUT_BOUNDS_H_
#define QUARTET_COMMON_INPUT_BOUNDS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/log_escape.h"
#include "quartet/v1/spec.pb.h"
#include "quartet/v1/worker.pb.h"

namespace quartet::common {

// Names (campaign names, worker ids and labels, family names, versions): characters, that is
// UTF-8 code points, counted the same way in the check and in its message.
inline constexpr size_t kMaxNameChars = 200;
// Free-text messages (FailCandidate.message) are truncated to this many bytes, marker included.
inline constexpr size_t kMaxMessageBytes = 4096;
// Host names and device descriptions.
inline constexpr size_t kMaxHostBytes = 256;
inline constexpr size_t kMaxDeviceBytes = 256;
// File system paths (DataSpec.data_dir).
inline constexpr size_t kMaxPathBytes = 4096;
// Metric names: at most this many bytes from kMetricNameCharset.
inline constexpr size_t kMaxMetricNameBytes = 128;
inline constexpr absl::string_view kMetricNameCharset =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-";
// Points in one MetricBatch.
inline constexpr int kMaxMetricPoints = 10'000;
// Metric times must lie within this distance of the coordinator's clock (0 means "now").
inline constexpr absl::Duration kMaxMetricTimeSkew = absl::Hours(24 * 3653);
// Families a worker may declare; per-epoch entries of a Result; expert loads per epoch.
inline constexpr int kMaxWorkerFamilies = 1'000;
inline constexpr int kMaxResultEpochs = 10'000;  // the recipe allows at most 10,000 epochs
// List elements a Result may carry in all (epochs, expert loads, analyses' curves and surfaces,
// class x expert matrices); the default analyses need about 10,000.
inline constexpr int64_t kMaxResultValues = 1 << 20;
inline constexpr int kMaxExpertLoads = 64;
// A name: required when `required`, at most kMaxNameChars characters, no control characters.
absl::Status ValidateName(absl::string_view field, absl::string_view value, bool required);

// A string with no NUL byte and at most `max_bytes` bytes. With `single_line`, no control
// characters at all.
absl::Status ValidateText(absl::string_view field, absl::string_view value, size_t max_bytes,
                          bool single_line);

// RegisterWorkerRequest: host and device at most 256 bytes on one line; worker_id, gpu_name,
// version and each family a name; gpu_memory_bytes >= 0; at most kMaxWorkerFamilies families.
absl::Status ValidateRegisterWorker(const quartet::v1::RegisterWorkerRequest& request);

// MetricBatch: worker_id a name; at most kMaxMetricPoints points; each point's name 1-128 bytes
// from kMetricNameCharset, step >= 0, epoch >= 0, time 0 or within kMaxMetricTimeSkew of `now`.
// Values are not bounded: a diverging loss is a measurement.
absl::Status ValidateMetricBatch(const quartet::v1::MetricBatch& batch, absl::Time now);
// The point rules of ValidateMetricBatch for any list of points (e.g. a completion's
// final_metrics); errors name `points_field`[i].
absl::Status ValidateMetricPoints(
    absl::string_view points_field,
    const google::protobuf::RepeatedPtrField<quartet::v1::MetricPoint>& points, absl::Time now);

// Result: accuracies finite in [0, 1]; losses, wall_seconds, learning rates, temperatures,
// throughputs and load_cv finite and >= 0; expert_load entries and routing_entropy finite in
// [0, 1] (up to rounding); counts and sizes >= 0; device at most 256 bytes on one line; at most
// kMaxResultEpochs epochs of at most kMaxExpertLoads loads each.
// At most kMaxResultValues list elements in all (the analyses included).
absl::Status ValidateResult(const quartet::v1::Result& result);

// FailCandidateRequest: worker_id a name; message free of NUL bytes (its length is not checked:
// SanitizeFailMessage truncates it).
absl::Status ValidateFailCandidate(const quartet::v1::FailCandidateRequest& request);

// `message` cut to at most kMaxMessageBytes bytes, marker included: when longer, the head (cut at
// a UTF-8 character boundary) followed by "…[truncated N bytes]". Never refuses.
std::string SanitizeFailMessage(std::string message);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_INPUT_BOUNDS_H_
