#include "coordinator/core/worker_identity.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/random.h>

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace quartet::coordinator {
namespace {

constexpr size_t kSecretBytes = 32;
constexpr size_t kIdSuffixBytes = 4;
constexpr char kDefaultLabel[] = "worker";

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(out.data() + got, n - got, 0);
    if (r > 0) got += static_cast<size_t>(r);  // EINTR and short reads: read the rest again
  }
  return out;
}

}  // namespace

std::string NewSessionSecret() { return absl::BytesToHexString(RandomBytes(kSecretBytes)); }

std::string HashSessionSecret(absl::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

bool SessionSecretMatches(absl::string_view hash, absl::string_view secret) {
  const std::string got = HashSessionSecret(secret);
  return hash.size() == got.size() && !hash.empty() &&
         CRYPTO_memcmp(hash.data(), got.data(), got.size()) == 0;
}

std::string NewWorkerId(absl::string_view label) {
  if (label.empty()) label = kDefaultLabel;
  if (label.size() > kMaxWorkerLabelBytes) label = label.substr(0, kMaxWorkerLabelBytes);
  return absl::StrCat(label, "-", absl::BytesToHexString(RandomBytes(kIdSuffixBytes)));
}

}  // namespace quartet::coordinator
