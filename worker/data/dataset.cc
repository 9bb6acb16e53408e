#include "worker/data/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace quartet::worker::data {
namespace {

constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarImageBytes = 3 * kCifarSide * kCifarSide;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;
constexpr uint32_t kIdxImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension
constexpr int64_t kMaxLabel = 9;

std::string JoinPath(const std::string& dir, const std::string& file) {
  if (dir.empty()) return file;
  if (dir.back() == '/') return dir + file;
  return absl::StrCat(dir, "/", file);
}

bool IsGzip(const std::string& path) {
  return path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
}

absl::Status TorchError(const std::string& what, const c10::Error& e) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

// zlib's description of the last error on `f`, without the "<path>: " prefix it adds.
std::string GzipError(gzFile f, const std::string& path, int* errnum) {
  std::string message = gzerror(f, errnum);
  const std::string prefix = path + ": ";
  if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
  return message;
}

// The uncompressed size a gzip file's trailer records (modulo 2^32; 0 when unreadable). Only a
// hint for the initial buffer.
size_t GzipSizeHint(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return 0;
  unsigned char trailer[4] = {0, 0, 0, 0};
  size_t hint = 0;
  if (std::fseek(f, -4, SEEK_END) == 0 && std::fread(trailer, 1, 4, f) == 4) {
    hint = size_t{trailer[0]} | (size_t{trailer[1]} << 8) | (size_t{trailer[2]} << 16) |
           (size_t{trailer[3]} << 24);
  }
  std::fclose(f);
  return std::min<size_t>(hint, size_t{1} << 31);
}

// The whole file, raw or (for a .gz path) decompressed.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::string data;
  if (IsGzip(path)) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) {
      return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
    }
    gzbuffer(f, 1 << 18);
    size_t size = 0;
    data.resize(std::max<size_t>(GzipSizeHint(path), size_t{1} << 16) + 1);
    while (true) {
      if (size == data.size()) data.resize(data.size() * 2);
      const unsigned chunk =
          static_cast<unsigned>(std::min<size_t>(data.size() - size, size_t{1} << 30));
      const int n = gzread(f, &data[size], chunk);
      if (n < 0) {
        int errnum = 0;
        const std::string message = GzipError(f, path, &errnum);
        gzclose(f);
        return absl::DataLossError(absl::StrCat(path, ": corrupt gzip stream: ", message));
      }
      size += static_cast<size_t>(n);
      if (n == 0) break;
    }
    int errnum = 0;
    const std::string message = GzipError(f, path, &errnum);
    gzclose(f);
    // zlib reports a stream cut short as Z_BUF_ERROR once the input runs out.
    if (errnum != Z_OK) {
      return absl::DataLossError(absl::StrCat(path, ": truncated gzip stream: ", message));
    }
    data.resize(size);
    return data;
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    std::fclose(f);
    return absl::UnavailableError(absl::StrCat(path, ": cannot stat: ", ec.message()));
  }
  data.resize(size);
  const size_t got = size == 0 ? 0 : std::fread(&data[0], 1, size, f);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed || got != size) {
    return absl::DataLossError(
        absl::StrFormat("%s: read %u of %u bytes", path, got, static_cast<uint64_t>(size)));
  }
  return data;
}

