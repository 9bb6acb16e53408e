#include "common/artifacts.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/error_class.h"
#include "common/status_macros.h"

namespace quartet::common {
namespace {

namespace fs = std::filesystem;

constexpr char kFileScheme[] = "file://";
constexpr char kSchemeSeparator[] = "://";
constexpr mode_t kFileMode = 0644;
// Directory names of the store's layout that DeleteArtifact prunes when empty, innermost first.
constexpr const char* kPrunablePrefixes[] = {"candidate-", "campaign-"};

std::string ErrnoText(int err) { return std::strerror(err); }

// A failed I/O call on `path`, classed STORAGE: a full disk or quota is RESOURCE_EXHAUSTED.
absl::Status IoError(const std::string& what, const std::string& path, int err) {
  const std::string message = absl::StrCat(what, " ", path, ": ", ErrnoText(err));
  const bool full = err == ENOSPC || err == EDQUOT;
  return WithErrorClass(
      full ? absl::ResourceExhaustedError(message) : absl::FailedPreconditionError(message),
      quartet::v1::ERROR_CLASS_STORAGE);
}

// The absolute path of a file:///abs URI.
absl::StatusOr<std::string> PathOfUri(const std::string& uri) {
  if (!absl::StartsWith(uri, kFileScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact URI '", uri, "': only file:///absolute/path is supported"));
  }
  std::string path = uri.substr(std::strlen(kFileScheme));
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact URI '", uri, "': the path after file:// must be absolute"));
  }
  return path;
}

// Writes all of `bytes` to `fd`; the errno of the first failure, or 0.
int WriteAll(int fd, std::string_view bytes, int inject_errno) {
  if (inject_errno != 0) return inject_errno;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

// fsync of a directory, so a rename or unlink in it is durable.
int SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

absl::Status MakeDirectories(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("creating directory", dir, ec.value());
  return absl::OkStatus();
}

// Writes `bytes` to a new file at `path` and fsyncs it; removes it on failure.
absl::Status WriteNewFile(const std::string& path, std::string_view bytes, int inject_errno) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kFileMode);
  if (fd < 0) return IoError("creating", path, errno);
  int err = WriteAll(fd, bytes, inject_errno);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    return IoError("writing", path, err);
  }
  return absl::OkStatus();
}

absl::Status CheckRelativePath(const std::string& relative_path) {
  bool bad = relative_path.empty() || relative_path[0] == '/';
  for (absl::string_view part : absl::StrSplit(relative_path, '/')) {
    if (part == ".." || part == ".") bad = true;
  }
  if (bad) {
    return absl::InvalidArgumentError(absl::StrCat(
        "artifact path '", relative_path, "' must be relative, without '.' or '..' components"));
  }
  return absl::OkStatus();
}

}  // namespace

ArtifactStore::ArtifactStore(std::string directory, const Options& options)
    : directory_(std::move(directory)), uri_(kFileScheme + directory_), options_(options) {}

absl::StatusOr<ArtifactStore> ArtifactStore::Open(const std::string& root_uri) {
  return Open(root_uri, Options());
}

absl::StatusOr<ArtifactStore> ArtifactStore::Open(const std::string& root_uri,
                                                  const Options& options) {
  std::string path;
  if (absl::StrContains(root_uri, kSchemeSeparator)) {
    auto parsed = PathOfUri(root_uri);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "artifact root '", root_uri,
          "': expected file:///absolute/dir or a local directory (other schemes are not "
          "supported)"));
    }
    path = *parsed;
  } else {
    if (root_uri.empty()) return absl::InvalidArgumentError("artifact root is empty");
    std::error_code ec;
    path = fs::absolute(root_uri, ec).string();
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact root '", root_uri, "': ", ec.message()));
    }
  }
  path = fs::path(path).lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return ArtifactStore(std::move(path), options);
}

