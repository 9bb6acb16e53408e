// The Store conformance suite against a real PostgreSQL, plus what only PgStore has: migrations.
#include <atomic>
#include <pqxx/pqxx>
#include <set>
#include <thread>
#include <vector>

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

// A database at schema version 4 (before parameter axes), holding a campaign and candidates,
// migrates at start and keeps working: old candidates have no levels, old campaigns no axis rows,
// and campaigns of k = 1 or without families can be created.
TEST(PgStoreTest, MigratesAVersion4DatabaseWithCampaignsAndCandidates) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  PgStore::Options o;
  o.url = PgTestUrl();
  o.schema = FreshSchema();
  int64_t campaign = 0, first = 0;
  {
    pqxx::connection conn(o.url);
    pqxx::work tx(conn);
    tx.exec("CREATE SCHEMA " + o.schema);
    tx.exec("SET LOCAL search_path TO " + o.schema);
    tx.exec(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    for (const Migration& m : Migrations()) {
      if (m.version > 4) continue;
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     std::string(m.name));
    }
    campaign = tx.exec(
                     "INSERT INTO campaigns (name, config, k, budget, max_attempts, created_at, "
                     "updated_at, issued, pending) VALUES ('old', '{\"name\": \"old\", "
                     "\"pool\": [\"A\", \"B\", \"C\"], \"k\": 2, \"budget\": 3}', 2, 3, "
                     "3, now(), now(), 2, 2) RETURNING id")[0][0]
                   .as<int64_t>();
    const std::string id = std::to_string(campaign);
    tx.exec("INSERT INTO family_coverage (campaign_id, family, position, pending) VALUES (" + id +
            ", 'A', 0, 2), (" + id + ", 'B', 1, 1), (" + id + ", 'C', 2, 1)");
    tx.exec(
        "INSERT INTO pair_coverage (campaign_id, family_a, family_b, position, pending) "
        "VALUES (" +
        id + ", 'A', 'B', 0, 1), (" + id + ", 'A', 'C', 1, 1), (" + id + ", 'B', 'C', 2, 0)");
    auto ids = tx.exec(
        "INSERT INTO candidates (campaign_id, combo_rank, repeat, families, "
        "created_at) VALUES (" +
        id + ", 0, 0, '{A,B}', now()), (" + id + ", 1, 0, '{A,C}', now()) RETURNING id");
    first = std::min(ids[0][0].as<int64_t>(), ids[1][0].as<int64_t>());
    tx.exec(
        "INSERT INTO work_queue (candidate_id, campaign_id, priority) SELECT id, campaign_id, "
        "0 FROM candidates");
    tx.commit();
  }
  auto store = PgStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->schema_version(), Migrations().back().version);
  EXPECT_GE((*store)->schema_version(), 5);

  auto old = (*store)->GetCandidate(first);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_TRUE(old->levels.empty());
  EXPECT_TRUE(old->axis_values.empty());
  ASSERT_TRUE((*store)->RegisterWorker({"w1"}, absl::Now()).ok());
  for (int i = 0; i < 2; ++i) {
    auto g = (*store)->LeaseNext("w1", absl::Now(), absl::Seconds(30));
    ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
    EXPECT_TRUE((*g)->candidate.levels.empty());
    ASSERT_TRUE((*store)
                    ->CompleteCandidate((*g)->candidate.id, (*g)->candidate.lease_token, "w1", {},
                                        {}, absl::Now())
                    .ok());
  }
  ASSERT_TRUE((*store)->InsertCandidates(campaign, {{2, 0, {"B", "C"}}}, absl::Now()).ok());
  auto cov = (*store)->GetCoverage(campaign);
  ASSERT_TRUE(cov.ok());
  EXPECT_TRUE(cov->levels.empty());
  ASSERT_EQ(cov->families.size(), 3u);
  EXPECT_EQ(cov->families[0].counts.succeeded, 2);  // A
  EXPECT_EQ(cov->families[1].counts.pending, 1);    // B
  EXPECT_EQ(cov->pairs[2].counts.pending, 1);       // B+C
  auto camp = (*store)->GetCampaign(campaign);
  ASSERT_TRUE(camp.ok());
  EXPECT_EQ(camp->counts.succeeded, 2);
  EXPECT_EQ(camp->counts.pending, 1);
  EXPECT_EQ(camp->issued, 3);

  // The relaxed k check: one family, and no families at all.
  CampaignRecord one;
  one.name = "one";
  one.k = 1;
  one.budget = 1;
  one.config.add_pool("A");
  quartet::v1::ParameterAxis* axis = one.config.add_axes();
  axis->set_path("recipe.router");
  axis->add_values("top-k");
  axis->add_values("soft");
  auto created = (*store)->CreateCampaign(one, absl::Now());
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ((*store)->GetCoverage(created->id)->levels.size(), 4u);
  CampaignRecord none = one;
  none.name = "none";
  none.k = 0;
  none.config.clear_pool();
  none.config.set_without_families(true);
  created = (*store)->CreateCampaign(none, absl::Now());
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(
      (*store)->InsertCandidates(created->id, {{0, 0, {}, 0, {1}, {"soft"}}}, absl::Now()).ok());
  EXPECT_EQ((*store)->GetCoverage(created->id)->levels[1].counts.pending, 1);
}

