// The data layer against its contract: CIFAR-10 and IDX files (raw and gzip) read back byte for
// byte, corrupt and missing files are refused with the right code naming the file, limits and
// default locations apply, the synthetic set is seeded and learnable, and device batches are the
// normalised (shifted, flipped, resized) images they claim to be.
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quartet/v1/spec.pb.h"
#include "worker/data/batcher.h"
#include "worker/data/dataset.h"

namespace quartet::worker::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::path(::testing::TempDir()) / "quartet_data_XXXXXX").string();
    path_ = mkdtemp(templ.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& file) const { return (fs::path(path_) / file).string(); }

 private:
  std::string path_;
};

torch::Tensor RandomImages(std::vector<int64_t> shape, uint64_t seed) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(256, shape, gen, torch::kUInt8);
}

torch::Tensor RandomLabels(int64_t n, uint64_t seed) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(10, {n}, gen, torch::kInt64);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

void GzipBytes(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10
// ---------------------------------------------------------------------------------------------

constexpr const char* kCifarTrainFiles[] = {"data_batch_1.bin", "data_batch_2.bin",
                                            "data_batch_3.bin", "data_batch_4.bin",
                                            "data_batch_5.bin"};

struct CifarFiles {
  torch::Tensor train_images, train_labels, test_images, test_labels;
};

// Writes the six files with 3..7 training records each and 8 test records.
CifarFiles WriteCifarDir(const TempDir& dir) {
  std::vector<torch::Tensor> images, labels;
  for (int f = 0; f < 5; ++f) {
    images.push_back(RandomImages({3 + f, 3, 32, 32}, 10 + f));
    labels.push_back(RandomLabels(3 + f, 20 + f));
    EXPECT_TRUE(WriteCifar10File(dir / kCifarTrainFiles[f], images.back(), labels.back()).ok());
  }
  CifarFiles files{torch::cat(images), torch::cat(labels), RandomImages({8, 3, 32, 32}, 30),
                   RandomLabels(8, 31)};
  EXPECT_TRUE(WriteCifar10File(dir / "test_batch.bin", files.test_images, files.test_labels).ok());
  return files;
}

TEST(DataCifarTest, ReadsBackAllSixFilesByteExactly) {
  TempDir dir;
  const CifarFiles written = WriteCifarDir(dir);
  EXPECT_EQ(fs::file_size(dir / "data_batch_1.bin"), 3u * 3073u);

  absl::StatusOr<Dataset> d = LoadCifar10(dir.path());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "cifar10");
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->mean, (std::vector<double>{0.4914, 0.4822, 0.4465}));
  EXPECT_EQ(d->std, (std::vector<double>{0.2470, 0.2435, 0.2616}));
  ASSERT_EQ(d->train_images.sizes(), (std::vector<int64_t>{25, 3, 32, 32}));
  ASSERT_EQ(d->test_images.sizes(), (std::vector<int64_t>{8, 3, 32, 32}));
  EXPECT_EQ(d->train_images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(d->train_labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(d->train_images.is_contiguous());
  EXPECT_TRUE(torch::equal(d->train_images, written.train_images));
  EXPECT_TRUE(torch::equal(d->train_labels, written.train_labels));
  EXPECT_TRUE(torch::equal(d->test_images, written.test_images));
  EXPECT_TRUE(torch::equal(d->test_labels, written.test_labels));
  EXPECT_EQ(d->channels(), 3);
  EXPECT_EQ(d->height(), 32);
  EXPECT_EQ(d->width(), 32);
}

TEST(DataCifarTest, RecordLayoutIsLabelThenPlanesRowMajor) {
  TempDir dir;
  torch::Tensor image = torch::zeros({1, 3, 32, 32}, torch::kUInt8);
  image[0][1][2][5] = 77;  // G plane, row 2, column 5
  ASSERT_TRUE(WriteCifar10File(dir / "x.bin", image, torch::tensor({7}, torch::kInt64)).ok());
  const std::string bytes = ReadBytes(dir / "x.bin");
  ASSERT_EQ(bytes.size(), 3073u);
  EXPECT_EQ(bytes[0], 7);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1 + 1024 + 2 * 32 + 5]), 77);
}

