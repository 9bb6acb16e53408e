#include "coordinator/service/auth.h"

#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <array>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/spec_io.h"

namespace quartet::coordinator {
namespace {

using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

// Tokens are compared by digest so that every comparison touches the same number of bytes, whatever
// the lengths of the presented and the configured token.
Digest DigestOf(absl::string_view token) {
  Digest d;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

// Printable ASCII without spaces: what fits in a bearer header and a `role token` line.
bool IsUsableToken(absl::string_view token) {
  if (token.empty()) return false;
  for (char c : token) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

absl::Status Malformed(absl::string_view source, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// Lines of a file, with their 1-based numbers, stripped; blank lines and `#` comments dropped.
absl::StatusOr<std::vector<std::pair<int, std::string>>> MeaningfulLines(const std::string& path) {
  auto text = common::ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<std::pair<int, std::string>> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    lines.emplace_back(number, std::string(line));
  }
  return lines;
}

// A per-role token file: its first non-blank, non-comment line is the token.
absl::Status LoadTokenFile(const std::string& path, Role role, absl::string_view flag,
                           std::vector<Credential>* out) {
  auto lines = MeaningfulLines(path);
  if (!lines.ok()) return lines.status();
  if (lines->empty()) {
    return Malformed(path, absl::StrCat("holds no token (empty or blank); ", flag,
                                        " needs a file whose first non-blank line is the token"));
  }
  const auto& [number, token] = lines->front();
  const std::string where = absl::StrCat(path, ":", number);
  if (!IsUsableToken(token)) {
    return Malformed(where,
                     "the token must be printable ASCII without spaces or control characters");
  }
  out->push_back({role, token, where});
  return absl::OkStatus();
}

absl::Status LoadCredentialsFile(const std::string& path, std::vector<Credential>* out) {
  auto lines = MeaningfulLines(path);
  if (!lines.ok()) return lines.status();
  if (lines->empty()) {
    return Malformed(path,
                     "holds no credentials (empty, blank or comments only); write one "
                     "`role token` line per credential, role admin, worker or viewer");
  }
  for (const auto& [number, line] : *lines) {
    const std::string where = absl::StrCat(path, ":", number);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto role = ParseRole(fields[0]);
    if (!role.ok()) {
      // The first field may be a token pasted without its role: do not echo it.
      return Malformed(where,
                       "unknown role; a line is `role token` with role admin, worker or "
                       "viewer");
    }
    if (fields.size() < 2) return Malformed(where, "missing token after the role");
    if (fields.size() > 2) {
      return Malformed(where, "more than two fields; a line is `role token` (no spaces in tokens)");
    }
    if (!IsUsableToken(fields[1])) {
      return Malformed(where, "the token must be printable ASCII without control characters");
    }
    out->push_back({*role, std::string(fields[1]), where});
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kWorker:
      return "worker";
    case Role::kViewer:
      return "viewer";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role r : {Role::kAdmin, Role::kWorker, Role::kViewer}) {
    if (name == RoleName(r)) return r;
  }
  return absl::InvalidArgumentError("unknown role; roles are admin, worker and viewer");
}

absl::StatusOr<std::vector<Credential>> LoadCredentials(const CredentialSources& sources) {
  std::vector<Credential> out;
  absl::Status s;
  if (!sources.credentials_file.empty()) {
    s.Update(LoadCredentialsFile(sources.credentials_file, &out));
  }
  const std::pair<const std::string*, std::pair<Role, const char*>> files[] = {
      {&sources.admin_token_file, {Role::kAdmin, "--admin_token_file"}},
      {&sources.worker_token_file, {Role::kWorker, "--worker_token_file"}},
      {&sources.viewer_token_file, {Role::kViewer, "--viewer_token_file"}},
      {&sources.legacy_token_file, {Role::kAdmin, "--token_file"}},
  };
  for (const auto& [path, role_flag] : files) {
    if (!s.ok()) break;
    if (!path->empty()) s.Update(LoadTokenFile(*path, role_flag.first, role_flag.second, &out));
  }
  if (!s.ok()) return s;
  if (sources.legacy_env_token.has_value() && out.empty()) {
    const std::string token(absl::StripAsciiWhitespace(*sources.legacy_env_token));
    if (!IsUsableToken(token)) {
      return absl::InvalidArgumentError(
          "QUARTET_TOKEN is set but holds no usable token (blank, or has spaces or control "
          "characters); unset it or set a token");
    }
    out.push_back({Role::kAdmin, token, "QUARTET_TOKEN"});
  }
  // One token, one role: a token listed twice would make its role depend on lookup order.
  std::map<Digest, const Credential*> seen;
  for (const Credential& c : out) {
    auto [it, inserted] = seen.emplace(DigestOf(c.token), &c);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("the same token is configured twice (", it->second->source, " as ",
                       RoleName(it->second->role), ", ", c.source, " as ", RoleName(c.role),
                       "); give every role its own token"));
    }
  }
  return out;
}

Authenticator::Authenticator(std::vector<Credential> credentials)
    : credentials_(std::move(credentials)) {}

grpc::Status Authenticator::Require(const grpc::ServerContext& context, Role needed) const {
  if (credentials_.empty()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  constexpr absl::string_view kBearer = "Bearer ";
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization: Bearer <token>' metadata; pass a token file "
                        "(--token_file on the worker, --token-file on quartetctl) or set "
                        "QUARTET_TOKEN");
  }
  absl::string_view presented(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&presented, kBearer)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be 'Bearer <token>'");
  }
  const absl::Status checked = CheckToken(presented, needed);
  return checked.ok() ? grpc::Status::OK
                      : grpc::Status(static_cast<grpc::StatusCode>(checked.code()),
                                     std::string(checked.message()));
}

absl::Status Authenticator::CheckToken(absl::string_view token, Role needed) const {
  if (credentials_.empty()) return absl::OkStatus();
  // Every configured credential is compared, match or not, so timing says nothing about which.
  const Digest got = DigestOf(token);
  const Credential* match = nullptr;
  for (const Credential& c : credentials_) {
    const Digest want = DigestOf(c.token);
    const bool equal = CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0;
    if (equal) match = &c;
  }
  if (match == nullptr) return absl::UnauthenticatedError("invalid token");
  if (match->role == Role::kAdmin || match->role == needed) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "this call needs the ", RoleName(needed), needed == Role::kAdmin ? "" : " or admin",
      " role; the credential presented has role ", RoleName(match->role)));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  const bool cert = !options.cert_file.empty();
  const bool key = !options.key_file.empty();
  if (cert != key) {
    return absl::InvalidArgumentError(
        cert ? "--tls_cert without --tls_key: TLS needs both the certificate and its private key"
             : "--tls_key without --tls_cert: TLS needs both the certificate and its private key");
  }
  if (!cert) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs TLS: pass --tls_cert and --tls_key as well");
    }
    return grpc::InsecureServerCredentials();
  }
  auto cert_pem = common::ReadFile(options.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = common::ReadFile(options.key_file);
  if (!key_pem.ok()) return key_pem.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  if (!options.client_ca_file.empty()) {
    auto ca = common::ReadFile(options.client_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace quartet::coordinator
