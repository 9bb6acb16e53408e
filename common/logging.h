// Process-wide logging set-up (spdlog). Call once from main before anything logs.
#ifndef QUARTET_COMMON_LOGGING_H_
#define QUARTET_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace quartet::common {

// Configures the default spdlog logger: `level` is one of trace, debug, info, warn, error, off;
// `file` empty logs to stderr, otherwise appends to that file. `name` prefixes every line.
// `format` is "text" (one readable line per event) or "json" (one JSON object per line, for log
// shippers: {"time", "level", "process", "message"}, the message JSON-escaped).
absl::Status InitLogging(const std::string& name, const std::string& level,
                         const std::string& file = "", const std::string& format = "text");

}  // namespace quartet::common

#endif  // QUARTET_COMMON_LOGGING_H_