TEST(DataCifarTest, TruncatedFileIsDataLossNamingIt) {
  TempDir dir;
  WriteCifarDir(dir);
  fs::resize_file(dir / "data_batch_3.bin", 5 * 3073 - 1);
  absl::StatusOr<Dataset> d = LoadCifar10(dir.path());
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / "data_batch_3.bin"));
  EXPECT_THAT(d.status().message(),
              HasSubstr("expected 3073-byte records (label + 3x32x32), file has 15364 bytes"));
}

TEST(DataCifarTest, LabelAboveNineIsDataLossNamingTheFile) {
  TempDir dir;
  WriteCifarDir(dir);
  torch::Tensor labels = RandomLabels(4, 1);
  labels[2] = 10;
  ASSERT_TRUE(
      WriteCifar10File(dir / "test_batch.bin", RandomImages({4, 3, 32, 32}, 2), labels).ok());
  absl::StatusOr<Dataset> d = LoadCifar10(dir.path());
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / "test_batch.bin"));
  EXPECT_THAT(d.status().message(), HasSubstr("sample 2 has label 10"));
}

TEST(DataCifarTest, MissingFileIsNotFoundNamingIt) {
  TempDir dir;
  WriteCifarDir(dir);
  fs::remove(dir / "data_batch_4.bin");
  absl::StatusOr<Dataset> d = LoadCifar10(dir.path());
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("data_batch_4.bin"));
  EXPECT_THAT(d.status().message(), HasSubstr(dir.path()));
}

TEST(DataCifarTest, WriterRefusesWrongShapes) {
  TempDir dir;
  EXPECT_EQ(
      WriteCifar10File(dir / "x.bin", RandomImages({2, 1, 32, 32}, 1), RandomLabels(2, 1)).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      WriteCifar10File(dir / "x.bin", RandomImages({2, 3, 32, 32}, 1), RandomLabels(3, 1)).code(),
      absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// IDX (MNIST, Fashion-MNIST), raw and gzip
// ---------------------------------------------------------------------------------------------

struct IdxFiles {
  torch::Tensor train_images, train_labels, test_images, test_labels;
};

// Non-square 5x6 images so that a rows/columns mix-up shows.
IdxFiles WriteIdxDir(const TempDir& dir, bool gzip) {
  IdxFiles f{RandomImages({7, 1, 5, 6}, 1), RandomLabels(7, 2), RandomImages({4, 1, 5, 6}, 3),
             RandomLabels(4, 4)};
  const std::string gz = gzip ? ".gz" : "";
  EXPECT_TRUE(WriteIdxImages(dir / ("train-images-idx3-ubyte" + gz), f.train_images, gzip).ok());
  EXPECT_TRUE(WriteIdxLabels(dir / ("train-labels-idx1-ubyte" + gz), f.train_labels, gzip).ok());
  EXPECT_TRUE(WriteIdxImages(dir / ("t10k-images-idx3-ubyte" + gz), f.test_images, gzip).ok());
  EXPECT_TRUE(WriteIdxLabels(dir / ("t10k-labels-idx1-ubyte" + gz), f.test_labels, gzip).ok());
  return f;
}

class DataIdxTest : public ::testing::TestWithParam<bool> {
 protected:
  bool gzip() const { return GetParam(); }
  std::string Name(const std::string& base) const { return base + (gzip() ? ".gz" : ""); }
};

INSTANTIATE_TEST_SUITE_P(DataIdx, DataIdxTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Gzip" : "Raw";
                         });

TEST_P(DataIdxTest, ReadsBackByteExactly) {
  TempDir dir;
  const IdxFiles written = WriteIdxDir(dir, gzip());
  const std::string header = gzip() ? "" : ReadBytes(dir / "train-images-idx3-ubyte").substr(0, 16);
  if (!gzip()) {
    EXPECT_EQ(header,
              std::string("\x00\x00\x08\x03\x00\x00\x00\x07\x00\x00\x00\x05\x00\x00\x00\x06", 16));
  } else {
    // Really compressed: starts with the gzip magic.
    EXPECT_EQ(ReadBytes(dir / "train-images-idx3-ubyte.gz").substr(0, 2), "\x1f\x8b");
  }

  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "fashion-mnist");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "fashion-mnist");
  EXPECT_EQ(d->mean, std::vector<double>{0.2860});
  EXPECT_EQ(d->std, std::vector<double>{0.3530});
  EXPECT_EQ(d->num_classes, 10);
  ASSERT_EQ(d->train_images.sizes(), (std::vector<int64_t>{7, 1, 5, 6}));
  EXPECT_EQ(d->train_labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(d->train_images, written.train_images));
  EXPECT_TRUE(torch::equal(d->train_labels, written.train_labels));
  EXPECT_TRUE(torch::equal(d->test_images, written.test_images));
  EXPECT_TRUE(torch::equal(d->test_labels, written.test_labels));

  absl::StatusOr<Dataset> mnist = LoadIdx(dir.path(), "mnist");
  ASSERT_TRUE(mnist.ok()) << mnist.status();
  EXPECT_EQ(mnist->mean, std::vector<double>{0.1307});
  EXPECT_EQ(mnist->std, std::vector<double>{0.3081});
}

