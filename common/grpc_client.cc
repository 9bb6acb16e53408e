#include "common/grpc_client.h"

#include <cstdlib>

#include "absl/strings/strip.h"
#include "common/spec_io.h"

namespace quartet::common {

absl::StatusOr<ClientConnection> ClientConnection::Create(const ClientOptions& options) {
  ClientConnection c;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    auto ca = ReadFile(options.tls_ca_file);
    if (!ca.ok()) return ca.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    creds = grpc::SslCredentials(ssl);
  }
  if (!options.token_file.empty()) {
    auto token = ReadFile(options.token_file);
    if (!token.ok()) return token.status();
    c.token_ = std::string(absl::StripAsciiWhitespace(token->substr(0, token->find('\n'))));
  } else if (const char* env = std::getenv("QUARTET_TOKEN")) {
    c.token_ = env;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect within a second of a coordinator's return.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  c.channel_ = grpc::CreateCustomChannel(options.address, creds, args);
  return c;
}

void ClientConnection::Prepare(grpc::ClientContext* context, absl::Duration timeout) const {
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

}  // namespace quartet::common
