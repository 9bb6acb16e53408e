// Failure classes carried on an absl::Status as a payload, so the worker can tell the coordinator
// why a candidate failed (quartet.v1.ErrorClass) without inventing status codes.
#ifndef QUARTET_COMMON_ERROR_CLASS_H_
#define QUARTET_COMMON_ERROR_CLASS_H_

#include "absl/status/status.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::common {

// `status` with the class attached (unchanged when OK).
absl::Status WithErrorClass(absl::Status status, quartet::v1::ErrorClass error_class);

// The attached class, or one inferred from the code: RESOURCE_EXHAUSTED -> OOM,
// DEADLINE_EXCEEDED -> TIMEOUT, CANCELLED -> PREEMPTED, NOT_FOUND / DATA_LOSS -> DATA,
// INVALID_ARGUMENT -> BUILD, anything else -> INTERNAL.
quartet::v1::ErrorClass ErrorClassOf(const absl::Status& status);

// Whether another attempt (possibly on another worker) may succeed: PREEMPTED, CANCELLED, DATA
// (another worker may have the files) and INTERNAL are retryable; NUMERIC, OOM, BUILD and TIMEOUT
// are properties of the candidate and are not.
bool IsRetryable(quartet::v1::ErrorClass error_class);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_ERROR_CLASS_H_
