#include "common/grpc_client.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/spec_io.h"

namespace quartet::common {

absl::StatusOr<ClientConnection> ClientConnection::Create(const ClientOptions& options) {
  ClientConnection c;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  const bool client_cert = !options.tls_client_cert_file.empty();
  if (client_cert != !options.tls_client_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both its certificate and its private key file");
  }
  if (client_cert && options.tls_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs TLS: give the coordinator's root certificates as well");
  }
  if (!options.tls_ca_file.empty()) {
    auto ca = ReadFile(options.tls_ca_file);
    if (!ca.ok()) return ca.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    if (client_cert) {
      auto cert = ReadFile(options.tls_client_cert_file);
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(options.tls_client_key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  if (!options.token_file.empty()) {
    auto text = ReadFile(options.token_file);
    if (!text.ok()) return text.status();
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty()) {
        c.token_ = std::string(line);
        break;
      }
    }
    if (c.token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.token_file, ": holds no token (empty or blank)"));
    }
  } else if (const char* env = std::getenv("QUARTET_TOKEN")) {
    c.token_ = std::string(absl::StripAsciiWhitespace(env));
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
