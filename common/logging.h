// Process-wide logging set-up (spdlog). Call once from main before anything logs.
#ifndef QUARTET_COMMON_LOGGING_H_
#define QUARTET_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace quartet::common {

// Configures the default spdlog logger: `level` is one of trace, debug, info, warn, error, off;
// `file` empty logs to stderr, otherwise appends to that file. `name` prefixes every line.
absl::Status InitLogging(const std::string& name, const std::string& level,
                         const std::string& file = "");

}  // namespace quartet::common

#endif  // QUARTET_COMMON_LOGGING_H_