TEST(PgStoreTest, UnreachableDatabaseIsUnavailableAndHidesThePassword) {
  PgStore::Options o;
  o.url = "postgresql://quartet:s3cret@127.0.0.1:1/nowhere?connect_timeout=2";
  auto s = PgStore::Create(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(s.status().message()).find("s3cret"), std::string::npos) << s.status();
}

// A database error reaches the client as INTERNAL with an error id; the SQL stays in the log.
TEST(PgStoreTest, InternalErrorsCarryAnIdAndNoSql) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  auto store = MakeTestPgStore();
  ASSERT_NE(store, nullptr);
  CampaignRecord r;
  r.name = "not utf-8: \xff";  // PostgreSQL refuses it (SQLSTATE 22021)
  r.k = 2;
  r.budget = 1;
  r.config.add_pool("A");
  r.config.add_pool("B");
  auto c = store->CreateCampaign(r, absl::Now());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInternal);
  const std::string message(c.status().message());
  EXPECT_NE(message.find("error id "), std::string::npos) << message;
  EXPECT_EQ(message.find("INSERT"), std::string::npos) << message;
  EXPECT_EQ(message.find("SQL"), std::string::npos) << message;
  EXPECT_TRUE(store->ListCampaigns({}, 0)->empty());
}

int64_t DeadlocksSoFar(const std::string& url) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  return tx.exec("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[0][0]
      .as<int64_t>();
}

