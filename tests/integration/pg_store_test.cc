// The Store conformance suite against a real PostgreSQL, plus what only PgStore has: migrations.
#include <pqxx/pqxx>

#include "coordinator/storage/migrations.h"
#include "tests/common/pg_test_env.h"
#include "tests/common/store_conformance.h"

namespace quartet::coordinator::testing {
namespace {

TEST(PgStoreTest, MigratesOnceAndReopensAnExistingSchema) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  PgStore::Options o;
  o.url = PgTestUrl();
  o.schema = FreshSchema();
  auto first = PgStore::Create(o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->schema_version(), Migrations().back().version);
  auto c = (*first)->CreateCampaign(
      [] {
        CampaignRecord r;
        r.name = "kept";
        r.k = 2;
        r.budget = 1;
        r.config.add_pool("A");
        r.config.add_pool("B");
        return r;
      }(),
      absl::Now());
  ASSERT_TRUE(c.ok()) << c.status();
  auto second = PgStore::Create(o);  // a restart: no migration re-runs, data is kept
  ASSERT_TRUE(second.ok()) << second.status();
  auto again = (*second)->GetCampaign(c->id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->name, "kept");
  pqxx::connection conn(o.url);
  pqxx::work tx(conn);
  auto rows = tx.exec("SELECT count(*) FROM " + o.schema + ".schema_migrations");
  EXPECT_EQ(rows[0][0].as<int>(), static_cast<int>(Migrations().size()));
}

TEST(PgStoreTest, UnreachableDatabaseIsUnavailableAndHidesThePassword) {
  PgStore::Options o;
  o.url = "postgresql://quartet:s3cret@127.0.0.1:1/nowhere?connect_timeout=2";
  auto s = PgStore::Create(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(s.status().message()).find("s3cret"), std::string::npos) << s.status();
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest,
                         ::testing::Values(StoreFactory{"postgres",
                                                        []() -> std::unique_ptr<Store> {
                                                          if (PgTestUrl().empty()) return nullptr;
                                                          return MakeTestPgStore();
                                                        }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace quartet::coordinator::testing