TEST_P(DataIdxTest, WrongMagicIsDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, gzip());
  // A labels file where the images are expected.
  ASSERT_TRUE(
      WriteIdxLabels(dir / Name("t10k-images-idx3-ubyte"), RandomLabels(4, 1), gzip()).ok());
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("t10k-images-idx3-ubyte")));
  EXPECT_THAT(d.status().message(), HasSubstr("IDX magic 0x00000803 expected, found 0x00000801"));
}

TEST_P(DataIdxTest, TruncatedFileIsDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, /*gzip=*/false);
  // 7 images of 5x6: 16 + 210 bytes; keep 200.
  const std::string bytes = ReadBytes(dir / "train-images-idx3-ubyte").substr(0, 200);
  fs::remove(dir / "train-images-idx3-ubyte");
  if (gzip()) {
    GzipBytes(dir / "train-images-idx3-ubyte.gz", bytes);
  } else {
    WriteBytes(dir / "train-images-idx3-ubyte", bytes);
  }
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("train-images-idx3-ubyte")));
  EXPECT_THAT(d.status().message(), HasSubstr("truncated: header says 7 images of 5x6"));
  EXPECT_THAT(d.status().message(), HasSubstr("200 bytes, expected 226"));
}

TEST_P(DataIdxTest, ImplausibleHeaderIsDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, gzip());
  // 2^32 - 1 images of (2^32 - 1) x (2^32 - 1): the byte count overflows 64 bits.
  const std::string header = std::string("\x00\x00\x08\x03", 4) + std::string(12, '\xff');
  fs::remove(dir / Name("train-images-idx3-ubyte"));
  if (gzip()) {
    GzipBytes(dir / "train-images-idx3-ubyte.gz", header);
  } else {
    WriteBytes(dir / "train-images-idx3-ubyte", header);
  }
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(),
              HasSubstr("truncated: header says 4294967295 images of 4294967295x4294967295"));
}

TEST_P(DataIdxTest, TrailingBytesAreDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, /*gzip=*/false);
  const std::string bytes = ReadBytes(dir / "t10k-labels-idx1-ubyte") + "x";
  fs::remove(dir / "t10k-labels-idx1-ubyte");
  if (gzip()) {
    GzipBytes(dir / "t10k-labels-idx1-ubyte.gz", bytes);
  } else {
    WriteBytes(dir / "t10k-labels-idx1-ubyte", bytes);
  }
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("t10k-labels-idx1-ubyte")));
}