// Cancels race leases, heartbeats, completions and expiry on the same campaigns. Every
// transaction takes campaign, candidate and queue rows in that order, so PostgreSQL must report no
// deadlock (its pg_stat_database counter) and no call may give up with ABORTED.
TEST(PgStoreTest, ConcurrentCancelsLeasesAndReportsNeverDeadlock) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  auto store = MakeTestPgStore();
  ASSERT_NE(store, nullptr);
  constexpr int kWorkers = 8, kCampaigns = 6, kPerCampaign = 12;
  const absl::Time t0 = absl::Now();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(store->RegisterWorker({"w" + std::to_string(w)}, t0).ok());
  }
  std::vector<int64_t> campaigns;
  for (int c = 0; c < kCampaigns; ++c) {
    CampaignRecord r;
    r.name = "race";
    r.k = 2;
    r.budget = kPerCampaign;
    for (const char* f : {"A", "B", "C", "D"}) r.config.add_pool(f);
    auto rec = store->CreateCampaign(r, t0);
    ASSERT_TRUE(rec.ok()) << rec.status();
    std::vector<NewCandidate> cands;
    for (int i = 0; i < kPerCampaign; ++i) cands.push_back({0, i, {"A", "B"}});
    ASSERT_TRUE(store->InsertCandidates(rec->id, cands, t0).ok());
    campaigns.push_back(rec->id);
  }
  const int64_t deadlocks_before = DeadlocksSoFar(PgTestUrl());
  std::atomic<int> aborted{0}, other_errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      const std::string id = "w" + std::to_string(w);
      for (int i = 0; i < kPerCampaign; ++i) {  // bounded
        auto g = store->LeaseNext(id, t0, absl::Seconds(30));
        if (!g.ok()) {
          (g.status().code() == absl::StatusCode::kAborted ? aborted : other_errors)++;
          continue;
        }
        if (!g->has_value()) break;
        const auto& c = (*g)->candidate;
        (void)store->RenewLease(c.id, c.lease_token, id, t0, absl::Seconds(30));
        (void)store->AppendMetrics(c.id, c.lease_token, id, {{0, 0, 1, 1, "loss", 1, 0}});
        absl::Status s = i % 2
                             ? store->CompleteCandidate(c.id, c.lease_token, id, {}, {}, t0)
                             : store
                                   ->FailCandidate(c.id, c.lease_token, id,
                                                   quartet::v1::ERROR_CLASS_PREEMPTED, "", true, t0)
                                   .status();
        if (s.code() == absl::StatusCode::kAborted) aborted++;
      }
    });
  }
  threads.emplace_back([&] {
    for (int64_t c : campaigns) {
      auto r = store->CancelCampaign(c, t0);
      if (!r.ok() && r.status().code() == absl::StatusCode::kAborted) aborted++;
      (void)store->ExpireLeases(t0 - absl::Seconds(1));
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(aborted.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(DeadlocksSoFar(PgTestUrl()), deadlocks_before);
}

// Calls that share a group transaction are written in batches (every lease of a group in one
// claim, every completion in one update), yet each gets its own answer: a lease for an unknown
// worker NOT_FOUND, a completion under a stale token FAILED_PRECONDITION, one of an unknown
// candidate NOT_FOUND, a repeated completion OK once stored; counters and the best match.
TEST(PgStoreTest, BatchedCallsOfOneGroupEachGetTheirOwnAnswer) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  // A long window, so calls arriving while a group is written share the next one.
  auto store = MakeTestPgStore(absl::Milliseconds(50));
  ASSERT_NE(store, nullptr);
  constexpr int kWorkers = 12;
  const absl::Time t0 = absl::Now();
  for (int w = 0; w < kWorkers; ++w) {
    WorkerRecord worker;
    worker.id = "w" + std::to_string(w);
    if (w % 2) worker.families = {"A", "B", "C"};  // two kinds of worker
    ASSERT_TRUE(store->RegisterWorker(worker, t0).ok());
  }
  CampaignRecord r;
  r.name = "batches";
  r.k = 2;
  r.budget = kWorkers;
  for (const char* f : {"A", "B", "C", "D"}) r.config.add_pool(f);
  auto campaign = store->CreateCampaign(r, t0);
  ASSERT_TRUE(campaign.ok()) << campaign.status();
  std::vector<NewCandidate> fresh;
  for (int i = 0; i < kWorkers; ++i) fresh.push_back({0, i, {"A", "B"}});
  ASSERT_TRUE(store->InsertCandidates(campaign->id, fresh, t0).ok());

  // Every worker and one unregistered leases at once.
  std::vector<absl::StatusOr<std::optional<LeaseGrant>>> grants(kWorkers + 1, std::nullopt);
  std::vector<std::thread> threads;
  for (int w = 0; w <= kWorkers; ++w) {
    threads.emplace_back([&, w] {
      grants[w] = store->LeaseNext(w < kWorkers ? "w" + std::to_string(w) : "nobody", t0,
                                   absl::Seconds(30));
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  EXPECT_EQ(grants[kWorkers].status().code(), absl::StatusCode::kNotFound);
  std::set<int64_t> leased;
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(grants[w].ok()) << grants[w].status();
    ASSERT_TRUE(grants[w]->has_value()) << "worker " << w;
    EXPECT_EQ((*grants[w])->candidate.worker_id, "w" + std::to_string(w));
    leased.insert((*grants[w])->candidate.id);
  }
  EXPECT_EQ(leased.size(), static_cast<size_t>(kWorkers));  // no candidate leased twice

  // Each completes (worker 0 twice), plus a stale token and an unknown candidate, at once.
  auto complete = [&](int w, int64_t token_delta, int64_t id_delta) {
    const CandidateRecord& c = (*grants[w])->candidate;
    quartet::v1::Result result;
    result.set_test_accuracy(0.5 + 0.01 * w);
    return store->CompleteCandidate(c.id + id_delta, c.lease_token + token_delta,
                                    "w" + std::to_string(w), result, {}, t0);
  };
  std::vector<absl::Status> answers(kWorkers + 3);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] { answers[w] = complete(w, 0, 0); });
  }
  threads.emplace_back([&] { answers[kWorkers] = complete(0, 0, 0); });
  threads.emplace_back([&] { answers[kWorkers + 1] = complete(1, 1, 0); });
  threads.emplace_back([&] { answers[kWorkers + 2] = complete(2, 0, 1 << 30); });
  for (auto& t : threads) t.join();
  for (int w = 0; w < kWorkers; ++w) EXPECT_TRUE(answers[w].ok()) << w << ": " << answers[w];
  EXPECT_TRUE(answers[kWorkers].ok()) << answers[kWorkers];
  EXPECT_EQ(answers[kWorkers + 1].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(answers[kWorkers + 2].code(), absl::StatusCode::kNotFound);

  auto after = store->GetCampaign(campaign->id);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->counts.succeeded, kWorkers);
  EXPECT_EQ(after->counts.leased, 0);
  EXPECT_EQ(after->counts.pending, 0);
  EXPECT_EQ(after->state, CampaignState::kDone);
  EXPECT_EQ(after->best_candidate_id, (*grants[kWorkers - 1])->candidate.id);
  EXPECT_DOUBLE_EQ(after->best_accuracy, 0.5 + 0.01 * (kWorkers - 1));
  EXPECT_NEAR(after->succeeded_seconds, 0, 1e-9);
}

// The URL is asked for at every new connection: a database that moved is found again.
TEST(PgStoreTest, AskTheUrlSourceAgainAfterTheConnectionBreaks) {
  QUARTET_REQUIRE_PG_OR_SKIP();
  PgStore::Options o;
  o.schema = FreshSchema();
  o.pool_size = 1;
  std::atomic<int> asked{0};
  std::atomic<bool> moved{false};
  // A name of its own, so only this store's connection is terminated below.
  const std::string app = "quartet_" + o.schema;
  const std::string url = PgTestUrl() + (PgTestUrl().find('?') == std::string::npos ? "?" : "&") +
                          "application_name=" + app;
  o.url_source = [&]() -> absl::StatusOr<std::string> {
    asked++;
    if (moved) return std::string("postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2");
    return url;
  };
  auto terminate = [&] {
    pqxx::connection admin(PgTestUrl());
    pqxx::work tx(admin);
    tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = " +
            tx.quote(app));
    tx.commit();
  };
  auto store = PgStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Ping().ok());
  // Kill the pooled connection from outside, as a database restart would.
  terminate();
  const int before = asked.load();
  absl::Status again = (*store)->Ping();  // reconnects once, transparently
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_GT(asked.load(), before);
  moved = true;
  terminate();
  absl::Status s = (*store)->Ping();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_GT(asked.load(), before);
}

}  // namespace

// "postgres": group commit on (the default window); "postgres_per_call": a transaction per call.
INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest,
                         ::testing::Values(StoreFactory{"postgres",
                                                        []() -> std::unique_ptr<Store> {
                                                          if (PgTestUrl().empty()) return nullptr;
                                                          return MakeTestPgStore();
                                                        }},
                                           StoreFactory{"postgres_per_call",
                                                        []() -> std::unique_ptr<Store> {
                                                          if (PgTestUrl().empty()) return nullptr;
                                                          return MakeTestPgStore(
                                                              absl::ZeroDuration());
                                                        }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace quartet::coordinator::testing
