// Loading credentials: every file that is given must hold a usable token, and errors name the file
// and line but never the token.
#include "coordinator/service/auth.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"

namespace quartet::coordinator {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class LoadCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("quartet-auth-test-", ::getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(LoadCredentialsTest, NoSourceMeansAuthenticationOff) {
  auto c = LoadCredentials({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->empty());
}

TEST_F(LoadCredentialsTest, CredentialsFileWithCommentsAndBlankLines) {
  CredentialSources s;
  s.credentials_file = Write("creds",
                             "# operators\n\nadmin  a-secret\n  worker\tw-secret  \n"
                             "viewer v-secret\n# end\n");
  auto c = LoadCredentials(s);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0].role, Role::kAdmin);
  EXPECT_EQ((*c)[0].token, "a-secret");
  EXPECT_EQ((*c)[1].role, Role::kWorker);
  EXPECT_EQ((*c)[1].token, "w-secret");
  EXPECT_EQ((*c)[1].source, s.credentials_file + ":4");
  EXPECT_EQ((*c)[2].role, Role::kViewer);
}

TEST_F(LoadCredentialsTest, AFileWithoutAUsableTokenRefusesToStart) {
  for (const std::string text : {"", "\n", "   \n\t\n", "# only a comment\n"}) {
    for (int which = 0; which < 5; ++which) {
      const std::string path = Write("blank", text);
      CredentialSources s;
      std::string* field[] = {&s.credentials_file, &s.admin_token_file, &s.worker_token_file,
                              &s.viewer_token_file, &s.legacy_token_file};
      *field[which] = path;
      auto c = LoadCredentials(s);
      EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument)
          << "source " << which << " text '" << text << "'";
      EXPECT_THAT(c.status().message(), HasSubstr(path));
    }
  }
}

TEST_F(LoadCredentialsTest, FirstNonBlankLineOfATokenFileIsTheToken) {
  CredentialSources s;
  s.worker_token_file = Write("worker", "\n\n  w-token  \nignored\n");
  auto c = LoadCredentials(s);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].role, Role::kWorker);
  EXPECT_EQ((*c)[0].token, "w-token");
}

TEST_F(LoadCredentialsTest, MalformedLinesNameFileAndLineButNotTheToken) {
  struct Case {
    std::string text;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{{"admin a1\nroot s3cret-token\n", "unknown role"},
                                         {"admin a1\n\nworker\n", "missing token"},
                                         {"admin a1 s3cret-token\n", "more than two fields"}}) {
    CredentialSources s;
    s.credentials_file = Write("creds", c.text);
    auto loaded = LoadCredentials(s);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(loaded.status().message(), AllOf(HasSubstr(s.credentials_file + ":"),
                                                 HasSubstr(c.why), Not(HasSubstr("s3cret-token"))));
  }
  CredentialSources s;
  s.credentials_file = Write("creds", "# header\nroot s3cret-token\n");
  EXPECT_THAT(LoadCredentials(s).status().message(), HasSubstr(s.credentials_file + ":2"));
}

TEST_F(LoadCredentialsTest, TheSameTokenInTwoRolesIsRefused) {
  CredentialSources s;
  s.credentials_file = Write("creds", "viewer shared-token\n");
  s.admin_token_file = Write("admin", "shared-token\n");
  auto c = LoadCredentials(s);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), AllOf(HasSubstr("twice"), Not(HasSubstr("shared-token"))));
}

TEST_F(LoadCredentialsTest, LegacyTokenIsAnAdminToken) {
  CredentialSources s;
  s.legacy_token_file = Write("token", "old-token\n");
  auto c = LoadCredentials(s);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].role, Role::kAdmin);

  CredentialSources env;
  env.legacy_env_token = " env-token \n";
  c = LoadCredentials(env);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].role, Role::kAdmin);
  EXPECT_EQ((*c)[0].token, "env-token");

  env.legacy_env_token = "  ";
  EXPECT_EQ(LoadCredentials(env).status().code(), absl::StatusCode::kInvalidArgument);

  // With a credential flag given, QUARTET_TOKEN is not read.
  env.legacy_env_token = "env-token";
  env.viewer_token_file = Write("viewer", "v\n");
  c = LoadCredentials(env);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].role, Role::kViewer);
}

TEST_F(LoadCredentialsTest, MissingFileIsNotFound) {
  CredentialSources s;
  s.admin_token_file = (dir_ / "absent").string();
  EXPECT_EQ(LoadCredentials(s).status().code(), absl::StatusCode::kNotFound);
}

TEST(Roles, NamesRoundTrip) {
  for (Role r : {Role::kAdmin, Role::kWorker, Role::kViewer}) {
    auto parsed = ParseRole(RoleName(r));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, r);
  }
  EXPECT_FALSE(ParseRole("Admin").ok());
}

}  // namespace
}  // namespace quartet::coordinator