TEST_P(DataIdxTest, CountMismatchIsDataLossNamingBothFiles) {
  TempDir dir;
  WriteIdxDir(dir, gzip());
  ASSERT_TRUE(
      WriteIdxLabels(dir / Name("train-labels-idx1-ubyte"), RandomLabels(6, 1), gzip()).ok());
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("train-labels-idx1-ubyte")));
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("train-images-idx3-ubyte")));
  EXPECT_THAT(d.status().message(), HasSubstr("6 labels, but"));
  EXPECT_THAT(d.status().message(), HasSubstr("has 7 images"));
}

TEST_P(DataIdxTest, LabelAboveNineIsDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, gzip());
  torch::Tensor labels = RandomLabels(4, 1);
  labels[3] = 200;
  ASSERT_TRUE(WriteIdxLabels(dir / Name("t10k-labels-idx1-ubyte"), labels, gzip()).ok());
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(dir / Name("t10k-labels-idx1-ubyte")));
  EXPECT_THAT(d.status().message(), HasSubstr("sample 3 has label 200"));
}

TEST_P(DataIdxTest, MissingFileIsNotFound) {
  TempDir dir;
  WriteIdxDir(dir, gzip());
  fs::remove(dir / Name("t10k-labels-idx1-ubyte"));
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound) << d.status();
  EXPECT_EQ(d.status().message(), dir.path() + ": missing t10k-labels-idx1-ubyte (or .gz)");
}

TEST(DataIdxGzipTest, CutGzipStreamIsDataLoss) {
  TempDir dir;
  WriteIdxDir(dir, /*gzip=*/true);
  // Large enough that the cut lands inside the deflate data, not in the trailer only.
  ASSERT_TRUE(WriteIdxImages(dir / "train-images-idx3-ubyte.gz", RandomImages({50, 1, 28, 28}, 9),
                             /*gzip=*/true)
                  .ok());
  ASSERT_TRUE(
      WriteIdxLabels(dir / "train-labels-idx1-ubyte.gz", RandomLabels(50, 9), /*gzip=*/true).ok());
  const std::string path = dir / "train-images-idx3-ubyte.gz";
  fs::resize_file(path, fs::file_size(path) / 2);
  absl::StatusOr<Dataset> d = LoadIdx(dir.path(), "mnist");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(path));
}

// ---------------------------------------------------------------------------------------------
// LoadDataset: dispatch, default locations, limits
// ---------------------------------------------------------------------------------------------

TEST(DataLoadTest, LimitsTakeTheFirstSamples) {
  TempDir dir;
  const CifarFiles written = WriteCifarDir(dir);
  quartet::v1::DataSpec spec;
  spec.set_dataset(quartet::v1::DATASET_CIFAR10);
  spec.set_data_dir(dir.path());
  spec.set_train_limit(5);
  spec.set_test_limit(3);
  absl::StatusOr<Dataset> d = LoadDataset(spec, "/nonexistent");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(torch::equal(d->train_images, written.train_images.narrow(0, 0, 5)));
  EXPECT_TRUE(torch::equal(d->train_labels, written.train_labels.narrow(0, 0, 5)));
  EXPECT_TRUE(torch::equal(d->test_images, written.test_images.narrow(0, 0, 3)));
  EXPECT_TRUE(torch::equal(d->test_labels, written.test_labels.narrow(0, 0, 3)));
  EXPECT_TRUE(d->train_images.is_contiguous());

  // A limit above the size keeps everything.
  spec.set_train_limit(1000);
  spec.set_test_limit(0);
  d = LoadDataset(spec, "/nonexistent");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train_images.size(0), 25);
  EXPECT_EQ(d->test_images.size(0), 8);
}

