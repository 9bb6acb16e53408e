#include "common/error_class.h"

#include <string>

#include "absl/strings/cord.h"

namespace quartet::common {
namespace {
constexpr char kPayloadUrl[] = "type.quartet/error_class";
}  // namespace

absl::Status WithErrorClass(absl::Status status, quartet::v1::ErrorClass error_class) {
  if (!status.ok()) {
    status.SetPayload(kPayloadUrl, absl::Cord(quartet::v1::ErrorClass_Name(error_class)));
  }
  return status;
}

quartet::v1::ErrorClass ErrorClassOf(const absl::Status& status) {
  if (auto payload = status.GetPayload(kPayloadUrl)) {
    quartet::v1::ErrorClass cls;
    if (quartet::v1::ErrorClass_Parse(std::string(*payload), &cls)) return cls;
  }
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return quartet::v1::ERROR_CLASS_OOM;
    case absl::StatusCode::kDeadlineExceeded:
      return quartet::v1::ERROR_CLASS_TIMEOUT;
    case absl::StatusCode::kCancelled:
      return quartet::v1::ERROR_CLASS_PREEMPTED;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDataLoss:
      return quartet::v1::ERROR_CLASS_DATA;
    case absl::StatusCode::kInvalidArgument:
      return quartet::v1::ERROR_CLASS_BUILD;
    default:
      return quartet::v1::ERROR_CLASS_INTERNAL;
  }
}

bool IsRetryable(quartet::v1::ErrorClass error_class) {
  switch (error_class) {
    case quartet::v1::ERROR_CLASS_PREEMPTED:
    case quartet::v1::ERROR_CLASS_CANCELLED:
    case quartet::v1::ERROR_CLASS_DATA:
    case quartet::v1::ERROR_CLASS_INTERNAL:
      return true;
    default:
      return false;
  }
}

}  // namespace quartet::common
