// Who may call what, and over which transport.
//
// Roles. Every credential is a bearer token with one role:
//   admin   every call;
//   worker  WorkerService only;
//   viewer  the read-only CampaignService calls (GetCampaign, ListCampaigns, WatchCampaign,
//           GetCoverageReport, GetYieldReport, ListResults, GetCandidate).
// A call carries "authorization: Bearer <token>" metadata. With no credentials configured at all,
// authentication is off and every call is allowed (loopback and trusted networks only; the
// coordinator warns at start-up). The health service is never checked.
//
// Credential sources (LoadCredentials): a credentials file of `role token` lines, per-role token
// files whose first non-blank line is the token, and the deprecated single token (--token_file or
// QUARTET_TOKEN), which is an admin token. A source that is given but holds no usable token is an
// error, never "authentication off".
//
// Tokens are compared in constant time and never appear in a log line or an error message.
#ifndef QUARTET_COORDINATOR_SERVICE_AUTH_H_
#define QUARTET_COORDINATOR_SERVICE_AUTH_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quartet::coordinator {

enum class Role { kViewer, kWorker, kAdmin };

// "admin", "worker" or "viewer".
absl::string_view RoleName(Role role);

// Parses a role name (lower case, as RoleName writes it). INVALID_ARGUMENT otherwise.
absl::StatusOr<Role> ParseRole(absl::string_view name);

// One configured credential.
struct Credential {
  Role role = Role::kAdmin;
  // Non-empty, printable ASCII without spaces.
  std::string token;
  // Where it was read from ("FILE:LINE" or "QUARTET_TOKEN"), for start-up messages.
  std::string source;
};

// Where the coordinator reads its credentials from. Empty means "not given".
struct CredentialSources {
  // File of `role token` lines; `#` starts a comment line; blank lines are skipped.
  std::string credentials_file;
  // Files whose first non-blank line is one token of that role.
  std::string admin_token_file;
  std::string worker_token_file;
  std::string viewer_token_file;
  // Deprecated single-token flag: an admin token file.
  std::string legacy_token_file;
  // Deprecated QUARTET_TOKEN value (unset: nullopt): an admin token, read only when no file above
  // is given. Set but blank is an error.
  std::optional<std::string> legacy_env_token;
};

// Reads every given source. An empty vector means no source was given (authentication off).
// INVALID_ARGUMENT naming the file (and line) for: a file with no usable token (empty, blank,
// comments only), a line with an unknown role or no token or extra fields, a token with
// non-printable characters, and a token configured twice (in any roles). NOT_FOUND when a given
// file cannot be read. Error messages never contain a token.
absl::StatusOr<std::vector<Credential>> LoadCredentials(const CredentialSources& sources);

// Checks calls against a fixed set of credentials. Immutable; thread-safe.
class Authenticator {
 public:
  // No credentials: authentication off.
  explicit Authenticator(std::vector<Credential> credentials);

  bool enabled() const { return !credentials_.empty(); }

  // OK when authentication is off or the call presents a token whose role grants `needed` (admin
  // grants every role). UNAUTHENTICATED when the token is missing or unknown; PERMISSION_DENIED
  // naming the role needed and the role presented.
  grpc::Status Require(const grpc::ServerContext& context, Role needed) const;

  // The same check for a bare token from another transport (the HTTP dashboard): OK when
  // authentication is off or `token` has a role that grants `needed`; UNAUTHENTICATED for an
  // unknown or empty token; PERMISSION_DENIED naming both roles.
  absl::Status CheckToken(absl::string_view token, Role needed) const;

 private:
  std::vector<Credential> credentials_;
};

// Transport security of the coordinator's listening port.
struct ServerTlsOptions {
  // PEM certificate chain and private key files. Both or neither; neither means plaintext.
  std::string cert_file;
  std::string key_file;
  // PEM roots that client certificates must chain to. Non-empty means mutual TLS: a client
  // without a certificate signed by one of these roots is refused during the handshake. Requires
  // cert_file and key_file.
  std::string client_ca_file;
};

// Server credentials for `options`. INVALID_ARGUMENT for a key without a certificate, a
// certificate without a key, or a client CA without both; NOT_FOUND when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_SERVICE_AUTH_H_