TEST(DataLoadTest, EmptyDataDirMeansDefaultRootSubdirectory) {
  TempDir root;
  const std::string sub = root / "cifar-10";
  fs::create_directory(sub);
  for (const char* f : kCifarTrainFiles) {
    ASSERT_TRUE(
        WriteCifar10File(sub + "/" + f, RandomImages({2, 3, 32, 32}, 1), RandomLabels(2, 1)).ok());
  }
  ASSERT_TRUE(
      WriteCifar10File(sub + "/test_batch.bin", RandomImages({1, 3, 32, 32}, 1), RandomLabels(1, 1))
          .ok());
  quartet::v1::DataSpec spec;
  spec.set_dataset(quartet::v1::DATASET_CIFAR10);
  absl::StatusOr<Dataset> d = LoadDataset(spec, root.path());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train_images.size(0), 10);

  spec.set_dataset(quartet::v1::DATASET_MNIST);
  d = LoadDataset(spec, root.path());
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr(root / "mnist"));

  spec.set_dataset(quartet::v1::DATASET_UNSPECIFIED);
  EXPECT_EQ(LoadDataset(spec, root.path()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DataLoadTest, SyntheticSizesAndLimits) {
  quartet::v1::DataSpec spec;
  spec.set_dataset(quartet::v1::DATASET_SYNTHETIC);
  absl::StatusOr<Dataset> d = LoadDataset(spec, "");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "synthetic");
  EXPECT_EQ(d->train_images.sizes(), (std::vector<int64_t>{2048, 3, 32, 32}));
  EXPECT_EQ(d->test_images.sizes(), (std::vector<int64_t>{512, 3, 32, 32}));
  EXPECT_EQ(d->num_classes, 10);
  spec.set_train_limit(100);
  spec.set_test_limit(30);
  absl::StatusOr<Dataset> small = LoadDataset(spec, "");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->train_images.size(0), 100);
  EXPECT_EQ(small->test_images.size(0), 30);
}

const char kFashionDir[] = "/usr/share/datasets/fashion-mnist";