absl::Status WriteWholeFile(const std::string& path, const void* bytes, size_t size, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot create"));
    const char* p = static_cast<const char*>(bytes);
    size_t left = size;
    while (left > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(left, size_t{1} << 30));
      if (gzwrite(f, p, chunk) != static_cast<int>(chunk)) {
        int errnum = 0;
        const std::string message = GzipError(f, path, &errnum);
        gzclose(f);
        return absl::InternalError(absl::StrCat(path, ": gzip write failed: ", message));
      }
      p += chunk;
      left -= chunk;
    }
    if (gzclose(f) != Z_OK) return absl::InternalError(absl::StrCat(path, ": gzip close failed"));
    return absl::OkStatus();
  }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot create"));
  const size_t put = size == 0 ? 0 : std::fwrite(bytes, 1, size, f);
  const int saved_errno = errno;
  if (std::fclose(f) != 0 || put != size) {
    return absl::ErrnoToStatus(saved_errno, absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

// A uint8 tensor shaped `shape` holding a copy of the bytes at `bytes`.
torch::Tensor BytesToTensor(const char* bytes, torch::IntArrayRef shape) {
  torch::Tensor t = torch::empty(shape, torch::kUInt8);
  if (t.numel() > 0) std::memcpy(t.data_ptr<uint8_t>(), bytes, t.numel());
  return t;
}

// DATA_LOSS naming `path` when a label exceeds kMaxLabel.
absl::Status CheckLabels(const std::string& path, const torch::Tensor& labels) {
  const torch::Tensor bad = (labels > kMaxLabel).nonzero();
  if (bad.size(0) == 0) return absl::OkStatus();
  const int64_t i = bad[0][0].item<int64_t>();
  return absl::DataLossError(absl::StrFormat("%s: sample %d has label %d, expected 0..%d", path, i,
                                             labels[i].item<int64_t>(), kMaxLabel));
}

// Per-channel mean and std (unbiased) of uint8 (N, C, H, W) images scaled to [0, 1], exact, from
// a 256-bin histogram per channel. 0.5 and 0.25 for a channel with fewer than two pixels.
void ComputeStats(const torch::Tensor& images, std::vector<double>* mean,
                  std::vector<double>* std) {
  const int64_t channels = images.size(1);
  mean->assign(channels, 0.5);
  std->assign(channels, 0.25);
  const torch::Tensor values = torch::arange(256, torch::kFloat64) / 255.0;
  for (int64_t c = 0; c < channels; ++c) {
    const torch::Tensor counts =
        torch::bincount(images.select(1, c).flatten(), {}, 256).to(torch::kFloat64);
    const double n = counts.sum().item<double>();
    if (n < 2) continue;
    const double m = (counts * values).sum().item<double>() / n;
    const double ss = (counts * (values - m).square()).sum().item<double>();
    (*mean)[c] = m;
    (*std)[c] = std::sqrt(ss / (n - 1));
  }
}

absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> ReadCifarFiles(
    const std::string& dir, const std::vector<std::string>& files) {
  std::vector<std::string> contents;
  int64_t total = 0;
  for (const std::string& file : files) {
    const std::string path = JoinPath(dir, file);
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(absl::StrCat(dir, ": missing ", file));
    }
    QUARTET_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
    if (bytes.size() % kCifarRecordBytes != 0) {
      return absl::DataLossError(
          absl::StrFormat("%s: expected %d-byte records (label + 3x32x32), file has %d bytes", path,
                          kCifarRecordBytes, bytes.size()));
    }
    total += static_cast<int64_t>(bytes.size()) / kCifarRecordBytes;
    contents.push_back(std::move(bytes));
  }
  try {
    torch::Tensor images = torch::empty({total, 3, kCifarSide, kCifarSide}, torch::kUInt8);
    torch::Tensor labels = torch::empty({total}, torch::kInt64);
    int64_t offset = 0;
    for (size_t f = 0; f < contents.size(); ++f) {
      std::string& bytes = contents[f];
      const int64_t n = static_cast<int64_t>(bytes.size()) / kCifarRecordBytes;
      const torch::Tensor records =
          torch::from_blob(bytes.data(), {n, kCifarRecordBytes}, torch::kUInt8);
      const torch::Tensor file_labels = records.select(1, 0).to(torch::kInt64);
      QUARTET_RETURN_IF_ERROR(CheckLabels(JoinPath(dir, files[f]), file_labels));
      labels.narrow(0, offset, n).copy_(file_labels);
      images.narrow(0, offset, n)
          .view({n, kCifarImageBytes})
          .copy_(records.narrow(1, 1, kCifarImageBytes));
      offset += n;
      std::string().swap(bytes);
    }
    return std::make_pair(std::move(images), std::move(labels));
  } catch (const c10::Error& e) {
    return TorchError(dir, e);
  }
}

uint32_t ReadBigEndian32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void AppendBigEndian32(uint32_t v, std::string* out) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

std::string DescribeSize(const std::string& path, size_t size) {
  return absl::StrFormat("%s %d bytes", IsGzip(path) ? "decompresses to" : "has", size);
}

absl::Status CheckMagic(const std::string& path, const std::string& bytes, uint32_t magic) {
  if (bytes.size() < 4) {
    return absl::DataLossError(absl::StrFormat("%s: IDX magic 0x%08x expected, file %s", path,
                                               magic, DescribeSize(path, bytes.size())));
  }
  const uint32_t found = ReadBigEndian32(bytes, 0);
  if (found != magic) {
    return absl::DataLossError(
        absl::StrFormat("%s: IDX magic 0x%08x expected, found 0x%08x", path, magic, found));
  }
  return absl::OkStatus();
}

// uint8 (N, 1, rows, cols) from an idx3 file.
absl::StatusOr<torch::Tensor> ReadIdxImages(const std::string& path) {
  QUARTET_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  QUARTET_RETURN_IF_ERROR(CheckMagic(path, bytes, kIdxImagesMagic));
  if (bytes.size() < 16) {
    return absl::DataLossError(
        absl::StrFormat("%s: truncated: 16-byte idx3 header expected, file %s", path,
                        DescribeSize(path, bytes.size())));
  }
  const uint64_t n = ReadBigEndian32(bytes, 4), rows = ReadBigEndian32(bytes, 8),
                 cols = ReadBigEndian32(bytes, 12);
  // Each factor is below 2^32, so rows * cols fits; n * rows * cols may not.
  const uint64_t payload = bytes.size() - 16;
  const uint64_t pixels = rows * cols;
  const bool overflows = pixels != 0 && n > (UINT64_MAX - 16) / pixels;
  const uint64_t expected = overflows ? 0 : n * pixels;
  if (overflows || payload < expected) {
    return absl::DataLossError(
        absl::StrFormat("%s: truncated: header says %d images of %dx%d, file %s%s", path, n, rows,
                        cols, DescribeSize(path, bytes.size()),
                        overflows ? "" : absl::StrFormat(", expected %d", expected + 16)));
  }
  if (payload > expected) {
    return absl::DataLossError(
        absl::StrFormat("%s: header says %d images of %dx%d (%d bytes), file %s", path, n, rows,
                        cols, expected + 16, DescribeSize(path, bytes.size())));
  }
  try {
    return BytesToTensor(bytes.data() + 16, {static_cast<int64_t>(n), 1, static_cast<int64_t>(rows),
                                             static_cast<int64_t>(cols)});
  } catch (const c10::Error& e) {
    return TorchError(path, e);
  }
}

// int64 (N) from an idx1 file.
absl::StatusOr<torch::Tensor> ReadIdxLabels(const std::string& path) {
  QUARTET_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  QUARTET_RETURN_IF_ERROR(CheckMagic(path, bytes, kIdxLabelsMagic));
  if (bytes.size() < 8) {
    return absl::DataLossError(
        absl::StrFormat("%s: truncated: 8-byte idx1 header expected, file %s", path,
                        DescribeSize(path, bytes.size())));
  }
  const uint64_t n = ReadBigEndian32(bytes, 4);
  const uint64_t payload = bytes.size() - 8;
  if (payload < n) {
    return absl::DataLossError(
        absl::StrFormat("%s: truncated: header says %d labels, file %s, expected %d", path, n,
                        DescribeSize(path, bytes.size()), n + 8));
  }
  if (payload > n) {
    return absl::DataLossError(absl::StrFormat("%s: header says %d labels (%d bytes), file %s",
                                               path, n, n + 8, DescribeSize(path, bytes.size())));
  }
  try {
    torch::Tensor labels = BytesToTensor(bytes.data() + 8, {static_cast<int64_t>(n)});
    labels = labels.to(torch::kInt64);
    QUARTET_RETURN_IF_ERROR(CheckLabels(path, labels));
    return labels;
  } catch (const c10::Error& e) {
    return TorchError(path, e);
  }
}

// `dir`/`base`, or `dir`/`base`.gz when only that exists.
absl::StatusOr<std::string> FindIdxFile(const std::string& dir, const std::string& base) {
  const std::string raw = JoinPath(dir, base);
  if (std::filesystem::exists(raw)) return raw;
  const std::string gz = raw + ".gz";
  if (std::filesystem::exists(gz)) return gz;
  return absl::NotFoundError(absl::StrCat(dir, ": missing ", base, " (or .gz)"));
}

absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> ReadIdxSplit(const std::string& dir,
                                                                     const std::string& prefix) {
  QUARTET_ASSIGN_OR_RETURN(std::string images_path,
                           FindIdxFile(dir, absl::StrCat(prefix, "-images-idx3-ubyte")));
  QUARTET_ASSIGN_OR_RETURN(std::string labels_path,
                           FindIdxFile(dir, absl::StrCat(prefix, "-labels-idx1-ubyte")));
  QUARTET_ASSIGN_OR_RETURN(torch::Tensor images, ReadIdxImages(images_path));
  QUARTET_ASSIGN_OR_RETURN(torch::Tensor labels, ReadIdxLabels(labels_path));
  if (images.size(0) != labels.size(0)) {
    return absl::DataLossError(absl::StrFormat("%s: %d labels, but %s has %d images", labels_path,
                                               labels.size(0), images_path, images.size(0)));
  }
  return std::make_pair(std::move(images), std::move(labels));
}

absl::Status CheckWriterLabels(const std::string& path, const torch::Tensor& labels, int64_t n) {
  if (labels.dim() != 1 || labels.size(0) != n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: labels must be a vector of %d values, got %s", path, n, c10::str(labels.sizes())));
  }
  if (n > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() > 255)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": labels must fit in a byte"));
  }
  return absl::OkStatus();
}

