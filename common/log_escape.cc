#include "common/log_escape.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quartet::common {
namespace {

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

absl::string_view Utf8Head(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && IsContinuation(text[end])) --end;
  return text.substr(0, end);
}

std::string EscapeForLog(absl::string_view text, size_t max_bytes) {
  const absl::string_view head = Utf8Head(text, max_bytes);
  std::string out;
  out.reserve(head.size() + 16);
  for (char c : head) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (u < 0x20 || u == 0x7F) {
          absl::StrAppendFormat(&out, "\\x%02X", u);
        } else {
          out += c;
        }
    }
  }
  if (head.size() < text.size()) {
    absl::StrAppend(&out, "\xE2\x80\xA6[", text.size() - head.size(), " more bytes]");
  }
  return out;
}

size_t CountChars(absl::string_view text) {
  size_t n = 0;
  for (char c : text) n += IsContinuation(c) ? 0 : 1;
  return n;
}

}  // namespace quartet::common
