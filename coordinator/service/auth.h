// Bearer-token authentication of gRPC calls. With a token configured, every call must carry the
// metadata "authorization: Bearer <token>"; without one, every call is allowed (loopback and
// trusted networks only; the coordinator logs a warning at start-up).
#ifndef QUARTET_COORDINATOR_SERVICE_AUTH_H_
#define QUARTET_COORDINATOR_SERVICE_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

namespace quartet::coordinator {

class TokenAuth {
 public:
  // Empty `token` disables authentication.
  explicit TokenAuth(std::string token) : token_(std::move(token)) {}

  // OK, or UNAUTHENTICATED saying what is missing (never echoing the expected token).
  grpc::Status Check(const grpc::ServerContext& context) const;
  bool enabled() const { return !token_.empty(); }

 private:
  std::string token_;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_SERVICE_AUTH_H_
