// The artifact store: checkpoints and exported models as files under one root, named by
// quartet.v1.Artifact (file:///absolute/path, size, SHA-256). Workers write; the coordinator reads
// and deletes. No LibTorch, no gRPC.
//
// Only the file:// scheme (a local or network-mounted directory) is supported. Writes are atomic:
// a reader sees the whole file or none. Thread-safe: an ArtifactStore is an immutable value.
#ifndef QUARTET_COMMON_ARTIFACTS_H_
#define QUARTET_COMMON_ARTIFACTS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::common {

// A root where artifacts are written: "file:///abs/dir" or a plain local directory path (made
// absolute against the working directory).
class ArtifactStore {
 public:
  struct Options {
    // Tests only: every write(2) of artifact bytes fails with this errno (0 = off), as a full
    // disk (ENOSPC) would.
    int inject_write_errno = 0;
  };

  // INVALID_ARGUMENT naming the URI for an unknown scheme (s3://, http://, ...) or an empty or
  // relative file:// path.
  static absl::StatusOr<ArtifactStore> Open(const std::string& root_uri);
  static absl::StatusOr<ArtifactStore> Open(const std::string& root_uri, const Options& options);

  // Creates the directory if needed and proves it writable (writes, fsyncs and removes a probe
  // file). FAILED_PRECONDITION naming the path and the errno text otherwise.
  absl::Status CheckWritable() const;

  // Writes `bytes` to `relative_path` under the root atomically: a temporary file in the same
  // directory is written, fsynced and renamed over the target, then the directory is fsynced.
  // Creates missing directories. Returns the Artifact (uri, size_bytes, sha256; epoch and attempt
  // left 0 for the caller). Errors carry ERROR_CLASS_STORAGE (common/error_class.h):
  // RESOURCE_EXHAUSTED for ENOSPC / EDQUOT, FAILED_PRECONDITION for other I/O failures,
  // INVALID_ARGUMENT for an empty, absolute or ".."-containing relative_path. No partial file is
  // left behind on any failure.
  absl::StatusOr<quartet::v1::Artifact> Write(const std::string& relative_path,
                                              std::string_view bytes) const;

  // The root as file:///abs (no trailing slash), and as a directory path.
  const std::string& uri() const { return uri_; }
  const std::string& directory() const { return directory_; }

 private:
  ArtifactStore(std::string directory, const Options& options);

  std::string directory_;
  std::string uri_;
  Options options_;
};

// Reads the artifact at its absolute file:// URI and checks its size and SHA-256: NOT_FOUND when
// missing, DATA_LOSS on a size or hash mismatch, INVALID_ARGUMENT for a URI that is not
// file:///abs, FAILED_PRECONDITION for other read failures.
absl::StatusOr<std::string> ReadArtifact(const quartet::v1::Artifact& artifact);

// Deletes the artifact's file (already gone is OK) and then its parent directories while they are
// empty and named like the store's layout (candidate-*, then campaign-*), so the root itself is
// never removed. INVALID_ARGUMENT for a URI that is not file:///abs; FAILED_PRECONDITION with the
// errno text when the file exists but cannot be removed.
absl::Status DeleteArtifact(const quartet::v1::Artifact& artifact);

// Lowercase-hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_ARTIFACTS_H_
