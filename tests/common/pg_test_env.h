// The PostgreSQL the integration tier runs against: QUARTET_TEST_PG_URL (deploy/test.sh starts a
// private cluster and sets it). Each test gets a fresh schema, so tests never see each other's
// rows.
#ifndef QUARTET_TESTS_COMMON_PG_TEST_ENV_H_
#define QUARTET_TESTS_COMMON_PG_TEST_ENV_H_

#include <atomic>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "coordinator/storage/pg_store.h"
#include "gtest/gtest.h"

namespace quartet::coordinator::testing {

// The URL, or "" when unset.
inline std::string PgTestUrl() {
  const char* url = std::getenv("QUARTET_TEST_PG_URL");
  return url ? url : "";
}

// A schema name no other test (or earlier run) uses.
inline std::string FreshSchema() {
  static std::atomic<int> counter{0};
  static const unsigned salt = std::random_device{}();
  return "t" + std::to_string(salt) + "_" + std::to_string(counter++);
}

// Skips the test when no PostgreSQL is configured, unless QUARTET_REQUIRE_PG=1 (set by
// deploy/test.sh and CI), where a missing database fails it.
#define QUARTET_REQUIRE_PG_OR_SKIP()                                                        \
  do {                                                                                      \
    if (::quartet::coordinator::testing::PgTestUrl().empty()) {                             \
      const char* req = std::getenv("QUARTET_REQUIRE_PG");                                  \
      if (req && std::string(req) == "1") {                                                 \
        FAIL() << "QUARTET_TEST_PG_URL is not set; run deploy/test.sh, or start a cluster " \
                  "with deploy/pg.sh and export its URL";                                   \
      }                                                                                     \
      GTEST_SKIP() << "QUARTET_TEST_PG_URL not set";                                        \
    }                                                                                       \
  } while (0)

// A PgStore on a fresh schema; `group_commit_window` as PgStore::Options (zero: a transaction per
// call).
inline std::unique_ptr<PgStore> MakeTestPgStore(
    absl::Duration group_commit_window = PgStore::Options().group_commit_window) {
  PgStore::Options o;
  o.url = PgTestUrl();
  o.schema = FreshSchema();
  o.group_commit_window = group_commit_window;
  auto s = PgStore::Create(o);
  if (!s.ok()) {
    ADD_FAILURE() << s.status();
    return nullptr;
  }
  return std::move(*s);
}

}  // namespace quartet::coordinator::testing

#endif  // QUARTET_TESTS_COMMON_PG_TEST_ENV_H_