Dataset Limit(Dataset d, int64_t train_limit, int64_t test_limit) {
  if (train_limit > 0 && train_limit < d.train_images.size(0)) {
    d.train_images = d.train_images.narrow(0, 0, train_limit).clone();
    d.train_labels = d.train_labels.narrow(0, 0, train_limit).clone();
  }
  if (test_limit > 0 && test_limit < d.test_images.size(0)) {
    d.test_images = d.test_images.narrow(0, 0, test_limit).clone();
    d.test_labels = d.test_labels.narrow(0, 0, test_limit).clone();
  }
  return d;
}

}  // namespace

absl::StatusOr<Dataset> LoadCifar10(const std::string& dir) {
  Dataset d;
  d.name = "cifar10";
  QUARTET_ASSIGN_OR_RETURN(
      auto train, ReadCifarFiles(dir, {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin"}));
  QUARTET_ASSIGN_OR_RETURN(auto test, ReadCifarFiles(dir, {"test_batch.bin"}));
  d.train_images = std::move(train.first);
  d.train_labels = std::move(train.second);
  d.test_images = std::move(test.first);
  d.test_labels = std::move(test.second);
  d.num_classes = 10;
  d.mean = {0.4914, 0.4822, 0.4465};
  d.std = {0.2470, 0.2435, 0.2616};
  return d;
}

absl::StatusOr<Dataset> LoadIdx(const std::string& dir, const std::string& name) {
  Dataset d;
  d.name = name;
  QUARTET_ASSIGN_OR_RETURN(auto train, ReadIdxSplit(dir, "train"));
  QUARTET_ASSIGN_OR_RETURN(auto test, ReadIdxSplit(dir, "t10k"));
  if (train.first.sizes().slice(1) != test.first.sizes().slice(1)) {
    return absl::DataLossError(absl::StrFormat("%s: train images are %s, test images are %s", dir,
                                               c10::str(train.first.sizes().slice(1)),
                                               c10::str(test.first.sizes().slice(1))));
  }
  d.train_images = std::move(train.first);
  d.train_labels = std::move(train.second);
  d.test_images = std::move(test.first);
  d.test_labels = std::move(test.second);
  d.num_classes = 10;
  if (name == "fashion-mnist") {
    d.mean = {0.2860};
    d.std = {0.3530};
  } else if (name == "mnist") {
    d.mean = {0.1307};
    d.std = {0.3081};
  } else {
    try {
      ComputeStats(d.train_images, &d.mean, &d.std);
    } catch (const c10::Error& e) {
      return TorchError(dir, e);
    }
  }
  return d;
}

Dataset MakeSynthetic(int64_t train_size, int64_t test_size, int64_t channels, int64_t size,
                      int64_t num_classes, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = torch::dtype(torch::kFloat32);
  constexpr int64_t kGrid = 4;
  // One zero-mean, unit-norm C x 4 x 4 pattern per class; images show it as blocks.
  torch::Tensor coarse = torch::randn({num_classes, channels * kGrid * kGrid}, gen, f32);
  coarse = coarse - coarse.mean(1, /*keepdim=*/true);
  coarse = coarse / coarse.norm(2, 1, /*keepdim=*/true).clamp_min(1e-6);
  const torch::Tensor patterns =
      torch::nn::functional::interpolate(coarse.view({num_classes, channels, kGrid, kGrid}),
                                         torch::nn::functional::InterpolateFuncOptions()
                                             .size(std::vector<int64_t>{size, size})
                                             .mode(torch::kNearest));
  // Pixel = 128 + a class pattern (RMS 60) + Gaussian noise (std 24). The label is then defined
  // from the pixels alone: the class whose pattern correlates best with the 4 x 4 block averages
  // of the image, which is the drawn class for all but a few samples.
  const double amplitude = 60.0 * std::sqrt(static_cast<double>(channels * kGrid * kGrid));
  auto make = [&](int64_t n, torch::Tensor* images, torch::Tensor* labels) {
    *images = torch::empty({n, channels, size, size}, torch::kUInt8);
    *labels = torch::empty({n}, torch::kInt64);
    constexpr int64_t kChunk = 2048;  // bounds the float temporaries
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t m = std::min(kChunk, n - start);
      const torch::Tensor drawn = torch::randint(num_classes, {m}, gen, torch::kInt64);
      torch::Tensor x = torch::randn({m, channels, size, size}, gen, f32).mul_(24.0);
      x.add_(patterns.index_select(0, drawn), amplitude).add_(128.0).clamp_(0, 255).round_();
      const torch::Tensor blocks = torch::adaptive_avg_pool2d(x - 128.0, {kGrid, kGrid}).flatten(1);
      labels->narrow(0, start, m).copy_(blocks.matmul(coarse.t()).argmax(1));
      images->narrow(0, start, m).copy_(x);
    }
  };
  Dataset d;
  d.name = "synthetic";
  make(train_size, &d.train_images, &d.train_labels);
  make(test_size, &d.test_images, &d.test_labels);
  d.num_classes = num_classes;
  ComputeStats(d.train_images, &d.mean, &d.std);
  return d;
}

absl::StatusOr<Dataset> LoadDataset(const quartet::v1::DataSpec& spec,
                                    const std::string& default_root) {
  if (spec.train_limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.train_limit must be >= 0, got ", spec.train_limit()));
  }
  if (spec.test_limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.test_limit must be >= 0, got ", spec.test_limit()));
  }
  absl::StatusOr<Dataset> d;
  switch (spec.dataset()) {
    case quartet::v1::DATASET_CIFAR10:
      d = LoadCifar10(spec.data_dir().empty() ? JoinPath(default_root, "cifar-10")
                                              : spec.data_dir());
      break;
    case quartet::v1::DATASET_MNIST:
      d = LoadIdx(spec.data_dir().empty() ? JoinPath(default_root, "mnist") : spec.data_dir(),
                  "mnist");
      break;
    case quartet::v1::DATASET_FASHION_MNIST: {
      std::string dir = spec.data_dir();
      if (dir.empty()) {
        dir = JoinPath(default_root, "fashion-mnist");
        if (default_root.empty() || !std::filesystem::is_directory(dir)) {
          dir = "/usr/share/datasets/fashion-mnist";
        }
      }
      d = LoadIdx(dir, "fashion-mnist");
      break;
    }
    case quartet::v1::DATASET_SYNTHETIC:
      try {
        return MakeSynthetic(spec.train_limit() > 0 ? spec.train_limit() : 2048,
                             spec.test_limit() > 0 ? spec.test_limit() : 512, /*channels=*/3,
                             /*size=*/32, /*num_classes=*/10, /*seed=*/0);
      } catch (const c10::Error& e) {
        return TorchError("synthetic dataset", e);
      }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("data.dataset: unsupported value ", static_cast<int>(spec.dataset())));
  }
  if (!d.ok()) return d.status();
  try {
    return Limit(*std::move(d), spec.train_limit(), spec.test_limit());
  } catch (const c10::Error& e) {
    return TorchError("applying data limits", e);
  }
}

Dataset ToDevice(const Dataset& d, const torch::Device& device) {
  Dataset out = d;
  out.train_images = d.train_images.to(device);
  out.train_labels = d.train_labels.to(device);
  out.test_images = d.test_images.to(device);
  out.test_labels = d.test_labels.to(device);
  return out;
}

absl::Status WriteCifar10File(const std::string& path, const torch::Tensor& images,
                              const torch::Tensor& labels) {
  try {
    if (images.scalar_type() != torch::kUInt8 || images.dim() != 4 || images.size(1) != 3 ||
        images.size(2) != kCifarSide || images.size(3) != kCifarSide) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: images must be uint8 (N, 3, 32, 32), got %s %s", path,
          std::string(c10::toString(images.scalar_type())), c10::str(images.sizes())));
    }
    const int64_t n = images.size(0);
    QUARTET_RETURN_IF_ERROR(CheckWriterLabels(path, labels, n));
    const torch::Tensor records =
        torch::cat({labels.to(torch::kCPU).to(torch::kUInt8).view({n, 1}),
                    images.to(torch::kCPU).reshape({n, kCifarImageBytes})},
                   1);
    return WriteWholeFile(path, records.data_ptr<uint8_t>(), records.numel(), /*gzip=*/false);
  } catch (const c10::Error& e) {
    return TorchError(path, e);
  }
}

