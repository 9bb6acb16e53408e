#include "coordinator/service/auth.h"

#include <openssl/crypto.h>

namespace quartet::coordinator {

grpc::Status TokenAuth::Check(const grpc::ServerContext& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization: Bearer <token>' metadata; pass --token_file or "
                        "set QUARTET_TOKEN");
  }
  const std::string got(it->second.data(), it->second.size());
  const std::string want = "Bearer " + token_;
  // Constant-time comparison: the token must not leak through timing.
  if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token");
  }
  return grpc::Status::OK;
}

}  // namespace quartet::coordinator
