// Client-side gRPC set-up shared by quartetctl and the worker: channel credentials and the bearer
// token every call carries.
#ifndef QUARTET_COMMON_GRPC_CLIENT_H_
#define QUARTET_COMMON_GRPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace quartet::common {

struct ClientOptions {
  // host:port of the coordinator.
  std::string address = "127.0.0.1:50051";
  // PEM root certificates; non-empty means TLS.
  std::string tls_ca_file;
  // PEM client certificate chain and its private key, for a coordinator that requires client
  // certificates (mutual TLS). Both or neither; they need tls_ca_file.
  std::string tls_client_cert_file;
  std::string tls_client_key_file;
  // File whose first non-blank line is the bearer token; empty falls back to $QUARTET_TOKEN, then
  // to none.
  std::string token_file;
};

// A connected client configuration: the channel and the token to attach.
class ClientConnection {
 public:
  // NOT_FOUND when a named file cannot be read; INVALID_ARGUMENT when the token file holds no
  // token, or the client certificate options are incomplete. The channel connects lazily.
  static absl::StatusOr<ClientConnection> Create(const ClientOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Adds the token (if any) and a deadline of now + `timeout` (none when infinite).
  void Prepare(grpc::ClientContext* context,
               absl::Duration timeout = absl::InfiniteDuration()) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
};

}  // namespace quartet::common

#endif  // QUARTET_COMMON_GRPC_CLIENT_H_
