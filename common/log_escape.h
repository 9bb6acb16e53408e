// Client strings made safe to repeat in a log line or an error message. No protobuf, so the
// catalog and the logging code can use it; input_bounds.h builds on it. Pure functions;
// thread-safe.
#ifndef QUARTET_COMMON_LOG_ESCAPE_H_
#define QUARTET_COMMON_LOG_ESCAPE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace quartet::common {

// Bytes of a client's input that an error message or a hint repeats back.
inline constexpr size_t kMaxEchoBytes = 64;

// `text` with every control character (bytes 0x00-0x1F and 0x7F) and the backslash escaped (\n,
// \r, \t, \\, \xNN otherwise), so that a client string cannot start a new log line or pass for
// an escape. Bytes 0x80 and above pass through. At most `max_bytes` of the input are kept (cut at
// a UTF-8 character boundary), followed by "…[N more bytes]" when some were dropped.
std::string EscapeForLog(absl::string_view text, size_t max_bytes);

// UTF-8 code points in `text` (bytes that do not continue a multi-byte sequence).
size_t CountChars(absl::string_view text);

// The longest prefix of `text` of at most `max_bytes` bytes that does not split a UTF-8 sequence.
absl::string_view Utf8Head(absl::string_view text, size_t max_bytes);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_LOG_ESCAPE_H_
