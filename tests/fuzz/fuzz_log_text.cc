// Client text on its way to a log line or the database: EscapeForLog must leave no control
// character and keep at most its byte budget of the input; SanitizeFailMessage must fit in
// kMaxMessageBytes and keep valid UTF-8 valid.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "common/input_bounds.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

// Structural UTF-8 check (lead byte and continuation count; overlongs not considered).
bool IsUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t j = 1; j < n; ++j) {
      if ((static_cast<unsigned char>(s[i + j]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t budget = size == 0 ? 0 : data[0];
  const std::string escaped = quartet::common::EscapeForLog(text, budget);
  for (char c : escaped) {
    const auto u = static_cast<unsigned char>(c);
    Check(u >= 0x20 && u != 0x7F);
  }
  // Each kept byte becomes at most 4 ("\xNN"); the marker adds a few dozen.
  Check(escaped.size() <= 4 * budget + 64);

  // Repeat the input to exercise truncation without huge corpus entries.
  std::string message(text);
  while (!message.empty() && message.size() <= quartet::common::kMaxMessageBytes)
    message.append(text.data(), text.size());
  const std::string sanitized = quartet::common::SanitizeFailMessage(message);
  Check(sanitized.size() <= quartet::common::kMaxMessageBytes);
  if (message.size() <= quartet::common::kMaxMessageBytes) Check(sanitized == message);
  if (IsUtf8(message)) Check(IsUtf8(sanitized));
  return 0;
}
