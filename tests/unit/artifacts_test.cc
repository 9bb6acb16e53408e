// The artifact store: atomic writes, verified reads, deletes, and the errors an operator sees.
#include "common/artifacts.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/error_class.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quartet::common {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh directory under the test temp dir, removed afterwards.
class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("artifacts-", ::getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Regular files anywhere under the root.
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    if (!fs::exists(root_)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root_)) {
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), root_).string());
    }
    return out;
  }

  fs::path root_;
};

TEST(Sha256HexTest, KnownDigests) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(ArtifactStoreTest, WriteThenReadRoundTripsAndNamesTheFile) {
  auto store = ArtifactStore::Open(absl::StrCat("file://", root_.string()));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(store->uri(), absl::StrCat("file://", root_.string()));
  ASSERT_TRUE(store->CheckWritable().ok());
  const std::string bytes("checkpoint\0bytes", 16);
  auto artifact = store->Write("campaign-1/candidate-2/epoch-3-attempt-1.ckpt", bytes);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_EQ(artifact->uri(), absl::StrCat("file://", root_.string(),
                                          "/campaign-1/candidate-2/epoch-3-attempt-1.ckpt"));
  EXPECT_EQ(artifact->size_bytes(), 16);
  EXPECT_EQ(artifact->sha256(), Sha256Hex(bytes));
  auto read = ReadArtifact(*artifact);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
  // Only the artifact: no temporary or probe file stays behind.
  EXPECT_THAT(Files(), ::testing::ElementsAre("campaign-1/candidate-2/epoch-3-attempt-1.ckpt"));
}

TEST_F(ArtifactStoreTest, PlainRelativeDirectoryIsMadeAbsolute) {
  auto store = ArtifactStore::Open("some/dir/");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(store->directory(), (fs::current_path() / "some/dir").string());
  EXPECT_EQ(store->uri(), "file://" + store->directory());
}

TEST_F(ArtifactStoreTest, CorruptByteIsDataLossAndMissingIsNotFound) {
  auto store = ArtifactStore::Open(root_.string());
  ASSERT_TRUE(store.ok());
  auto artifact = store->Write("a/b.ckpt", "0123456789");
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  {
    std::fstream f(root_ / "a/b.ckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    f.put('X');
  }
  auto corrupt = ReadArtifact(*artifact);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(corrupt.status().message(), HasSubstr("SHA-256"));
  quartet::v1::Artifact truncated = *artifact;
  truncated.set_size_bytes(11);
  EXPECT_EQ(ReadArtifact(truncated).status().code(), absl::StatusCode::kDataLoss);

  ASSERT_TRUE(DeleteArtifact(*artifact).ok());
  EXPECT_EQ(ReadArtifact(*artifact).status().code(), absl::StatusCode::kNotFound);
  // Deleting again is fine: already gone.
  EXPECT_TRUE(DeleteArtifact(*artifact).ok());
}

TEST_F(ArtifactStoreTest, DeletePrunesEmptyLayoutDirectoriesButNotTheRoot) {
  auto store = ArtifactStore::Open(root_.string());
  ASSERT_TRUE(store.ok());
  auto a = store->Write("campaign-1/candidate-2/epoch-1-attempt-1.ckpt", "a");
  auto b = store->Write("campaign-1/candidate-3/epoch-1-attempt-1.ckpt", "b");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(DeleteArtifact(*a).ok());
  EXPECT_FALSE(fs::exists(root_ / "campaign-1/candidate-2"));
  EXPECT_TRUE(fs::exists(root_ / "campaign-1/candidate-3"));
  ASSERT_TRUE(DeleteArtifact(*b).ok());
  EXPECT_FALSE(fs::exists(root_ / "campaign-1"));
  EXPECT_TRUE(fs::exists(root_));
}

TEST_F(ArtifactStoreTest, UnknownSchemesAndRelativeFileUrisAreRejected) {
  for (const std::string uri :
       {"s3://bucket/x", "http://host/x", "file://relative/dir", "file://", ""}) {
    auto store = ArtifactStore::Open(uri);
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument) << uri;
    if (!uri.empty()) EXPECT_THAT(store.status().message(), HasSubstr(uri));
  }
  quartet::v1::Artifact remote;
  remote.set_uri("s3://bucket/x.ckpt");
  EXPECT_EQ(ReadArtifact(remote).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeleteArtifact(remote).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ArtifactStoreTest, RootUnderARegularFileIsNotWritable) {
  // chmod does not stop root, so the directory is made impossible: its parent is a file.
  fs::create_directories(root_);
  std::ofstream(root_ / "plain-file") << "x";
  auto store = ArtifactStore::Open((root_ / "plain-file" / "artifacts").string());
  ASSERT_TRUE(store.ok());
  absl::Status s = store->CheckWritable();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr((root_ / "plain-file" / "artifacts").string()));
  auto w = store->Write("x.ckpt", "x");
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(ErrorClassOf(w.status()), quartet::v1::ERROR_CLASS_STORAGE);
}

TEST_F(ArtifactStoreTest, FullDiskIsResourceExhaustedStorageAndLeavesNoFile) {
  ArtifactStore::Options options;
  options.inject_write_errno = ENOSPC;
  auto store = ArtifactStore::Open(root_.string(), options);
  ASSERT_TRUE(store.ok());
  auto w = store->Write("campaign-1/candidate-2/epoch-1-attempt-1.ckpt", std::string(4096, 'x'));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorClassOf(w.status()), quartet::v1::ERROR_CLASS_STORAGE);
  EXPECT_THAT(w.status().message(), HasSubstr("No space left on device"));
  EXPECT_THAT(Files(), ::testing::IsEmpty());
}

TEST_F(ArtifactStoreTest, PathsLeavingTheRootAreRejected) {
  auto store = ArtifactStore::Open(root_.string());
  ASSERT_TRUE(store.ok());
  for (const std::string p : {"../escape.ckpt", "/abs.ckpt", "a/../../b", ""}) {
    EXPECT_EQ(store->Write(p, "x").status().code(), absl::StatusCode::kInvalidArgument) << p;
  }
}

}  // namespace
}  // namespace quartet::common
