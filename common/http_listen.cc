#include "common/http_listen.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace quartet::common {
namespace {

constexpr int kMaxPort = 65535;

bool IsHostChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '-' || c == ':'; }

}  // namespace

absl::StatusOr<HttpListenAddress> ParseHttpListen(absl::string_view flag, absl::string_view value) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", value, "' ", why, "; expected HOST:PORT, e.g. 127.0.0.1:8080"));
  };
  const size_t colon = value.rfind(':');
  if (colon == absl::string_view::npos) return bad("has no port");
  absl::string_view host = value.substr(0, colon);
  const absl::string_view port_text = value.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return bad("has no host");
  for (char c : host) {
    if (!IsHostChar(c)) return bad("has a character that is not allowed in a host");
  }
  int port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port < 0 || port > kMaxPort) {
    return bad("has a port that is not a number from 0 to 65535");
  }
  HttpListenAddress out;
  out.host = std::string(host);
  out.port = port;
  return out;
}

}  // namespace quartet::common