absl::Status ArtifactStore::CheckWritable() const {
  auto precondition = [&](const absl::Status& s) {
    return absl::FailedPreconditionError(
        absl::StrCat("artifact root ", directory_, " is not writable: ", s.message()));
  };
  absl::Status made = MakeDirectories(directory_);
  if (!made.ok()) return precondition(made);
  const std::string probe = absl::StrCat(directory_, "/.quartet-probe-", ::getpid());
  absl::Status wrote = WriteNewFile(probe, "probe", 0);
  if (!wrote.ok()) return precondition(wrote);
  if (::unlink(probe.c_str()) != 0) return precondition(IoError("removing", probe, errno));
  return absl::OkStatus();
}

absl::StatusOr<quartet::v1::Artifact> ArtifactStore::Write(const std::string& relative_path,
                                                           std::string_view bytes) const {
  QUARTET_RETURN_IF_ERROR(CheckRelativePath(relative_path));
  const fs::path target = fs::path(directory_) / relative_path;
  const std::string dir = target.parent_path().string();
  QUARTET_RETURN_IF_ERROR(MakeDirectories(dir));
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(dir, "/.", target.filename().string(), ".tmp.", ::getpid(),
                                       ".", counter.fetch_add(1));
  QUARTET_RETURN_IF_ERROR(WriteNewFile(tmp, bytes, options_.inject_write_errno));
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return IoError("renaming into", target.string(), err);
  }
  if (const int err = SyncDirectory(dir); err != 0) return IoError("syncing", dir, err);
  quartet::v1::Artifact artifact;
  artifact.set_uri(kFileScheme + target.string());
  artifact.set_size_bytes(static_cast<int64_t>(bytes.size()));
  artifact.set_sha256(Sha256Hex(bytes));
  return artifact;
}

absl::StatusOr<std::string> ReadArtifact(const quartet::v1::Artifact& artifact) {
  QUARTET_ASSIGN_OR_RETURN(const std::string path, PathOfUri(artifact.uri()));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("artifact ", path, " is missing"));
    return absl::FailedPreconditionError(absl::StrCat("opening ", path, ": ", ErrnoText(err)));
  }
  // One buffer of the file's size: no regrowth of a checkpoint's hundreds of megabytes.
  struct stat st {};
  std::string bytes(::fstat(fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0, '\0');
  size_t done = 0;
  char tail[1 << 16];  // past the fstat size: EOF, or a file that grew
  while (true) {
    const bool in_place = done < bytes.size();
    const ssize_t n = in_place ? ::read(fd, bytes.data() + done, bytes.size() - done)
                               : ::read(fd, tail, sizeof(tail));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat("reading ", path, ": ", ErrnoText(err)));
    }
    if (!in_place) bytes.append(tail, static_cast<size_t>(n));
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  ::close(fd);
  if (static_cast<int64_t>(bytes.size()) != artifact.size_bytes()) {
    return absl::DataLossError(absl::StrCat("artifact ", path, " has ", bytes.size(),
                                            " bytes, expected ", artifact.size_bytes()));
  }
  const std::string sha = Sha256Hex(bytes);
  if (sha != artifact.sha256()) {
    return absl::DataLossError(
        absl::StrCat("artifact ", path, " has SHA-256 ", sha, ", expected ", artifact.sha256()));
  }
  return bytes;
}

absl::Status DeleteArtifact(const quartet::v1::Artifact& artifact) {
  QUARTET_ASSIGN_OR_RETURN(const std::string path, PathOfUri(artifact.uri()));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    return absl::FailedPreconditionError(absl::StrCat("removing ", path, ": ", ErrnoText(err)));
  }
  fs::path dir = fs::path(path).parent_path();
  for (const char* prefix : kPrunablePrefixes) {
    if (!absl::StartsWith(dir.filename().string(), prefix)) break;
    if (::rmdir(dir.c_str()) != 0) break;  // not empty (or gone): keep the rest
    dir = dir.parent_path();
  }
  return absl::OkStatus();
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  return out;
}

}  // namespace quartet::common