absl::Status WriteIdxImages(const std::string& path, const torch::Tensor& images, bool gzip) {
  try {
    if (images.scalar_type() != torch::kUInt8 || images.dim() != 4 || images.size(1) != 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: images must be uint8 (N, 1, H, W), got %s %s", path,
          std::string(c10::toString(images.scalar_type())), c10::str(images.sizes())));
    }
    const torch::Tensor pixels = images.to(torch::kCPU).contiguous();
    std::string bytes;
    bytes.reserve(16 + pixels.numel());
    AppendBigEndian32(kIdxImagesMagic, &bytes);
    AppendBigEndian32(static_cast<uint32_t>(images.size(0)), &bytes);
    AppendBigEndian32(static_cast<uint32_t>(images.size(2)), &bytes);
    AppendBigEndian32(static_cast<uint32_t>(images.size(3)), &bytes);
    bytes.append(reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>()), pixels.numel());
    return WriteWholeFile(path, bytes.data(), bytes.size(), gzip);
  } catch (const c10::Error& e) {
    return TorchError(path, e);
  }
}

absl::Status WriteIdxLabels(const std::string& path, const torch::Tensor& labels, bool gzip) {
  try {
    const int64_t n = labels.dim() == 1 ? labels.size(0) : -1;
    QUARTET_RETURN_IF_ERROR(CheckWriterLabels(path, labels, n));
    const torch::Tensor values = labels.to(torch::kCPU).to(torch::kUInt8).contiguous();
    std::string bytes;
    bytes.reserve(8 + n);
    AppendBigEndian32(kIdxLabelsMagic, &bytes);
    AppendBigEndian32(static_cast<uint32_t>(n), &bytes);
    bytes.append(reinterpret_cast<const char*>(values.data_ptr<uint8_t>()), n);
    return WriteWholeFile(path, bytes.data(), bytes.size(), gzip);
  } catch (const c10::Error& e) {
    return TorchError(path, e);
  }
}

}  // namespace quartet::worker::data
