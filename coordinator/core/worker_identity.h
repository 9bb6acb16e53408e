// Worker identity: session secrets and server-chosen worker ids. A secret is 32 bytes from the
// kernel's CSPRNG, hex-encoded; the coordinator keeps only its SHA-256 and compares in constant
// time. Thread-safe (no state).
#ifndef QUARTET_COORDINATOR_CORE_WORKER_IDENTITY_H_
#define QUARTET_COORDINATOR_CORE_WORKER_IDENTITY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace quartet::coordinator {

// Longest part of a client-suggested label kept in a worker id.
inline constexpr size_t kMaxWorkerLabelBytes = 64;

// A new session secret (64 hex characters).
std::string NewSessionSecret();
// SHA-256 of `secret`, hex.
std::string HashSessionSecret(absl::string_view secret);
// Whether `secret` hashes to `hash` (constant time); false for an empty hash.
bool SessionSecretMatches(absl::string_view hash, absl::string_view secret);
// A worker id for a client label: the label (at most kMaxWorkerLabelBytes, "worker" when empty),
// '-', and 8 random hex characters.
std::string NewWorkerId(absl::string_view label);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_WORKER_IDENTITY_H_
