// Small absl::Status helpers. Abseil 20220623 has no ABSL_RETURN_IF_ERROR; these are ours.
#ifndef QUARTET_COMMON_STATUS_MACROS_H_
#define QUARTET_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when not OK.
#define QUARTET_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status quartet_status_ = (expr);           \
    if (!quartet_status_.ok()) return quartet_status_; \
  } while (0)

#define QUARTET_STATUS_CONCAT_INNER_(a, b) a##b
#define QUARTET_STATUS_CONCAT_(a, b) QUARTET_STATUS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); returns its status when not OK, otherwise moves the
// value into `lhs` (a declaration such as `auto x` or an existing lvalue).
#define QUARTET_ASSIGN_OR_RETURN(lhs, rexpr) \
  QUARTET_ASSIGN_OR_RETURN_IMPL_(QUARTET_STATUS_CONCAT_(quartet_statusor_, __LINE__), lhs, rexpr)

#define QUARTET_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // QUARTET_COMMON_STATUS_MACROS_H_
