// Parsing of the HTTP listen flags (--http_listen on the coordinator, --metrics_listen on the
// worker). Pure; thread-safe.
#ifndef QUARTET_COMMON_HTTP_LISTEN_H_
#define QUARTET_COMMON_HTTP_LISTEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quartet::common {

struct HttpListenAddress {
  // A numeric IPv4 or IPv6 address or a host name, without brackets.
  std::string host;
  // 0 picks a free port.
  int port = 0;
};

// Parses "HOST:PORT" or "[IPV6]:PORT". INVALID_ARGUMENT naming `flag` for a missing host or port,
// a port that is not a number in [0, 65535], or characters outside a host name.
absl::StatusOr<HttpListenAddress> ParseHttpListen(absl::string_view flag, absl::string_view value);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_HTTP_LISTEN_H_