TEST(DataLoadTest, RealFashionMnist) {
  if (!fs::is_directory(kFashionDir)) GTEST_SKIP() << kFashionDir << " is absent";
  quartet::v1::DataSpec spec;
  spec.set_dataset(quartet::v1::DATASET_FASHION_MNIST);
  // No data_dir and a root without fashion-mnist: Debian's location.
  absl::StatusOr<Dataset> d = LoadDataset(spec, "/nonexistent");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "fashion-mnist");
  EXPECT_EQ(d->train_images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(d->test_images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(d->train_labels.size(0), 60000);
  EXPECT_EQ(d->test_labels.size(0), 10000);
  // Balanced classes: 6000 / 1000 of each.
  EXPECT_TRUE(
      torch::equal(torch::bincount(d->train_labels), torch::full({10}, 6000, torch::kInt64)));
  EXPECT_TRUE(
      torch::equal(torch::bincount(d->test_labels), torch::full({10}, 1000, torch::kInt64)));
  // The published normalisation constants describe these pixels.
  const torch::Tensor x = d->train_images.to(torch::kFloat32) / 255.0f;
  EXPECT_NEAR(x.mean().item<double>(), d->mean[0], 1e-3);
  EXPECT_NEAR(x.std().item<double>(), d->std[0], 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Synthetic
// ---------------------------------------------------------------------------------------------

TEST(DataSyntheticTest, DeterministicInTheSeed) {
  const Dataset a = MakeSynthetic(64, 16, 3, 32, 10, 5);
  const Dataset b = MakeSynthetic(64, 16, 3, 32, 10, 5);
  const Dataset c = MakeSynthetic(64, 16, 3, 32, 10, 6);
  EXPECT_TRUE(torch::equal(a.train_images, b.train_images));
  EXPECT_TRUE(torch::equal(a.train_labels, b.train_labels));
  EXPECT_TRUE(torch::equal(a.test_images, b.test_images));
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_FALSE(torch::equal(a.train_images, c.train_images));
  EXPECT_EQ(a.train_images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(a.train_labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(a.mean.size(), 3u);
  EXPECT_EQ(a.std.size(), 3u);
}

TEST(DataSyntheticTest, LabelsAreLearnableFromPixels) {
  const Dataset d = MakeSynthetic(2000, 500, 3, 32, 10, 0);
  // Every class occurs.
  EXPECT_GT(torch::bincount(d.train_labels, {}, 10).min().item<int64_t>(), 50);
  // A nearest-class-mean classifier fitted on train labels test samples far above chance.
  const torch::Tensor x = d.train_images.reshape({2000, -1}).to(torch::kFloat32);
  const torch::Tensor onehot = torch::one_hot(d.train_labels, 10).to(torch::kFloat32);
  const torch::Tensor centroids = onehot.t().matmul(x) / onehot.sum(0).unsqueeze(1);
  const torch::Tensor t = d.test_images.reshape({500, -1}).to(torch::kFloat32);
  const torch::Tensor predicted = torch::cdist(t, centroids).argmin(1);
  const double accuracy = predicted.eq(d.test_labels).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(accuracy, 0.9);
}

// ---------------------------------------------------------------------------------------------
// DeviceBatcher
// ---------------------------------------------------------------------------------------------

// The reference normalisation, in double: (x / 255 - mean) / std.
torch::Tensor Normalised(const torch::Tensor& uint8_images, const Dataset& d) {
  const int64_t c = uint8_images.size(1);
  const torch::Tensor mean = torch::tensor(d.mean, torch::kFloat64).view({1, c, 1, 1});
  const torch::Tensor std = torch::tensor(d.std, torch::kFloat64).view({1, c, 1, 1});
  return (uint8_images.to(torch::kFloat64) / 255.0 - mean) / std;
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

class DataBatcherTest : public ::testing::Test {
 protected:
  DataBatcherTest()
      : dataset_(ToDevice(MakeSynthetic(256, 64, 3, 32, 10, 1), torch::kCPU)),
        indices_(torch::tensor({5, 0, 63, 17, 17, 40, 2, 33}, torch::kInt64)) {}

  Dataset dataset_;
  torch::Tensor indices_;
};

TEST_F(DataBatcherTest, TestBatchIsTheNormalisedOriginal) {
  BatchOptions options;  // augment on: must not touch test batches
  DeviceBatcher batcher(dataset_, options);
  const torch::Tensor x = batcher.Test(indices_);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{8, 3, 32, 32}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat32);
  const torch::Tensor expected =
      Normalised(dataset_.test_images.index_select(0, indices_), dataset_);
  EXPECT_LT(MaxAbsDiff(x, expected), 2e-6);
  EXPECT_TRUE(
      torch::equal(batcher.TestLabels(indices_), dataset_.test_labels.index_select(0, indices_)));
  EXPECT_TRUE(
      torch::equal(batcher.TrainLabels(indices_), dataset_.train_labels.index_select(0, indices_)));

  // Train without augmentation is the same transformation of training samples.
  options.augment = false;
  DeviceBatcher plain(dataset_, options);
  EXPECT_LT(MaxAbsDiff(plain.Train(indices_),
                       Normalised(dataset_.train_images.index_select(0, indices_), dataset_)),
            2e-6);
}

TEST_F(DataBatcherTest, ResizeMatchesBilinearInterpolation) {
  BatchOptions native;
  native.augment = false;
  const torch::Tensor base = DeviceBatcher(dataset_, native).Test(indices_);
  for (int64_t side : {64, 256, 20}) {
    BatchOptions options = native;
    options.output_size = side;
    DeviceBatcher batcher(dataset_, options);
    const torch::Tensor x = batcher.Test(indices_);
    ASSERT_EQ(x.sizes(), (std::vector<int64_t>{8, 3, side, side}));
    const torch::Tensor expected =
        torch::nn::functional::interpolate(base, torch::nn::functional::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{side, side})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false));
    EXPECT_LT(MaxAbsDiff(x, expected), 1e-5) << side;
    // And it is a resize of the normalised images: resize then normalise agrees.
    const torch::Tensor raw = torch::nn::functional::interpolate(
        dataset_.test_images.index_select(0, indices_).to(torch::kFloat64),
        torch::nn::functional::InterpolateFuncOptions()
            .size(std::vector<int64_t>{side, side})
            .mode(torch::kBilinear)
            .align_corners(false));
    const torch::Tensor mean = torch::tensor(dataset_.mean, torch::kFloat64).view({1, 3, 1, 1});
    const torch::Tensor std = torch::tensor(dataset_.std, torch::kFloat64).view({1, 3, 1, 1});
    EXPECT_LT(MaxAbsDiff(x, (raw / 255.0 - mean) / std), 1e-5) << side;
  }
}

// All (2 pad + 1)^2 x 2 shifted, possibly flipped crops of the zero-padded image, finished.
torch::Tensor CandidateCrops(const DeviceBatcher& batcher, const torch::Tensor& image,
                             int64_t pad) {
  const int64_t h = image.size(1), w = image.size(2);
  const torch::Tensor padded = torch::constant_pad_nd(image, {pad, pad, pad, pad}, 0);
  std::vector<torch::Tensor> crops;
  for (int64_t dy = 0; dy <= 2 * pad; ++dy) {
    for (int64_t dx = 0; dx <= 2 * pad; ++dx) {
      const torch::Tensor crop = padded.narrow(1, dy, h).narrow(2, dx, w);
      crops.push_back(crop);
      crops.push_back(crop.flip({2}));
    }
  }
  return batcher.Finish(torch::stack(crops));
}

TEST_F(DataBatcherTest, AugmentedSamplesAreShiftedFlippedCropsOfThePaddedOriginal) {
  struct Case {
    int64_t pad;
    bool flip;
  };
  for (const Case& t : {Case{4, true}, Case{0, true}, Case{2, false}}) {
    BatchOptions options;
    options.pad = t.pad;
    options.flip = t.flip;
    DeviceBatcher batcher(dataset_, options);
    const torch::Tensor indices = torch::arange(48, torch::kInt64);
    torch::manual_seed(3);
    const torch::Tensor x = batcher.Train(indices);
    ASSERT_EQ(x.sizes(), (std::vector<int64_t>{48, 3, 32, 32}));
    int64_t identical = 0, flipped = 0, shifted = 0;
    for (int64_t b = 0; b < 48; ++b) {
      const torch::Tensor candidates = CandidateCrops(batcher, dataset_.train_images[b], t.pad);
      // Candidate k: shift k / 2 (dy * (2 pad + 1) + dx), flipped when k is odd.
      const torch::Tensor match =
          (candidates == x[b].unsqueeze(0)).flatten(1).all(1).nonzero().flatten();
      ASSERT_GE(match.numel(), 1) << "sample " << b << " is no crop of its padded original";
      const int64_t k = match[0].item<int64_t>();
      const int64_t centre = t.pad * (2 * t.pad + 1) + t.pad;
      if (k == 2 * centre) ++identical;
      if (k % 2 == 1) ++flipped;
      if (k / 2 != centre) ++shifted;
    }
    // Augmentation happened (48 independent draws; chance of these failing is negligible).
    EXPECT_LT(identical, 40) << t.pad;
    if (t.flip) {
      EXPECT_GT(flipped, 8) << t.pad;
      EXPECT_LT(flipped, 40) << t.pad;
    } else {
      EXPECT_EQ(flipped, 0) << "flip is off";
    }
    if (t.pad > 0) EXPECT_GT(shifted, 30) << t.pad;
  }
}

TEST(DataAugmentationTest, EachDatasetGetsItsUsualAugmentation) {
  BatchOptions cifar, fashion, digits;
  SetAugmentationFor("cifar10", &cifar);
  SetAugmentationFor("fashion-mnist", &fashion);
  SetAugmentationFor("mnist", &digits);
  EXPECT_EQ(cifar.pad, 4);
  EXPECT_TRUE(cifar.flip);
  EXPECT_EQ(fashion.pad, 0);
  EXPECT_TRUE(fashion.flip);
  EXPECT_EQ(digits.pad, 0);
  EXPECT_FALSE(digits.flip) << "a mirrored digit is not the same digit";
}

TEST_F(DataBatcherTest, SeededReproducibility) {
  DeviceBatcher batcher(dataset_, BatchOptions{});
  torch::manual_seed(11);
  const torch::Tensor a = batcher.Train(indices_);
  const torch::Tensor a2 = batcher.Train(indices_);
  torch::manual_seed(11);
  const torch::Tensor b = batcher.Train(indices_);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, a2));
}

TEST_F(DataBatcherTest, DtypeAndChannelsLastAreHonoured) {
  BatchOptions base;
  base.augment = false;
  for (int64_t side : {32, 48}) {
    base.output_size = side;
    const torch::Tensor reference = DeviceBatcher(dataset_, base).Test(indices_);
    EXPECT_TRUE(reference.is_contiguous());

    BatchOptions cl = base;
    cl.channels_last = true;
    const torch::Tensor x = DeviceBatcher(dataset_, cl).Test(indices_);
    EXPECT_TRUE(x.is_contiguous(torch::MemoryFormat::ChannelsLast)) << side;
    EXPECT_FALSE(x.is_contiguous()) << side;
    EXPECT_LT(MaxAbsDiff(x, reference), 1e-6) << side;

    BatchOptions half = cl;
    half.dtype = torch::kHalf;
    const torch::Tensor h = DeviceBatcher(dataset_, half).Test(indices_);
    EXPECT_EQ(h.scalar_type(), torch::kHalf);
    EXPECT_TRUE(h.is_contiguous(torch::MemoryFormat::ChannelsLast)) << side;
    EXPECT_LT(MaxAbsDiff(h, reference), 1e-2) << side;
    EXPECT_EQ(DeviceBatcher(dataset_, half).Train(indices_).scalar_type(), torch::kHalf);
  }
}

TEST(DataToThreeChannelsTest, ReplicatesOneChannelOnly) {
  const Dataset gray = MakeSynthetic(16, 8, 1, 28, 10, 2);
  BatchOptions options;
  options.augment = false;
  options.output_size = 28;
  DeviceBatcher batcher(gray, options);
  const torch::Tensor one = batcher.Test(torch::arange(8, torch::kInt64));
  ASSERT_EQ(one.sizes(), (std::vector<int64_t>{8, 1, 28, 28}));
  const torch::Tensor three = ToThreeChannels(one);
  ASSERT_EQ(three.sizes(), (std::vector<int64_t>{8, 3, 28, 28}));
  for (int64_t c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(three.select(1, c), one.select(1, 0)));

  const torch::Tensor rgb = torch::randn({2, 3, 8, 8});
  EXPECT_TRUE(ToThreeChannels(rgb).is_same(rgb));

  // Channels-last in, channels-last out (as the batcher makes it when asked).
  options.channels_last = true;
  const torch::Tensor cl = DeviceBatcher(gray, options).Test(torch::arange(8, torch::kInt64));
  const torch::Tensor cl3 = ToThreeChannels(cl);
  EXPECT_TRUE(cl3.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_FALSE(cl3.is_contiguous());
  EXPECT_TRUE(torch::equal(cl3, three));
  EXPECT_TRUE(ToThreeChannels(one).is_contiguous());
}

}  // namespace
}  // namespace quartet::worker::data
