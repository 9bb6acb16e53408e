#include "coordinator/storage/pg_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/spec_io.h"
#include "common/status_macros.h"
#include "coordinator/storage/migrations.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace quartet::coordinator {
namespace {

using pqxx::dbtransaction;

// ---- Value conversion ----------------------------------------------------------------------

// Seconds since the epoch with microsecond precision, for to_timestamp().
double Epoch(absl::Time t) { return static_cast<double>(absl::ToUnixMicros(t)) / 1e6; }

absl::Time TimeOf(const pqxx::field& f) {
  if (f.is_null()) return absl::InfinitePast();
  return absl::FromUnixMicros(std::llround(f.as<double>() * 1e6));
}

// A PostgreSQL array literal of text values, every element quoted.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char ch : values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// A float8 as PostgreSQL reads it back exactly (NaN and the infinities by name).
std::string FloatText(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

template <typename T>
std::string NumberArray(const std::vector<T>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if constexpr (std::is_floating_point_v<T>) {
      out += FloatText(static_cast<double>(values[i]));
    } else {
      out += std::to_string(values[i]);
    }
  }
  out += '}';
  return out;
}

std::vector<std::string> ParseTextArrayJson(const pqxx::field& f) {
  std::vector<std::string> out;
  if (f.is_null()) return out;
  for (const auto& v : nlohmann::json::parse(f.c_str())) out.push_back(v.get<std::string>());
  return out;
}

std::vector<int> ParseIntArrayJson(const pqxx::field& f) {
  std::vector<int> out;
  if (f.is_null()) return out;
  for (const auto& v : nlohmann::json::parse(f.c_str())) out.push_back(v.get<int>());
  return out;
}

// A JSON array of strings (one text[] element per candidate, unpacked with
// jsonb_array_elements_text): text arrays of arrays cannot be passed through unnest().
std::string JsonTextArray(const std::vector<std::string>& values) {
  return nlohmann::json(values).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Column names of the per-state counters (campaigns, family_coverage, pair_coverage).
const char* Column(CandidateState s) {
  switch (s) {
    case CandidateState::kPending:
      return "pending";
    case CandidateState::kLeased:
      return "leased";
    case CandidateState::kSucceeded:
      return "succeeded";
    case CandidateState::kFailed:
      return "failed";
    case CandidateState::kCancelled:
      return "cancelled";
    case CandidateState::kStoppedEarly:
      return "stopped_early";
  }
  return "pending";
}

// State values as SQL literals, so queries name states instead of numbers.
std::string Sql(CandidateState s) { return std::to_string(static_cast<int>(s)); }
std::string Sql(CampaignState s) { return std::to_string(static_cast<int>(s)); }
const std::string kPending = Sql(CandidateState::kPending);
const std::string kLeased = Sql(CandidateState::kLeased);
const std::string kSucceeded = Sql(CandidateState::kSucceeded);
const std::string kCandidateFailed = Sql(CandidateState::kFailed);
const std::string kCandidateCancelled = Sql(CandidateState::kCancelled);
const std::string kRunning = Sql(CampaignState::kRunning);
const std::string kPaused = Sql(CampaignState::kPaused);
const std::string kCampaignCancelled = Sql(CampaignState::kCancelled);
const std::string kDone = Sql(CampaignState::kDone);

// Leases one expiry sweep ends at most (the next sweep takes the rest).
constexpr int kExpireBatch = 500;

// ---- Row mapping ---------------------------------------------------------------------------

constexpr char kCampaignColumns[] =
    "id, name, config::text, k, budget, max_attempts, priority, state, issued, pending, leased, "
    "succeeded, failed, cancelled, best_accuracy, best_candidate_id, succeeded_seconds, "
    "EXTRACT(EPOCH FROM created_at), EXTRACT(EPOCH FROM updated_at), "
    "EXTRACT(EPOCH FROM finished_at), max_preemptions, stopped_early, checkpoint_failures";

absl::StatusOr<CampaignRecord> ParseCampaign(const pqxx::row& r) {
  CampaignRecord c;
  c.id = r[0].as<int64_t>();
  c.name = r[1].as<std::string>();
  QUARTET_RETURN_IF_ERROR(common::ParseMessage(r[2].c_str(), common::TextFormat::kJson,
                                               absl::StrCat("campaigns.config of ", c.id),
                                               &c.config));
  c.k = r[3].as<int>();
  c.budget = r[4].as<int64_t>();
  c.max_attempts = r[5].as<int>();
  c.priority = r[6].as<int>();
  c.state = static_cast<CampaignState>(r[7].as<int>());
  c.issued = r[8].as<int64_t>();
  c.counts.pending = r[9].as<int64_t>();
  c.counts.leased = r[10].as<int64_t>();
  c.counts.succeeded = r[11].as<int64_t>();
  c.counts.failed = r[12].as<int64_t>();
  c.counts.cancelled = r[13].as<int64_t>();
  c.best_accuracy = r[14].as<double>();
  c.best_candidate_id = r[15].as<int64_t>();
  c.succeeded_seconds = r[16].as<double>();
  c.created_at = TimeOf(r[17]);
  c.updated_at = TimeOf(r[18]);
  c.finished_at = TimeOf(r[19]);
  c.max_preemptions = r[20].as<int>();
  c.counts.stopped_early = r[21].as<int64_t>();
  c.checkpoint_failures = r[22].as<int64_t>();
  return c;
}

constexpr char kCandidateColumns[] =
    "id, campaign_id, combo_rank, repeat, array_to_json(families)::text, state, attempt, "
    "lease_token, worker_id, EXTRACT(EPOCH FROM lease_deadline), cancel_requested, result::text, "
    "test_accuracy, error_class, error_message, EXTRACT(EPOCH FROM created_at), "
    "EXTRACT(EPOCH FROM started_at), EXTRACT(EPOCH FROM finished_at), preemptions, "
    "est_memory_bytes, array_to_json(levels)::text, array_to_json(axis_values)::text, rung, "
    "rung_results::text, checkpoint::text, exported_model::text, completed_token";
// Columns in kCandidateColumns (a query may add its own after them).
constexpr int kCandidateColumnCount = 27;

constexpr char kWorkerColumns[] =
    "id, host, device, gpu_name, gpu_memory_bytes, array_to_json(families)::text, version, "
    "secret_hash, EXTRACT(EPOCH FROM registered_at), EXTRACT(EPOCH FROM last_seen_at), draining";

WorkerRecord ParseWorker(const pqxx::row& r) {
  WorkerRecord out;
  out.id = r[0].as<std::string>();
  out.host = r[1].as<std::string>();
  out.device = r[2].as<std::string>();
  out.gpu_name = r[3].as<std::string>();
  out.gpu_memory_bytes = r[4].as<int64_t>();
  out.families = ParseTextArrayJson(r[5]);
  out.version = r[6].as<std::string>();
  out.secret_hash = r[7].as<std::string>();
  out.registered_at = TimeOf(r[8]);
  out.last_seen_at = TimeOf(r[9]);
  out.draining = r[10].as<bool>();
  return out;
}

// An Artifact stored as JSON; nullopt for NULL.
absl::StatusOr<std::optional<quartet::v1::Artifact>> ParseArtifact(const pqxx::field& f,
                                                                   int64_t candidate_id) {
  if (f.is_null()) return std::optional<quartet::v1::Artifact>();
  quartet::v1::Artifact a;
  QUARTET_RETURN_IF_ERROR(common::ParseMessage(f.c_str(), common::TextFormat::kJson,
                                               absl::StrCat("artifact of candidate ", candidate_id),
                                               &a));
  return std::optional<quartet::v1::Artifact>(std::move(a));
}

// candidates.rung_results: a JSON array of quartet.v1.RungResult.
absl::StatusOr<std::vector<quartet::v1::RungResult>> ParseRungResults(const pqxx::field& f,
                                                                      int64_t candidate_id) {
  std::vector<quartet::v1::RungResult> out;
  for (const auto& v : nlohmann::json::parse(f.c_str())) {
    quartet::v1::RungResult rung;
    QUARTET_RETURN_IF_ERROR(
        common::ParseMessage(v.dump(), common::TextFormat::kJson,
                             absl::StrCat("candidates.rung_results of ", candidate_id), &rung));
    out.push_back(std::move(rung));
  }
  return out;
}

absl::StatusOr<CandidateRecord> ParseCandidate(const pqxx::row& r) {
  CandidateRecord c;
  c.id = r[0].as<int64_t>();
  c.campaign_id = r[1].as<int64_t>();
  c.rank = static_cast<uint64_t>(r[2].as<int64_t>());
  c.repeat = r[3].as<int>();
  c.families = ParseTextArrayJson(r[4]);
  c.state = static_cast<CandidateState>(r[5].as<int>());
  c.attempt = r[6].as<int>();
  c.lease_token = r[7].as<int64_t>();
  c.worker_id = r[8].as<std::string>();
  c.lease_deadline = TimeOf(r[9]);
  c.cancel_requested = r[10].as<bool>();
  if (!r[11].is_null()) {
    quartet::v1::Result result;
    QUARTET_RETURN_IF_ERROR(common::ParseMessage(r[11].c_str(), common::TextFormat::kJson,
                                                 absl::StrCat("candidates.result of ", c.id),
                                                 &result));
    c.result = std::move(result);
  }
  c.test_accuracy = r[12].as<double>();
  c.error_class = static_cast<quartet::v1::ErrorClass>(r[13].as<int>());
  c.error_message = r[14].as<std::string>();
  c.created_at = TimeOf(r[15]);
  c.started_at = TimeOf(r[16]);
  c.finished_at = TimeOf(r[17]);
  c.preemptions = r[18].as<int>();
  c.est_memory_bytes = r[19].as<int64_t>();
  c.levels = ParseIntArrayJson(r[20]);
  c.axis_values = ParseTextArrayJson(r[21]);
  c.rung = r[22].as<int>();
  QUARTET_ASSIGN_OR_RETURN(c.rungs, ParseRungResults(r[23], c.id));
  QUARTET_ASSIGN_OR_RETURN(c.checkpoint, ParseArtifact(r[24], c.id));
  QUARTET_ASSIGN_OR_RETURN(c.exported_model, ParseArtifact(r[25], c.id));
  c.completed_token = r[26].as<int64_t>();
  return c;
}

// ---- Shared transaction steps ----------------------------------------------------------------

// Counter deltas of a tally as parallel arrays, for unnest().
struct TallyArrays {
  std::vector<std::string> families, pair_a, pair_b, triple_a, triple_b, triple_c, cell_family;
  std::vector<int64_t> family_n, pair_n, triple_n, cell_n;
  std::vector<int> cell_axis, cell_level;

  explicit TallyArrays(const FamilyTally& t) {
    for (const auto& [name, n] : t.families) {
      families.push_back(name);
      family_n.push_back(n);
    }
    for (const auto& [p, n] : t.pairs) {
      pair_a.push_back(p.first);
      pair_b.push_back(p.second);
      pair_n.push_back(n);
    }
    for (const auto& [t3, n] : t.triples) {
      triple_a.push_back(std::get<0>(t3));
      triple_b.push_back(std::get<1>(t3));
      triple_c.push_back(std::get<2>(t3));
      triple_n.push_back(n);
    }
    for (const auto& [cell, n] : t.cells) {
      cell_axis.push_back(std::get<0>(cell));
      cell_level.push_back(std::get<1>(cell));
      cell_family.push_back(std::get<2>(cell));
      cell_n.push_back(n);
    }
  }
};

// Coverage rows a MoveCoverage matched.
struct Matched {
  int64_t families = 0;
  int64_t cells = 0;
};

// Moves the tallied candidates between states in the family, pair and axis coverage counters (one
// statement per table; none for axis coverage when the candidates have no levels). `from` empty
// only adds to `to`.
Matched MoveCoverage(dbtransaction& tx, int64_t campaign_id, const FamilyTally& tally,
                     const std::string& from, const std::string& to) {
  const TallyArrays d(tally);
  const std::string set =
      from.empty() ? absl::StrCat(to, " = x.", to, " + d.n")
                   : absl::StrCat(from, " = x.", from, " - d.n, ", to, " = x.", to, " + d.n");
  pqxx::result fam =
      tx.exec_params(absl::StrCat("UPDATE family_coverage x SET ", set,
                                  " FROM unnest($2::text[], $3::bigint[]) AS d(family, n) "
                                  "WHERE x.campaign_id = $1 AND x.family = d.family"),
                     campaign_id, TextArray(d.families), NumberArray(d.family_n));
  tx.exec_params(absl::StrCat("UPDATE pair_coverage x SET ", set,
                              " FROM unnest($2::text[], $3::text[], $4::bigint[]) AS d(a, b, n) "
                              "WHERE x.campaign_id = $1 AND x.family_a = d.a AND x.family_b = d.b"),
                 campaign_id, TextArray(d.pair_a), TextArray(d.pair_b), NumberArray(d.pair_n));
  Matched matched;
  matched.families = fam.affected_rows();
  if (!d.cell_n.empty()) {
    matched.cells =
        tx.exec_params(
              absl::StrCat("UPDATE axis_coverage x SET ", set,
                           " FROM unnest($2::int[], $3::int[], $4::text[], $5::bigint[]) "
                           "AS d(axis, level, family, n) WHERE x.campaign_id = $1 AND "
                           "x.axis = d.axis AND x.level = d.level AND x.family = d.family"),
              campaign_id, NumberArray(d.cell_axis), NumberArray(d.cell_level),
              TextArray(d.cell_family), NumberArray(d.cell_n))
            .affected_rows();
  }
  return matched;
}

// A float8 as an SQL literal.
std::string Literal(double v) { return absl::StrCat("'", FloatText(v), "'::float8"); }

// The statement that sets a campaign DONE when its whole budget is issued and final.
std::string MaybeFinishSql(int64_t campaign_id, absl::Time now) {
  const std::string at = absl::StrCat("to_timestamp(", Literal(Epoch(now)), ")");
  return absl::StrCat("UPDATE campaigns SET state = ", kDone, ", finished_at = ", at,
                      ", updated_at = ", at, " WHERE id = ", campaign_id, " AND state IN (",
                      kRunning, ", ", kPaused,
                      ") AND issued = budget AND pending = 0 AND leased = 0");
}

// Sets a campaign DONE when its whole budget is issued and final.
void MaybeFinish(dbtransaction& tx, int64_t campaign_id, absl::Time now) {
  tx.exec(MaybeFinishSql(campaign_id, now));
}

// A campaign row, locked FOR NO KEY UPDATE: the first lock of every transaction that changes a
// campaign or its candidates (the weaker lock lets inserts of new candidates check their foreign
// key while it is held).
struct CampaignLock {
  CampaignState state;
  int max_attempts;
  int max_preemptions;
  int priority;
  std::string config_json;
};

constexpr char kCampaignLockColumns[] =
    "id, state, max_attempts, max_preemptions, priority, config::text";

CampaignLock ParseCampaignLock(const pqxx::row& r) {
  return CampaignLock{static_cast<CampaignState>(r[1].as<int>()), r[2].as<int>(), r[3].as<int>(),
                      r[4].as<int>(), r[5].as<std::string>()};
}

absl::StatusOr<CampaignLock> LockCampaign(dbtransaction& tx, int64_t campaign_id) {
  pqxx::result c = tx.exec_params(absl::StrCat("SELECT ", kCampaignLockColumns,
                                               " FROM campaigns WHERE id = $1 FOR NO KEY UPDATE"),
                                  campaign_id);
  if (c.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  return ParseCampaignLock(c[0]);
}

// ---- Prepared statements (every pooled connection; see PreparedStatements) -------------------

// The campaigns of the candidates $1 and, when $2, every RUNNING campaign with queued work, locked
// in id order (CampaignLocks::LockAll).
constexpr char kLockAll[] = "lock_all";
// Leasing workers' kinds (ReadWorkerKinds).
constexpr char kWorkerKinds[] = "worker_kinds";
// The claim of a lease batch (ClaimAndLease).
constexpr char kClaimAndLease[] = "claim_and_lease";
// The candidates $1 of a completion batch, locked in id order, with kLeaseRowColumns.
constexpr char kLockLeaseRows[] = "lock_lease_rows";
// The results of a completion batch (UpdateCompleted).
constexpr char kUpdateCompleted[] = "update_completed";

// The candidate columns the fencing check reads (JudgeRow).
constexpr char kLeaseRowColumns[] =
    "id, campaign_id, state, lease_token, worker_id, error_class, attempt, preemptions, "
    "array_to_json(families)::text, cancel_requested, array_to_json(levels)::text, "
    "completed_token";

// The statements of the lease transitions, by name: prepared once per connection (on first use)
// instead of parsed and planned at every call.
const std::vector<std::pair<std::string, std::string>>& PreparedStatements() {
  static const auto* statements = new std::vector<std::pair<std::string, std::string>>{
      {kLockAll,
       absl::StrCat("SELECT ", kCampaignLockColumns,
                    " FROM campaigns c WHERE c.id IN (SELECT campaign_id FROM candidates WHERE "
                    "id = ANY($1::bigint[])) OR ($2 AND c.state = ",
                    kRunning,
                    " AND EXISTS (SELECT 1 FROM work_queue q WHERE q.campaign_id = c.id)) "
                    "ORDER BY c.id FOR NO KEY UPDATE")},
      {kWorkerKinds,
       "SELECT id, array_to_json(families)::text, gpu_memory_bytes FROM workers WHERE id = "
       "ANY($1::text[])"},
      // The claim locks the candidate and its queue row together; a token equal to the
      // candidate's previous one is replaced by the spare (never equal to the token), so every
      // lease gets a new token.
      {kClaimAndLease,
       absl::StrCat(
           "WITH claimed AS (SELECT q.candidate_id, q.priority, q.rung, k.lease_token FROM "
           "work_queue q JOIN candidates k ON k.id = q.candidate_id WHERE q.campaign_id = "
           "ANY($3::bigint[]) AND k.state = ",
           kPending,
           " AND (cardinality($1::text[]) = 0 OR k.families <@ $1::text[]) AND ($2 = 0 OR "
           "k.est_memory_bytes <= $2) ORDER BY q.priority DESC, q.rung DESC, q.candidate_id "
           "LIMIT $4 FOR UPDATE OF q, k SKIP LOCKED), "
           "gone AS (DELETE FROM work_queue w USING claimed WHERE w.candidate_id = "
           "claimed.candidate_id), "
           "numbered AS (SELECT candidate_id AS claim_id, lease_token AS claim_previous, "
           "row_number() OVER (ORDER BY priority DESC, rung DESC, candidate_id) AS claim_ord "
           "FROM claimed) "
           "UPDATE candidates SET state = ",
           kLeased,
           ", attempt = attempt + 1, lease_token = CASE WHEN h.h_token = n.claim_previous THEN "
           "h.h_spare ELSE h.h_token END, worker_id = h.h_worker, lease_deadline = "
           "to_timestamp(h.h_deadline), cancel_requested = FALSE, started_at = "
           "COALESCE(started_at, to_timestamp(h.h_start)) "
           "FROM numbered n JOIN unnest($5::text[], $6::bigint[], $7::bigint[], $8::float8[], "
           "$9::float8[]) WITH ORDINALITY AS h(h_worker, h_token, h_spare, h_deadline, h_start, "
           "h_ord) ON h.h_ord = n.claim_ord WHERE candidates.id = n.claim_id RETURNING ",
           kCandidateColumns, ", h.h_ord - 1")},
      {kLockLeaseRows,
       absl::StrCat("SELECT ", kLeaseRowColumns,
                    " FROM candidates WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE")},
      {kUpdateCompleted,
       "UPDATE candidates k SET state = d.state, result = d.result::jsonb, test_accuracy = "
       "d.acc, finished_at = to_timestamp(d.t), cancel_requested = FALSE, completed_token = "
       "d.token, checkpoint = COALESCE(d.ckpt::jsonb, k.checkpoint), "
       "exported_model = COALESCE(d.export::jsonb, k.exported_model) "
       "FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::smallint[], "
       "$6::bigint[], $7::text[], $8::text[]) AS d(id, result, acc, t, state, token, ckpt, "
       "export) WHERE k.id = d.id"},
  };
  return *statements;
}

// The campaign rows a lease transaction holds, each locked once. A group locks every row it will
// need first, in id order (LockAll), so groups, sweeps and operator changes cannot deadlock on
// campaigns; a row needed later is locked then.
class CampaignLocks {
 public:
  // Locks, in id order, the campaigns of `candidate_ids` and, with `leasable`, every RUNNING
  // campaign with queued work (the only campaigns a claim of this transaction takes work from).
  void LockAll(dbtransaction& tx, const std::vector<int64_t>& candidate_ids, bool leasable) {
    pqxx::result rows = tx.exec_prepared(kLockAll, NumberArray(candidate_ids), leasable);
    for (const auto& r : rows) locked_[r[0].as<int64_t>()] = ParseCampaignLock(r);
    leasable_ = leasable_ || leasable;
  }

  // The campaign's row, locked now unless held already. NOT_FOUND for an unknown campaign.
  absl::StatusOr<CampaignLock*> Lock(dbtransaction& tx, int64_t campaign_id) {
    auto it = locked_.find(campaign_id);
    if (it == locked_.end()) {
      QUARTET_ASSIGN_OR_RETURN(CampaignLock lock, LockCampaign(tx, campaign_id));
      it = locked_.emplace(campaign_id, std::move(lock)).first;
    }
    return &it->second;
  }

  // The RUNNING campaigns a claim may take work from, locking them first when needed.
  std::vector<int64_t> Leasable(dbtransaction& tx) {
    if (!leasable_) LockAll(tx, {}, true);
    std::vector<int64_t> out;
    for (const auto& [id, lock] : locked_) {
      if (lock.state == CampaignState::kRunning) out.push_back(id);
    }
    return out;
  }

  // What a call under a savepoint may change (rows it locked, a revived campaign's state), to
  // restore when the call is rolled back: its locks went with its savepoint.
  struct Snapshot {
    std::map<int64_t, CampaignState> states;
    bool leasable = false;
  };
  Snapshot Save() const {
    Snapshot out;
    for (const auto& [id, lock] : locked_) out.states[id] = lock.state;
    out.leasable = leasable_;
    return out;
  }
  void Restore(const Snapshot& saved) {
    for (auto it = locked_.begin(); it != locked_.end();) {
      auto s = saved.states.find(it->first);
      if (s == saved.states.end()) {
        it = locked_.erase(it);
      } else {
        it->second.state = s->second;
        ++it;
      }
    }
    leasable_ = saved.leasable;
  }

 private:
  std::map<int64_t, CampaignLock> locked_;
  bool leasable_ = false;
};

// Changes of candidate counts by state (CandidateState order).
struct StateDelta {
  int64_t n[6] = {0, 0, 0, 0, 0, 0};

  void Move(CandidateState from, CandidateState to, int64_t count) {
    n[static_cast<int>(from) - 1] -= count;
    n[static_cast<int>(to) - 1] += count;
  }
  void Add(const StateDelta& o) {
    for (int i = 0; i < 6; ++i) n[i] += o.n[i];
  }
  bool zero() const {
    for (int64_t v : n) {
      if (v != 0) return false;
    }
    return true;
  }
};

// The counter changes, DONE checks and worker sightings of a transaction, written once before it
// commits (Flush): summed per campaign, family, pair and axis cell, in campaign id order.
class CounterDeltas {
 public:
  // Moves one candidate between states in the campaign's counters and coverage.
  void Move(int64_t campaign_id, const std::vector<std::string>& families,
            const std::vector<int>& levels, CandidateState from, CandidateState to,
            absl::Time now) {
    Campaign& c = Touch(campaign_id, now);
    c.counts.Move(from, to, 1);
    FamilyTally tally;
    tally.AddCandidate(families, levels);
    for (const auto& [f, n] : tally.families) c.families[f].Move(from, to, n);
    for (const auto& [p, n] : tally.pairs) c.pairs[p].Move(from, to, n);
    for (const auto& [cell, n] : tally.cells) c.cells[cell].Move(from, to, n);
  }
  // Checks, after the counters are written, whether the campaign is DONE (MaybeFinish).
  void CheckDone(int64_t campaign_id, absl::Time now) { Touch(campaign_id, now).check_done = true; }
  // A result stored: the campaign's best (the first of the highest accuracy wins, as if each
  // result were compared in turn), its succeeded seconds and its checkpoint failures.
  void Result(int64_t campaign_id, int64_t candidate_id, double accuracy, double seconds,
              int64_t checkpoint_failures, absl::Time now) {
    Campaign& c = Touch(campaign_id, now);
    c.results.Add({candidate_id, accuracy, seconds, checkpoint_failures});
  }
  void Seen(const std::string& worker_id, absl::Time now) {
    absl::Time& t = seen_[worker_id];
    t = std::max(t, now);
  }

  void Merge(const CounterDeltas& o) {
    for (const auto& [id, oc] : o.campaigns_) {
      Campaign& c = Touch(id, oc.now);
      c.counts.Add(oc.counts);
      for (const auto& [k, d] : oc.families) c.families[k].Add(d);
      for (const auto& [k, d] : oc.pairs) c.pairs[k].Add(d);
      for (const auto& [k, d] : oc.cells) c.cells[k].Add(d);
      c.check_done = c.check_done || oc.check_done;
      c.results.Add(oc.results);
    }
    for (const auto& [w, t] : o.seen_) Seen(w, t);
  }

  // Writes the changes in one round trip (statements with their values quoted, run in order),
  // after `first` when that is not empty (e.g. the release of a savepoint).
  void Flush(dbtransaction& tx, const std::string& first = "") const {
    std::vector<std::string> sql;
    if (!first.empty()) sql.push_back(first);
    for (const auto& [id, c] : campaigns_) {
      if (!c.counts.zero() || c.results.best_candidate_id != 0) {
        // The best: set when this transaction's best beats the stored one (or none is stored).
        const std::string best_id = absl::StrCat(c.results.best_candidate_id);
        const std::string beats =
            absl::StrCat(best_id, " <> 0 AND (best_candidate_id = 0 OR ",
                         Literal(c.results.best_accuracy), " > best_accuracy)");
        sql.push_back(absl::StrCat(
            "UPDATE campaigns SET pending = pending + ", c.counts.n[0], ", leased = leased + ",
            c.counts.n[1], ", succeeded = succeeded + ", c.counts.n[2], ", failed = failed + ",
            c.counts.n[3], ", cancelled = cancelled + ", c.counts.n[4],
            ", stopped_early = stopped_early + ", c.counts.n[5], ", updated_at = to_timestamp(",
            Literal(Epoch(c.now)), "), succeeded_seconds = succeeded_seconds + ",
            Literal(c.results.seconds), ", checkpoint_failures = checkpoint_failures + ",
            c.results.checkpoint_failures, ", best_candidate_id = CASE WHEN ", beats, " THEN ",
            best_id, " ELSE best_candidate_id END, best_accuracy = CASE WHEN ", beats, " THEN ",
            Literal(c.results.best_accuracy), " ELSE best_accuracy END WHERE id = ", id));
      }
      FlushTable(tx, id, c.families, "family_coverage", {"family"}, {"text"}, sql);
      FlushTable(tx, id, c.pairs, "pair_coverage", {"family_a", "family_b"}, {"text", "text"}, sql);
      FlushTable(tx, id, c.cells, "axis_coverage", {"axis", "level", "family"},
                 {"int", "int", "text"}, sql);
      if (c.check_done) sql.push_back(MaybeFinishSql(id, c.now));
    }
    if (!seen_.empty()) {
      std::vector<std::string> ids;
      std::vector<double> times;
      for (const auto& [w, t] : seen_) {
        ids.push_back(w);
        times.push_back(Epoch(t));
      }
      sql.push_back(
          absl::StrCat("UPDATE workers w SET last_seen_at = to_timestamp(d.t) FROM unnest(",
                       tx.quote(TextArray(ids)), "::text[], ", tx.quote(NumberArray(times)),
                       "::float8[]) AS d(id, t) WHERE w.id = d.id"));
    }
    if (!sql.empty()) tx.exec(absl::StrJoin(sql, ";\n"));
  }

 private:
  // The results of a transaction for one campaign, summed.
  struct Results {
    int64_t best_candidate_id = 0;  // 0: no result
    double best_accuracy = 0;
    double seconds = 0;
    int64_t checkpoint_failures = 0;

    void Add(const Results& o) {
      if (o.best_candidate_id != 0 && (best_candidate_id == 0 || o.best_accuracy > best_accuracy)) {
        best_candidate_id = o.best_candidate_id;
        best_accuracy = o.best_accuracy;
      }
      seconds += o.seconds;
      checkpoint_failures += o.checkpoint_failures;
    }
  };
  struct Campaign {
    StateDelta counts;
    Results results;
    std::map<std::string, StateDelta> families;
    std::map<std::pair<std::string, std::string>, StateDelta> pairs;
    std::map<std::tuple<int, int, std::string>, StateDelta> cells;
    absl::Time now = absl::InfinitePast();
    bool check_done = false;
  };

  Campaign& Touch(int64_t campaign_id, absl::Time now) {
    Campaign& c = campaigns_[campaign_id];
    c.now = std::max(c.now, now);
    return c;
  }

  // Key columns of a coverage table as text arrays (numbers as text, cast in SQL).
  static void Keys(const std::string& k, std::vector<std::vector<std::string>>& cols) {
    cols[0].push_back(k);
  }
  static void Keys(const std::pair<std::string, std::string>& k,
                   std::vector<std::vector<std::string>>& cols) {
    cols[0].push_back(k.first);
    cols[1].push_back(k.second);
  }
  static void Keys(const std::tuple<int, int, std::string>& k,
                   std::vector<std::vector<std::string>>& cols) {
    cols[0].push_back(std::to_string(std::get<0>(k)));
    cols[1].push_back(std::to_string(std::get<1>(k)));
    cols[2].push_back(std::get<2>(k));
  }

  // One UPDATE of a coverage table adding the non-zero deltas, appended to `sql`.
  template <typename Key>
  static void FlushTable(dbtransaction& tx, int64_t campaign_id,
                         const std::map<Key, StateDelta>& deltas, const char* table,
                         const std::vector<std::string>& key_names,
                         const std::vector<std::string>& key_types, std::vector<std::string>& sql) {
    std::vector<std::vector<std::string>> keys(key_names.size());
    std::vector<std::vector<int64_t>> n(6);
    for (const auto& [k, d] : deltas) {
      if (d.zero()) continue;
      Keys(k, keys);
      for (int i = 0; i < 6; ++i) n[i].push_back(d.n[i]);
    }
    if (n[0].empty()) return;
    // unnest('{...}'::text[], ..., '{...}'::bigint[] x 6) AS d(k0, ..., n0..n5)
    std::vector<std::string> args, names, match;
    for (size_t i = 0; i < key_names.size(); ++i) {
      args.push_back(absl::StrCat(tx.quote(TextArray(keys[i])), "::text[]"));
      names.push_back(absl::StrCat("k", i));
      match.push_back(absl::StrCat("x.", key_names[i], " = d.k", i, "::", key_types[i]));
    }
    std::string set;
    for (int i = 0; i < 6; ++i) {
      args.push_back(absl::StrCat(tx.quote(NumberArray(n[i])), "::bigint[]"));
      names.push_back(absl::StrCat("n", i));
      const char* col = Column(static_cast<CandidateState>(i + 1));
      absl::StrAppend(&set, i ? ", " : "", col, " = x.", col, " + d.n", i);
    }
    sql.push_back(absl::StrCat("UPDATE ", table, " x SET ", set, " FROM unnest(",
                               absl::StrJoin(args, ", "), ") AS d(", absl::StrJoin(names, ", "),
                               ") WHERE x.campaign_id = ", campaign_id, " AND ",
                               absl::StrJoin(match, " AND ")));
  }

  std::map<int64_t, Campaign> campaigns_;
  std::map<std::string, absl::Time> seen_;
};

// What a lease transition shares with the others of its transaction: the campaign rows held and
// the counter changes to write before the commit.
struct LeaseTx {
  CampaignLocks* locks;
  CounterDeltas* deltas;
};

// LockCampaign for an operator's change: FAILED_PRECONDITION when the campaign is CANCELLED or
// DONE, saying what was asked.
absl::StatusOr<CampaignLock> LockOpenCampaign(dbtransaction& tx, int64_t campaign_id,
                                              const char* action) {
  QUARTET_ASSIGN_OR_RETURN(CampaignLock camp, LockCampaign(tx, campaign_id));
  if (IsFinal(camp.state)) {
    return absl::FailedPreconditionError(absl::StrCat("campaign ", campaign_id, " is ",
                                                      CampaignStateName(camp.state), "; cannot ",
                                                      action, " a finished campaign"));
  }
  return camp;
}

absl::StatusOr<CampaignRecord> ReadCampaign(dbtransaction& tx, int64_t campaign_id) {
  pqxx::result r = tx.exec_params(
      absl::StrCat("SELECT ", kCampaignColumns, " FROM campaigns WHERE id = $1"), campaign_id);
  if (r.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  return ParseCampaign(r[0]);
}

// A candidate a lease call names, after the fencing check.
struct LeaseRow {
  int64_t campaign_id;
  CandidateState state;  // after a revival: LEASED
  int attempt;
  int preemptions;
  std::vector<std::string> families;
  std::vector<int> levels;
  bool cancel_requested;
  LeaseVerdict verdict;
  CampaignLock* campaign;  // held by LeaseTx::locks; null for metrics (which lock no campaign)
};

// Takes a candidate whose lease the sweep ended back to LEASED under the same lease.
void Revive(dbtransaction& tx, LeaseTx& cx, int64_t candidate_id, LeaseRow& row, absl::Time now) {
  if (row.state == CandidateState::kPending) {
    tx.exec_params("DELETE FROM work_queue WHERE candidate_id = $1", candidate_id);
  }
  if (row.campaign->state == CampaignState::kDone) {
    tx.exec_params(absl::StrCat("UPDATE campaigns SET state = ", kRunning,
                                ", finished_at = NULL WHERE id = $1"),
                   row.campaign_id);
    row.campaign->state = CampaignState::kRunning;
  }
  tx.exec_params(absl::StrCat("UPDATE candidates SET state = ", kLeased,
                              ", error_class = 0, error_message = '', finished_at = NULL "
                              "WHERE id = $1"),
                 candidate_id);
  cx.deltas->Move(row.campaign_id, row.families, row.levels, row.state, CandidateState::kLeased,
                  now);
  spdlog::info("candidate {}: lease taken back by its holder after an outage ({} -> LEASED)",
               candidate_id, CandidateStateName(row.state));
  row.state = CandidateState::kLeased;
}

// The fencing check of a candidate row read with kLeaseRowColumns and locked: locks the campaign
// (except for metrics, where `cx` is null), judges the call with JudgeLease, and revives a lease
// the sweep ended.
absl::StatusOr<LeaseRow> JudgeRow(dbtransaction& tx, LeaseTx* cx, const pqxx::row& r, int64_t token,
                                  const std::string& worker_id, LeaseUse use, absl::Time now) {
  const int64_t candidate_id = r[0].as<int64_t>();
  LeaseRow row{};
  row.campaign_id = r[1].as<int64_t>();
  if (use != LeaseUse::kMetrics) {
    QUARTET_ASSIGN_OR_RETURN(row.campaign, cx->locks->Lock(tx, row.campaign_id));
  }
  LeaseFacts facts;
  facts.state = static_cast<CandidateState>(r[2].as<int>());
  facts.token = r[3].as<int64_t>();
  facts.holder = r[4].as<std::string>();
  facts.error_class = static_cast<quartet::v1::ErrorClass>(r[5].as<int>());
  facts.completed_token = r[11].as<int64_t>();
  QUARTET_ASSIGN_OR_RETURN(row.verdict, JudgeLease(candidate_id, facts, token, worker_id, use));
  row.state = facts.state;
  row.attempt = r[6].as<int>();
  row.preemptions = r[7].as<int>();
  row.families = ParseTextArrayJson(r[8]);
  row.cancel_requested = r[9].as<bool>();
  row.levels = ParseIntArrayJson(r[10]);
  if (row.verdict == LeaseVerdict::kRevive) Revive(tx, *cx, candidate_id, row, now);
  return row;
}

// The one fencing check of PgStore for one candidate: reads and locks it (shared for metrics),
// then JudgeRow.
absl::StatusOr<LeaseRow> CheckLease(dbtransaction& tx, LeaseTx* cx, int64_t candidate_id,
                                    int64_t token, const std::string& worker_id, LeaseUse use,
                                    absl::Time now) {
  // A lease transition locked the candidate's campaign before (CampaignLocks::LockAll), so the
  // candidate is read and locked at once; metrics lock no campaign and share the candidate.
  pqxx::result r =
      tx.exec_params(absl::StrCat("SELECT ", kLeaseRowColumns, " FROM candidates WHERE id = $1 ",
                                  use == LeaseUse::kMetrics ? "FOR SHARE" : "FOR UPDATE"),
                     candidate_id);
  if (r.empty()) {
    return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
  }
  return JudgeRow(tx, cx, r[0], token, worker_id, use, now);
}

// Stores metric points under the candidate's attempt; returns how many were new.
int64_t InsertMetrics(dbtransaction& tx, int64_t candidate_id, int attempt,
                      const std::vector<MetricRecord>& points) {
  if (points.empty()) return 0;
  std::vector<int64_t> steps, times;
  std::vector<int> epochs;
  std::vector<std::string> names;
  std::vector<double> values;
  for (const MetricRecord& p : points) {
    steps.push_back(p.step);
    epochs.push_back(p.epoch);
    names.push_back(p.name);
    values.push_back(p.value);
    times.push_back(p.time_unix_ms);
  }
  pqxx::result ins = tx.exec_params(
      "INSERT INTO metrics (candidate_id, attempt, step, name, epoch, value, recorded_at) "
      "SELECT $1, $2, s, n, e, v, to_timestamp(t / 1000.0) "
      "FROM unnest($3::bigint[], $4::text[], $5::int[], $6::float8[], $7::bigint[]) "
      "AS u(s, n, e, v, t) ON CONFLICT DO NOTHING",
      candidate_id, attempt, NumberArray(steps), TextArray(names), NumberArray(epochs),
      NumberArray(values), NumberArray(times));
  return ins.affected_rows();
}

// Queues a PENDING candidate at its rung (promoted work first, see work_queue_order_idx).
void Enqueue(dbtransaction& tx, int64_t candidate_id, int64_t campaign_id, int priority) {
  tx.exec_params(
      "INSERT INTO work_queue (candidate_id, campaign_id, priority, rung) "
      "SELECT id, $2, $3, rung FROM candidates WHERE id = $1",
      candidate_id, campaign_id, priority);
}

// Ends a lease without a result: the candidate's new state, its error, the queue and counters.
void EndLease(dbtransaction& tx, LeaseTx& cx, int64_t candidate_id, int64_t campaign_id,
              const std::vector<std::string>& families, const std::vector<int>& levels,
              CandidateState to, quartet::v1::ErrorClass error_class, const std::string& message,
              int preemptions, int priority, absl::Time now) {
  tx.exec_params(
      absl::StrCat("UPDATE candidates SET state = $2::smallint, error_class = $3, error_message = "
                   "$4, preemptions = $6, cancel_requested = FALSE, finished_at = CASE WHEN "
                   "$2::smallint = ",
                   kPending, " THEN NULL ELSE to_timestamp($5) END WHERE id = $1"),
      candidate_id, static_cast<int>(to), static_cast<int>(error_class), message, Epoch(now),
      preemptions);
  if (to == CandidateState::kPending) Enqueue(tx, candidate_id, campaign_id, priority);
  cx.deltas->Move(campaign_id, families, levels, CandidateState::kLeased, to, now);
  cx.deltas->CheckDone(campaign_id, now);
}

// A result to store: the candidate (after the fencing check), its new state and the lease.
struct Completion {
  int64_t candidate_id;
  const LeaseRow* row;
  const quartet::v1::Result* result;
  const std::vector<MetricRecord>* final_metrics;
  CandidateState to;
  int64_t token;
  absl::Time now;
};

// A PostgreSQL array literal of text values where nullopt is NULL.
std::string NullableTextArray(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if (!values[i].has_value()) {
      out += "NULL";
      continue;
    }
    const std::string quoted = TextArray({*values[i]});
    out += quoted.substr(1, quoted.size() - 2);
  }
  out += '}';
  return out;
}

// Sets the results, states and artifacts of the completed candidates (one statement).
void UpdateCompleted(dbtransaction& tx, const std::vector<Completion>& done) {
  std::vector<int64_t> ids, tokens;
  std::vector<std::string> results;
  std::vector<double> accuracies, times;
  std::vector<int> states;
  std::vector<std::optional<std::string>> checkpoints, exports;
  for (const Completion& c : done) {
    const quartet::v1::Result& r = *c.result;
    ids.push_back(c.candidate_id);
    tokens.push_back(c.token);
    results.push_back(common::MessageToJson(r));
    accuracies.push_back(r.test_accuracy());
    times.push_back(Epoch(c.now));
    states.push_back(static_cast<int>(c.to));
    checkpoints.push_back(r.has_checkpoint() ? std::optional(common::MessageToJson(r.checkpoint()))
                                             : std::nullopt);
    exports.push_back(r.has_exported_model()
                          ? std::optional(common::MessageToJson(r.exported_model()))
                          : std::nullopt);
  }
  tx.exec_prepared(kUpdateCompleted, NumberArray(ids), TextArray(results), NumberArray(accuracies),
                   NumberArray(times), NumberArray(states), NumberArray(tokens),
                   NullableTextArray(checkpoints), NullableTextArray(exports));
}

// The completion steps CompleteCandidate and CompleteRung share: metrics, the candidates' results
// and states, counters and coverage, the campaigns' best, artifacts and checkpoint failures.
// Candidates appear once each.
void StoreCompletions(dbtransaction& tx, LeaseTx& cx, const std::vector<Completion>& done) {
  if (done.empty()) return;
  UpdateCompleted(tx, done);
  for (const Completion& c : done) {
    const quartet::v1::Result& result = *c.result;
    const int64_t campaign_id = c.row->campaign_id;
    InsertMetrics(tx, c.candidate_id, c.row->attempt, *c.final_metrics);
    cx.deltas->Move(campaign_id, c.row->families, c.row->levels, CandidateState::kLeased, c.to,
                    c.now);
    cx.deltas->Result(campaign_id, c.candidate_id, result.test_accuracy(), result.wall_seconds(),
                      CheckpointFailures(result), c.now);
    const std::pair<ArtifactKind, const quartet::v1::Artifact*> reported[] = {
        {ArtifactKind::kCheckpoint, result.has_checkpoint() ? &result.checkpoint() : nullptr},
        {ArtifactKind::kExportedModel,
         result.has_exported_model() ? &result.exported_model() : nullptr}};
    for (const auto& [kind, a] : reported) {
      if (a == nullptr) continue;
      tx.exec_params(
          "INSERT INTO artifacts (candidate_id, campaign_id, kind, uri, size_bytes, sha256, "
          "epoch, attempt, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9))",
          c.candidate_id, campaign_id, static_cast<int>(kind), a->uri(), a->size_bytes(),
          a->sha256(), a->epoch(), a->attempt(), Epoch(c.now));
    }
  }
}

// One promotion of CompleteRung: STOPPED_EARLY (or the candidate just completed) -> PENDING at
// p.to_rung, queued ahead of new candidates, its RungResult below marked.
absl::Status Promote(dbtransaction& tx, LeaseTx& cx, const LeaseRow& completing, const Promotion& p,
                     absl::Time now) {
  pqxx::result r = tx.exec_params(
      "SELECT state, array_to_json(families)::text, array_to_json(levels)::text, "
      "rung_results::text FROM candidates WHERE id = $1 AND campaign_id = $2 FOR UPDATE",
      p.candidate_id, completing.campaign_id);
  if (r.empty() ||
      static_cast<CandidateState>(r[0][0].as<int>()) != CandidateState::kStoppedEarly) {
    return PromotionRefused(p.candidate_id, completing.campaign_id);
  }
  QUARTET_ASSIGN_OR_RETURN(std::vector<quartet::v1::RungResult> rungs,
                           ParseRungResults(r[0][3], p.candidate_id));
  MarkPromoted(rungs, p);
  nlohmann::json marked = nlohmann::json::array();
  for (const auto& rung : rungs) {
    marked.push_back(nlohmann::json::parse(common::MessageToJson(rung)));
  }
  tx.exec_params(absl::StrCat("UPDATE candidates SET state = ", kPending,
                              ", rung = $2, rung_results = $3::jsonb, error_class = 0, "
                              "error_message = '', finished_at = NULL WHERE id = $1"),
                 p.candidate_id, p.to_rung, marked.dump());
  cx.deltas->Move(completing.campaign_id, ParseTextArrayJson(r[0][1]), ParseIntArrayJson(r[0][2]),
                  CandidateState::kStoppedEarly, CandidateState::kPending, now);
  Enqueue(tx, p.candidate_id, completing.campaign_id, completing.campaign->priority);
  return absl::OkStatus();
}

// What a worker can take (the WorkerCanTake rule, records.h): its families as a text array
// literal (empty: any) and its memory (0: any). Leases of workers alike are claimed together.
using WorkerKind = std::pair<std::string, int64_t>;

// The kinds of the leasing workers, by worker id; NOT_FOUND answers for unregistered ones.
std::map<std::string, WorkerKind> ReadWorkerKinds(dbtransaction& tx,
                                                  const std::vector<std::string>& worker_ids) {
  std::map<std::string, WorkerKind> out;
  for (const auto& r : tx.exec_prepared(kWorkerKinds, TextArray(worker_ids))) {
    out[r[0].as<std::string>()] = {TextArray(ParseTextArrayJson(r[1])), r[2].as<int64_t>()};
  }
  return out;
}

// Claims up to as many queued candidates as `holders` from the RUNNING campaigns `running` for
// workers of `kind`, in queue order, skipping rows other transactions hold, and leases the i-th
// to holders[i] (worker, token, spare token, deadline, start). Returns the leased candidates'
// rows (kCandidateColumns, then the holder's index).
pqxx::result ClaimAndLease(dbtransaction& tx, const WorkerKind& kind,
                           const std::vector<int64_t>& running,
                           const std::vector<std::string>& workers,
                           const std::vector<int64_t>& tokens, const std::vector<int64_t>& spares,
                           const std::vector<double>& deadlines,
                           const std::vector<double>& starts) {
  return tx.exec_prepared(kClaimAndLease, kind.first, kind.second, NumberArray(running),
                          static_cast<int64_t>(workers.size()), TextArray(workers),
                          NumberArray(tokens), NumberArray(spares), NumberArray(deadlines),
                          NumberArray(starts));
}

// What InsertCandidates needs of the campaign: its priority and the level counts of its axes.
struct IssueTarget {
  int priority = 0;
  std::vector<int> level_counts;
};

// Reads the campaign InsertCandidates issues to (with `lock`, locks its row) and checks that `n`
// more candidates fit: NOT_FOUND, FAILED_PRECONDITION for a final campaign or a full budget.
absl::StatusOr<IssueTarget> ReadIssueTarget(dbtransaction& tx, int64_t campaign_id, int64_t n,
                                            bool lock) {
  // The config only for a campaign with axes (its level counts check the candidates' levels).
  pqxx::result c = tx.exec_params(
      absl::StrCat("SELECT state, issued, budget, priority, CASE WHEN $2 AND config ? 'axes' THEN "
                   "config::text END FROM campaigns WHERE id = $1",
                   lock ? " FOR NO KEY UPDATE" : ""),
      campaign_id, !lock);
  if (c.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  const auto state = static_cast<CampaignState>(c[0][0].as<int>());
  const int64_t issued = c[0][1].as<int64_t>(), budget = c[0][2].as<int64_t>();
  if (IsFinal(state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("campaign ", campaign_id, " is ", CampaignStateName(state)));
  }
  if (issued + n > budget) {
    return absl::FailedPreconditionError(absl::StrCat(
        "campaign ", campaign_id, ": issuing ", n, " more candidates would exceed the budget of ",
        budget, " (", issued, " issued)"));
  }
  IssueTarget out;
  out.priority = c[0][3].as<int>();
  if (!c[0][4].is_null()) {
    quartet::v1::CampaignConfig config;
    QUARTET_RETURN_IF_ERROR(common::ParseMessage(c[0][4].c_str(), common::TextFormat::kJson,
                                                 "campaigns.config", &config));
    out.level_counts = AxisLevelCounts(config);
  }
  return out;
}

// Adds newly issued candidates to the campaign's coverage counters (PENDING) and triples.
// INVALID_ARGUMENT when a family or level is not the campaign's.
absl::Status AddIssuedCoverage(dbtransaction& tx, int64_t campaign_id, const FamilyTally& tally) {
  const TallyArrays d(tally);
  const Matched matched =
      MoveCoverage(tx, campaign_id, tally, "", Column(CandidateState::kPending));
  if (static_cast<size_t>(matched.families) != d.families.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("families: a family is not in the pool of campaign ", campaign_id));
  }
  if (static_cast<size_t>(matched.cells) != d.cell_n.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("levels: a level is not in the axes of campaign ", campaign_id));
  }
  if (!d.triple_a.empty()) {
    tx.exec_params(
        "INSERT INTO triple_coverage (campaign_id, family_a, family_b, family_c, issued) "
        "SELECT $1, a, b, c, n FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) "
        "AS d(a, b, c, n) ON CONFLICT (campaign_id, family_a, family_b, family_c) "
        "DO UPDATE SET issued = triple_coverage.issued + EXCLUDED.issued",
        campaign_id, TextArray(d.triple_a), TextArray(d.triple_b), TextArray(d.triple_c),
        NumberArray(d.triple_n));
  }
  return absl::OkStatus();
}

// INTERNAL for the client with an error id only; the SQL and its detail go to the coordinator log
// under that id, never over the wire.
absl::Status InternalWithId(const std::string& detail) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  const std::string id =
      absl::StrCat(absl::Hex((salt << 20) ^ counter.fetch_add(1), absl::kZeroPad8));
  spdlog::error("internal error {}: {}", id, detail);
  return absl::InternalError(absl::StrCat("internal database error (error id ", id,
                                          "; the coordinator log has the details)"));
}

// SQLSTATE classes 08 (connection exception) and 57 (operator intervention, e.g. a shutting-down
// server): the connection is gone, not the query wrong.
bool IsConnectionState(const std::string& sqlstate) {
  return sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57", 0) == 0;
}

// Redacts the password of a libpq URL or keyword string for messages.
std::string Redact(const std::string& url) {
  std::string out = url;
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t at = out.find('@', scheme);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  const size_t pw = out.find("password=");
  if (pw != std::string::npos) {
    size_t end = out.find(' ', pw);
    out.replace(pw + 9, (end == std::string::npos ? out.size() : end) - pw - 9, "***");
  }
  return out;
}

}  // namespace

// ---- Connections and transactions -------------------------------------------------------------

struct PgStore::TxContext : LeaseTx {};

struct PgStore::ParsedConfig {
  std::string json;
  quartet::v1::CampaignConfig config;
};

absl::StatusOr<std::shared_ptr<const PgStore::ParsedConfig>> PgStore::ConfigOf(
    int64_t campaign_id, const std::string& json) {
  {
    absl::MutexLock lock(&config_mu_);
    auto it = configs_.find(campaign_id);
    if (it != configs_.end() && it->second->json == json) return it->second;
  }
  auto parsed = std::make_shared<ParsedConfig>();
  parsed->json = json;
  QUARTET_RETURN_IF_ERROR(common::ParseMessage(json, common::TextFormat::kJson,
                                               absl::StrCat("campaigns.config of ", campaign_id),
                                               &parsed->config));
  absl::MutexLock lock(&config_mu_);
  configs_[campaign_id] = parsed;
  return parsed;
}

struct PgStore::LeaseCall {
  std::string worker_id;
  absl::Time now;
  absl::Duration lease;
  // Set by LeaseBatch: NOT_FOUND for an unregistered worker, else OK with the grant or none.
  absl::Status answer;
  std::optional<LeaseGrant> grant;
};

struct PgStore::CompleteCall {
  int64_t candidate_id;
  int64_t token;
  const std::string* worker_id;
  const quartet::v1::Result* result;
  const std::vector<MetricRecord>* final_metrics;
  absl::Time now;
  // Set by CompleteBatch: the fencing answer (OK for a repeat too).
  absl::Status answer;
};

// A queued lease transition and, once its group committed or failed, its answer.
struct PgStore::Transition {
  const TransitionBody* body = nullptr;
  LeaseCall* lease = nullptr;        // set for a LeaseNext
  CompleteCall* complete = nullptr;  // set for a CompleteCandidate
  const std::vector<int64_t>* candidate_ids = nullptr;
  bool leases = false;
  absl::Time queued;
  absl::Status status;
  absl::Notification done;
};

PgStore::PgStore(const Options& options) : options_(options) {}

PgStore::~PgStore() {
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Create(const Options& options) {
  if (options.url.empty() && !options.url_source) {
    return absl::InvalidArgumentError(
        "database url: empty (pass --database_url, QUARTET_DATABASE_URL or --database_url_file)");
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("pool_size: must be >= 1");
  }
  if (options.group_commit_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("group_commit_window: must be >= 0");
  }
  if (options.group_commit_max_calls < 1) {
    return absl::InvalidArgumentError("group_commit_max_calls: must be >= 1");
  }
  if (!options.schema.empty() &&
      options.schema.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") !=
          std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schema: '", options.schema, "' may hold only lower-case letters, digits and '_'"));
  }
  std::unique_ptr<PgStore> store(new PgStore(options));
  QUARTET_RETURN_IF_ERROR(store->Migrate());
  if (options.group_commit_window > absl::ZeroDuration()) {
    store->writer_ = std::thread([s = store.get()] { s->WriteGroups(); });
  }
  return store;
}

absl::StatusOr<std::string> PgStore::CurrentUrl() const {
  if (!options_.url_source) return options_.url;
  auto url = options_.url_source();
  if (!url.ok()) return absl::UnavailableError(url.status().message());
  if (url->empty()) return absl::UnavailableError("the database URL source gave an empty URL");
  return url;
}

absl::StatusOr<std::unique_ptr<pqxx::connection_base>> PgStore::Connect() {
  QUARTET_ASSIGN_OR_RETURN(const std::string url, CurrentUrl());
  try {
    std::unique_ptr<pqxx::connection_base> conn = std::make_unique<pqxx::connection>(url);
    if (!options_.schema.empty()) {
      pqxx::nontransaction n(*conn);
      n.exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", options_.schema));
      n.exec(absl::StrCat("SET search_path TO ", options_.schema));
    }
    for (const auto& [name, sql] : PreparedStatements()) conn->prepare(name, sql);
    return conn;
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL at ", Redact(url), ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("database url '", Redact(url), "': ", e.what()));
  }
}

std::unique_ptr<pqxx::connection_base> PgStore::Acquire() {
  absl::MutexLock lock(&mu_);
  auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.pool_size;
  };
  mu_.Await(absl::Condition(&available));
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
  }
  ++open_;
  return nullptr;  // the caller connects a new one outside the lock
}

void PgStore::Release(std::unique_ptr<pqxx::connection_base> conn, bool healthy) {
  absl::MutexLock lock(&mu_);
  if (healthy && conn != nullptr) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
}

void PgStore::DropIdle() {
  absl::MutexLock lock(&mu_);
  open_ -= static_cast<int>(idle_.size());
  idle_.clear();
}

absl::Status PgStore::Run(const TxBody& body) {
  if (!options_.on_transaction) return RunOnce(body);
  const absl::Time start = absl::Now();
  absl::Status status = RunOnce(body);
  options_.on_transaction(absl::Now() - start, status);
  return status;
}

absl::Status PgStore::RunOnce(const TxBody& body) {
  std::unique_ptr<pqxx::connection_base> conn = Acquire();
  absl::Status status;
  bool healthy = true;
  bool reconnected = false;
  for (int attempt = 1;; ++attempt) {
    if (conn == nullptr) {
      auto fresh = Connect();
      if (!fresh.ok()) {
        Release(nullptr, false);
        return fresh.status();
      }
      conn = std::move(*fresh);
    }
    try {
      pqxx::work tx(*conn);
      status = body(tx);
      if (status.ok()) tx.commit();
      break;  // an uncommitted pqxx::work rolls back in its destructor
    } catch (const pqxx::transaction_rollback& e) {
      if (attempt < options_.max_retries) continue;
      status = absl::AbortedError(
          absl::StrCat("transaction lost ", attempt, " conflicts, retry: ", e.what()));
      break;
    } catch (const pqxx::in_doubt_error& e) {
      healthy = false;
      status = absl::UnavailableError(
          absl::StrCat("PostgreSQL connection lost during commit (outcome unknown): ", e.what()));
      break;
    } catch (const pqxx::broken_connection& e) {
      status = absl::UnavailableError(absl::StrCat("lost the PostgreSQL connection: ", e.what()));
    } catch (const pqxx::unique_violation& e) {
      status = absl::AlreadyExistsError(e.what());
      break;
    } catch (const pqxx::sql_error& e) {
      if (!IsConnectionState(e.sqlstate())) {
        status = InternalWithId(
            absl::StrCat("SQL error ", e.sqlstate(), ": ", e.what(), " in: ", e.query()));
        break;
      }
      status = absl::UnavailableError(
          absl::StrCat("PostgreSQL ended the connection (", e.sqlstate(), "): ", e.what()));
    } catch (const std::exception& e) {
      status = InternalWithId(absl::StrCat("database error: ", e.what()));
      break;
    }
    // The connection broke before the commit was sent, so nothing was committed: a pooled
    // connection that died with a database restart is replaced and the transaction runs once more.
    Release(std::move(conn), false);
    DropIdle();  // pooled connections died with the same server
    if (reconnected) return status;
    reconnected = true;
    conn = Acquire();
  }
  if (healthy && !conn->is_open()) healthy = false;
  Release(std::move(conn), healthy);
  return status;
}

absl::Status PgStore::RunTransition(std::vector<int64_t> candidate_ids, bool leases,
                                    const TransitionBody& body, LeaseCall* lease,
                                    CompleteCall* complete) {
  if (!writer_.joinable()) return RunAlone(candidate_ids, leases, body);
  Transition t;
  t.body = &body;
  t.lease = lease;
  t.complete = complete;
  t.candidate_ids = &candidate_ids;
  t.leases = leases;
  t.queued = absl::Now();
  {
    absl::MutexLock lock(&queue_mu_);
    queue_.push_back(&t);
  }
  t.done.WaitForNotification();
  if (options_.on_transaction) options_.on_transaction(absl::Now() - t.queued, t.status);
  return t.status;
}

absl::Status PgStore::RunAlone(const std::vector<int64_t>& candidate_ids, bool leases,
                               const TransitionBody& body) {
  return Run(AloneBody(candidate_ids, leases, body));
}

PgStore::TxBody PgStore::AloneBody(const std::vector<int64_t>& candidate_ids, bool leases,
                                   const TransitionBody& body) {
  return [&candidate_ids, leases, &body](dbtransaction& tx) -> absl::Status {
    CampaignLocks locks;
    CounterDeltas deltas;
    TxContext cx;
    cx.locks = &locks;
    cx.deltas = &deltas;
    if (!candidate_ids.empty() || leases) locks.LockAll(tx, candidate_ids, leases);
    QUARTET_RETURN_IF_ERROR(body(tx, cx));
    deltas.Flush(tx);
    return absl::OkStatus();
  };
}

void PgStore::WriteGroups() {
  const size_t max_calls = static_cast<size_t>(options_.group_commit_max_calls);
  bool idle = true;
  for (;;) {
    std::vector<Transition*> group;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return !queue_.empty() || stopping_;
      };
      if (queue_.empty()) {
        idle = true;
        queue_mu_.Await(absl::Condition(&ready));
      }
      if (queue_.empty()) return;  // stopping, nothing left
      if (!idle) {
        // Calls that queued while the last group was written: wait for more until the oldest has
        // waited the window, or the group is full. A call that found the writer idle goes at once.
        auto full = [this, max_calls]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
          return queue_.size() >= max_calls || stopping_;
        };
        queue_mu_.AwaitWithDeadline(absl::Condition(&full),
                                    queue_.front()->queued + options_.group_commit_window);
      }
      while (!queue_.empty() && group.size() < max_calls) {
        group.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    idle = false;
    WriteGroup(group);
    for (Transition* t : group) t->done.Notify();
  }
}

void PgStore::WriteGroup(const std::vector<Transition*>& group) {
  if (group.size() == 1) {  // its own transaction is its savepoint
    Transition* t = group.front();
    t->status = RunOnce(AloneBody(*t->candidate_ids, t->leases, *t->body));
    return;
  }
  std::vector<int64_t> candidate_ids;
  bool leasable = false;
  std::vector<Transition*> leases, completions, alone;
  std::set<int64_t> completing;  // a second completion of one candidate is written alone
  for (Transition* t : group) {
    candidate_ids.insert(candidate_ids.end(), t->candidate_ids->begin(), t->candidate_ids->end());
    leasable = leasable || t->leases;
    if (t->lease != nullptr) {
      leases.push_back(t);
    } else if (t->complete != nullptr && completing.insert(t->complete->candidate_id).second) {
      completions.push_back(t);
    } else {
      alone.push_back(t);
    }
  }
  const absl::Status status = RunOnce([&](dbtransaction& tx) -> absl::Status {
    CampaignLocks locks;
    CounterDeltas all;
    TxContext cx;
    cx.locks = &locks;
    cx.deltas = &all;
    locks.LockAll(tx, candidate_ids, leasable);
    bool open = false;  // a savepoint of a part that succeeded is still open
    WriteBatch(tx, cx, open, leases, [&](dbtransaction& t, TxContext& mine) {
      std::vector<LeaseCall*> calls;
      for (Transition* m : leases) calls.push_back(m->lease);
      return LeaseBatch(t, mine, calls);
    });
    WriteBatch(tx, cx, open, completions, [&](dbtransaction& t, TxContext& mine) {
      std::vector<CompleteCall*> calls;
      for (Transition* m : completions) calls.push_back(m->complete);
      return CompleteBatch(t, mine, calls);
    });
    for (Transition* t : alone) t->status = RunUnderSavepoint(tx, cx, open, *t->body);
    all.Flush(tx, open ? "RELEASE SAVEPOINT call" : "");
    return absl::OkStatus();
  });
  if (!status.ok()) {
    for (Transition* t : group) t->status = status;
  }
}

void PgStore::WriteBatch(dbtransaction& tx, TxContext& group, bool& open,
                         const std::vector<Transition*>& members, const TransitionBody& batch) {
  if (members.empty()) return;
  const absl::Status written = RunUnderSavepoint(tx, group, open, batch);
  for (Transition* t : members) {
    if (!written.ok()) {
      t->status = RunUnderSavepoint(tx, group, open, *t->body);
    } else {
      t->status = t->lease != nullptr ? t->lease->answer : t->complete->answer;
    }
  }
}

absl::Status PgStore::RunUnderSavepoint(dbtransaction& tx, TxContext& group, bool& open,
                                        const TransitionBody& run) {
  CounterDeltas mine;
  TxContext cx;
  cx.locks = group.locks;
  cx.deltas = &mine;
  const CampaignLocks::Snapshot saved = group.locks->Save();
  // The last part's savepoint is released with this one's start (one round trip).
  tx.exec(open ? "RELEASE SAVEPOINT call; SAVEPOINT call" : "SAVEPOINT call");
  open = true;
  absl::Status answer;
  try {
    answer = run(tx, cx);
  } catch (const pqxx::broken_connection&) {
    throw;
  } catch (const pqxx::transaction_rollback&) {
    throw;
  } catch (const pqxx::unique_violation& e) {
    answer = absl::AlreadyExistsError(e.what());
  } catch (const pqxx::sql_error& e) {
    if (IsConnectionState(e.sqlstate())) throw;
    answer = InternalWithId(
        absl::StrCat("SQL error ", e.sqlstate(), ": ", e.what(), " in: ", e.query()));
  } catch (const pqxx::in_doubt_error&) {
    throw;
  } catch (const std::exception& e) {
    answer = InternalWithId(absl::StrCat("database error: ", e.what()));
  }
  if (answer.ok()) {
    group.deltas->Merge(mine);
  } else {
    tx.exec("ROLLBACK TO SAVEPOINT call; RELEASE SAVEPOINT call");
    open = false;
    group.locks->Restore(saved);
  }
  return answer;
}

absl::Status PgStore::Migrate() {
  return Run([this](dbtransaction& tx) -> absl::Status {
    // One coordinator migrates at a time; the lock ends with the transaction.
    tx.exec("SELECT pg_advisory_xact_lock(7165432901)");
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT "
        "NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    std::set<int> applied;
    for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) {
      applied.insert(row[0].as<int>());
    }
    for (const Migration& m : Migrations()) {
      if (!applied.count(m.version)) {
        tx.exec(m.sql);
        tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                       std::string(m.name));
        spdlog::info("applied schema migration {} ({})", m.version, m.name);
      }
      schema_version_ = std::max(schema_version_, m.version);
    }
    return absl::OkStatus();
  });
}

// ---- Campaigns ---------------------------------------------------------------------------------

absl::StatusOr<CampaignRecord> PgStore::CreateCampaign(const CampaignRecord& campaign,
                                                       absl::Time now) {
  QUARTET_RETURN_IF_ERROR(CheckCampaignShape(campaign));
  const std::vector<int> level_counts = AxisLevelCounts(campaign.config);
  CampaignRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        absl::StrCat("INSERT INTO campaigns (name, config, k, budget, max_attempts, priority, "
                     "state, created_at, updated_at, max_preemptions) VALUES ($1, $2::jsonb, $3, "
                     "$4, $5, $6, ",
                     kRunning, ", to_timestamp($7), to_timestamp($7), $8) RETURNING id"),
        campaign.name, common::MessageToJson(campaign.config), campaign.k, campaign.budget,
        campaign.max_attempts, campaign.priority, Epoch(now), campaign.max_preemptions);
    const int64_t id = r[0][0].as<int64_t>();
    std::vector<std::string> pool(campaign.config.pool().begin(), campaign.config.pool().end());
    tx.exec_params(
        "INSERT INTO family_coverage (campaign_id, family, position) "
        "SELECT $1, f, o - 1 FROM unnest($2::text[]) WITH ORDINALITY AS t(f, o)",
        id, TextArray(pool));
    tx.exec_params(
        "INSERT INTO pair_coverage (campaign_id, family_a, family_b, position) "
        "SELECT $1, a.f, b.f, row_number() OVER (ORDER BY a.o, b.o) - 1 "
        "FROM unnest($2::text[]) WITH ORDINALITY AS a(f, o) "
        "JOIN unnest($2::text[]) WITH ORDINALITY AS b(f, o) ON a.o < b.o",
        id, TextArray(pool));
    if (!level_counts.empty()) {
      // Every level row (family '') and every (axis, level, pool family) cell.
      tx.exec_params(
          "INSERT INTO axis_coverage (campaign_id, axis, level, family) "
          "SELECT $1, a.o - 1, l, f FROM unnest($2::int[]) WITH ORDINALITY AS a(n, o) "
          "CROSS JOIN LATERAL generate_series(0, a.n - 1) AS l "
          "CROSS JOIN unnest(ARRAY[''] || $3::text[]) AS f",
          id, NumberArray(level_counts), TextArray(pool));
    }
    pqxx::result c = tx.exec_params(
        absl::StrCat("SELECT ", kCampaignColumns, " FROM campaigns WHERE id = $1"), id);
    QUARTET_ASSIGN_OR_RETURN(out, ParseCampaign(c[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<CampaignRecord> PgStore::GetCampaign(int64_t campaign_id) {
  CampaignRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    pqxx::result c = tx.exec_params(
        absl::StrCat("SELECT ", kCampaignColumns, " FROM campaigns WHERE id = $1"), campaign_id);
    if (c.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
    QUARTET_ASSIGN_OR_RETURN(out, ParseCampaign(c[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<CampaignRecord>> PgStore::ListCampaigns(
    const std::vector<CampaignState>& states, int64_t limit) {
  std::vector<int> state_values;
  for (CampaignState s : states) state_values.push_back(static_cast<int>(s));
  std::vector<CampaignRecord> out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out.clear();
    pqxx::result rows = tx.exec_params(
        absl::StrCat("SELECT ", kCampaignColumns,
                     " FROM campaigns WHERE (cardinality($1::int[]) = 0 OR state = ANY($1::int[])) "
                     "ORDER BY id DESC LIMIT $2"),
        NumberArray(state_values), limit > 0 ? limit : INT64_MAX);
    for (const auto& row : rows) {
      QUARTET_ASSIGN_OR_RETURN(CampaignRecord c, ParseCampaign(row));
      out.push_back(std::move(c));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<CampaignRecord> PgStore::CancelCampaign(int64_t campaign_id, absl::Time now) {
  CampaignRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    QUARTET_ASSIGN_OR_RETURN(CampaignLock camp, LockCampaign(tx, campaign_id));
    if (IsFinal(camp.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("campaign ", campaign_id, " is already ", CampaignStateName(camp.state)));
    }
    // Lock order: campaign (above), candidates, then the queue.
    pqxx::result moved = tx.exec_params(
        absl::StrCat(
            "UPDATE candidates SET state = ", kCandidateCancelled,
            ", finished_at = to_timestamp($2) WHERE campaign_id = $1 AND state = ", kPending,
            " RETURNING array_to_json(families)::text, array_to_json(levels)::text"),
        campaign_id, Epoch(now));
    FamilyTally tally;
    for (const auto& row : moved) {
      tally.AddCandidate(ParseTextArrayJson(row[0]), ParseIntArrayJson(row[1]));
    }
    MoveCoverage(tx, campaign_id, tally, Column(CandidateState::kPending),
                 Column(CandidateState::kCancelled));
    tx.exec_params(absl::StrCat("UPDATE candidates SET cancel_requested = TRUE WHERE campaign_id "
                                "= $1 AND state = ",
                                kLeased),
                   campaign_id);
    tx.exec_params("DELETE FROM work_queue WHERE campaign_id = $1", campaign_id);
    tx.exec_params(absl::StrCat("UPDATE campaigns SET state = ", kCampaignCancelled,
                                ", cancelled = cancelled + pending, pending = 0, finished_at = "
                                "to_timestamp($2), updated_at = to_timestamp($2) WHERE id = $1"),
                   campaign_id, Epoch(now));
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kCampaignColumns, " FROM campaigns WHERE id = $1"), campaign_id);
    QUARTET_ASSIGN_OR_RETURN(out, ParseCampaign(r[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<CampaignRecord> PgStore::SetCampaignPaused(int64_t campaign_id, bool paused,
                                                          absl::Time now) {
  CampaignRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    QUARTET_ASSIGN_OR_RETURN(CampaignLock camp,
                             LockOpenCampaign(tx, campaign_id, paused ? "pause" : "resume"));
    const CampaignState to = paused ? CampaignState::kPaused : CampaignState::kRunning;
    if (camp.state != to) {
      tx.exec_params("UPDATE campaigns SET state = $2, updated_at = to_timestamp($3) WHERE id = $1",
                     campaign_id, static_cast<int>(to), Epoch(now));
    }
    QUARTET_ASSIGN_OR_RETURN(out, ReadCampaign(tx, campaign_id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<CampaignRecord> PgStore::UpdateCampaign(int64_t campaign_id,
                                                       const CampaignUpdate& update,
                                                       absl::Time now) {
  CampaignRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    QUARTET_RETURN_IF_ERROR(LockOpenCampaign(tx, campaign_id, "update").status());
    QUARTET_ASSIGN_OR_RETURN(CampaignRecord current, ReadCampaign(tx, campaign_id));
    QUARTET_RETURN_IF_ERROR(CheckBudgetUpdate(campaign_id, update, current.issued));
    quartet::v1::CampaignConfig config = current.config;
    if (update.priority.has_value()) config.set_priority(*update.priority);
    if (update.budget.has_value()) config.set_budget(*update.budget);
    // Lock order: campaign (above), then the queue.
    tx.exec_params(
        "UPDATE campaigns SET priority = $2, budget = $3, config = $4::jsonb, updated_at = "
        "to_timestamp($5) WHERE id = $1",
        campaign_id, config.priority(), config.budget(), common::MessageToJson(config), Epoch(now));
    if (config.priority() != current.priority) {
      tx.exec_params("UPDATE work_queue SET priority = $2 WHERE campaign_id = $1", campaign_id,
                     config.priority());
    }
    MaybeFinish(tx, campaign_id, now);
    QUARTET_ASSIGN_OR_RETURN(out, ReadCampaign(tx, campaign_id));
    return absl::OkStatus();
  }));
  return out;
}

// ---- Candidates --------------------------------------------------------------------------------

absl::Status PgStore::InsertCandidates(int64_t campaign_id,
                                       const std::vector<NewCandidate>& candidates,
                                       absl::Time now) {
  if (candidates.empty()) return absl::OkStatus();
  std::vector<int64_t> ranks, memory;
  std::vector<int> repeats;
  std::vector<std::string> joined, joined_levels, values_json;
  FamilyTally tally;
  for (const NewCandidate& nc : candidates) {
    for (const std::string& f : nc.families) {
      if (f.empty() || f.find(',') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("families: bad family name '", f, "'"));
      }
    }
    ranks.push_back(static_cast<int64_t>(nc.rank));
    memory.push_back(nc.est_memory_bytes);
    repeats.push_back(nc.repeat);
    joined.push_back(absl::StrJoin(nc.families, ","));
    joined_levels.push_back(absl::StrJoin(nc.levels, ","));
    values_json.push_back(JsonTextArray(nc.axis_values));
    tally.AddCandidate(nc.families, nc.levels, 1, /*with_triples=*/true);
  }
  const TallyArrays d(tally);
  const int64_t n = static_cast<int64_t>(candidates.size());
  absl::Status status = Run([&](dbtransaction& tx) -> absl::Status {
    // Checked and inserted first, the campaign row locked only then: the insert, the longest
    // step, does not hold up the campaign's lease transitions (the new rows are invisible to
    // them until the commit). Under the lock the checks are made again.
    QUARTET_ASSIGN_OR_RETURN(IssueTarget target, ReadIssueTarget(tx, campaign_id, n, false));
    for (const NewCandidate& nc : candidates) {
      QUARTET_RETURN_IF_ERROR(CheckAxisLevels(nc, target.level_counts));
    }
    tx.exec_params(
        "WITH ins AS (INSERT INTO candidates (campaign_id, combo_rank, repeat, families, "
        "created_at, est_memory_bytes, levels, axis_values) SELECT $1, r, p, "
        "string_to_array(f, ','), to_timestamp($5), m, string_to_array(l, ',')::int[], "
        "ARRAY(SELECT e.v FROM jsonb_array_elements_text(v::jsonb) WITH ORDINALITY AS e(v, i) "
        "ORDER BY e.i) "
        "FROM unnest($2::bigint[], $3::int[], $4::text[], $7::bigint[], $8::text[], $9::text[]) "
        "WITH ORDINALITY AS t(r, p, f, m, l, v, o) ORDER BY o RETURNING id) "
        "INSERT INTO work_queue (candidate_id, campaign_id, priority) "
        "SELECT id, $1, $6 FROM ins",
        campaign_id, NumberArray(ranks), NumberArray(repeats), TextArray(joined), Epoch(now),
        target.priority, NumberArray(memory), TextArray(joined_levels), TextArray(values_json));
    QUARTET_ASSIGN_OR_RETURN(IssueTarget locked, ReadIssueTarget(tx, campaign_id, n, true));
    if (locked.priority != target.priority) {  // changed meanwhile
      tx.exec_params("UPDATE work_queue SET priority = $2 WHERE campaign_id = $1", campaign_id,
                     locked.priority);
    }
    QUARTET_RETURN_IF_ERROR(AddIssuedCoverage(tx, campaign_id, tally));
    tx.exec_params(
        "UPDATE campaigns SET issued = issued + $2, pending = pending + $2, updated_at = "
        "to_timestamp($3) WHERE id = $1",
        campaign_id, n, Epoch(now));
    return absl::OkStatus();
  });
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(
        absl::StrCat("campaign ", campaign_id,
                     ": a combination (rank, repeat) of this batch was already issued"));
  }
  return status;
}

absl::StatusOr<std::optional<LeaseGrant>> PgStore::LeaseNext(const std::string& worker_id,
                                                             absl::Time now, absl::Duration lease) {
  LeaseCall call;
  call.worker_id = worker_id;
  call.now = now;
  call.lease = lease;
  const TransitionBody alone = [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
    QUARTET_RETURN_IF_ERROR(LeaseBatch(tx, cx, {&call}));
    return call.answer;
  };
  QUARTET_RETURN_IF_ERROR(RunTransition({}, /*leases=*/true, alone, &call));
  return std::move(call.grant);
}

absl::Status PgStore::LeaseBatch(dbtransaction& tx, TxContext& cx,
                                 const std::vector<LeaseCall*>& calls) {
  std::vector<std::string> worker_ids;
  for (const LeaseCall* call : calls) worker_ids.push_back(call->worker_id);
  const std::map<std::string, WorkerKind> kinds = ReadWorkerKinds(tx, worker_ids);
  // The campaigns are locked already (LockAll, in id order).
  const std::vector<int64_t> running = cx.locks->Leasable(tx);
  std::map<WorkerKind, std::vector<LeaseCall*>> by_kind;
  for (LeaseCall* call : calls) {
    call->grant.reset();
    auto kind = kinds.find(call->worker_id);
    if (kind == kinds.end()) {
      call->answer = absl::NotFoundError(absl::StrCat(
          "worker '", call->worker_id, "' is not registered; call RegisterWorker first"));
      continue;
    }
    call->answer = absl::OkStatus();
    cx.deltas->Seen(call->worker_id, call->now);
    if (!running.empty()) by_kind[kind->second].push_back(call);
  }
  for (const auto& [kind, holders] : by_kind) {
    std::vector<std::string> workers;
    std::vector<int64_t> tokens, spares;
    std::vector<double> deadlines, starts;
    for (const LeaseCall* call : holders) {
      workers.push_back(call->worker_id);
      tokens.push_back(NewLeaseToken(0));
      spares.push_back(NewLeaseToken(tokens.back()));
      deadlines.push_back(Epoch(call->now + call->lease));
      starts.push_back(Epoch(call->now));
    }
    const pqxx::result rows =
        ClaimAndLease(tx, kind, running, workers, tokens, spares, deadlines, starts);
    for (const auto& r : rows) {
      LeaseCall* call = holders.at(r[kCandidateColumnCount].as<size_t>());
      LeaseGrant grant;
      QUARTET_ASSIGN_OR_RETURN(grant.candidate, ParseCandidate(r));
      const int64_t campaign_id = grant.candidate.campaign_id;
      QUARTET_ASSIGN_OR_RETURN(CampaignLock * camp, cx.locks->Lock(tx, campaign_id));
      QUARTET_ASSIGN_OR_RETURN(std::shared_ptr<const ParsedConfig> config,
                               ConfigOf(campaign_id, camp->config_json));
      grant.config = config->config;
      cx.deltas->Move(campaign_id, grant.candidate.families, grant.candidate.levels,
                      CandidateState::kPending, CandidateState::kLeased, call->now);
      call->grant = std::move(grant);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LeaseRenewal> PgStore::RenewLease(int64_t candidate_id, int64_t token,
                                                 const std::string& worker_id, absl::Time now,
                                                 absl::Duration lease) {
  LeaseRenewal out;
  QUARTET_RETURN_IF_ERROR(RunTransition(
      {candidate_id}, /*leases=*/false, [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
        QUARTET_ASSIGN_OR_RETURN(LeaseRow row, CheckLease(tx, &cx, candidate_id, token, worker_id,
                                                          LeaseUse::kRenew, now));
        out.deadline = now + lease;
        out.cancel = row.cancel_requested || row.campaign->state == CampaignState::kCancelled;
        tx.exec_params("UPDATE candidates SET lease_deadline = to_timestamp($2) WHERE id = $1",
                       candidate_id, Epoch(out.deadline));
        cx.deltas->Seen(worker_id, now);
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<int64_t> PgStore::AppendMetrics(int64_t candidate_id, int64_t token,
                                               const std::string& worker_id,
                                               const std::vector<MetricRecord>& points) {
  int64_t added = 0;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    // A shared lock on the candidate only: batches of one lease may be stored concurrently with
    // heartbeats.
    QUARTET_ASSIGN_OR_RETURN(LeaseRow row, CheckLease(tx, nullptr, candidate_id, token, worker_id,
                                                      LeaseUse::kMetrics, absl::Now()));
    added = InsertMetrics(tx, candidate_id, row.attempt, points);
    return absl::OkStatus();
  }));
  return added;
}

absl::Status PgStore::CompleteCandidate(int64_t candidate_id, int64_t token,
                                        const std::string& worker_id,
                                        const quartet::v1::Result& result,
                                        const std::vector<MetricRecord>& final_metrics,
                                        absl::Time now) {
  CompleteCall call{candidate_id, token, &worker_id, &result, &final_metrics, now, {}};
  const TransitionBody alone = [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
    QUARTET_RETURN_IF_ERROR(CompleteBatch(tx, cx, {&call}));
    return call.answer;
  };
  return RunTransition({candidate_id}, /*leases=*/false, alone, nullptr, &call);
}

absl::Status PgStore::CompleteBatch(dbtransaction& tx, TxContext& cx,
                                    const std::vector<CompleteCall*>& calls) {
  std::vector<int64_t> ids;
  for (const CompleteCall* call : calls) ids.push_back(call->candidate_id);
  // Campaigns were locked first (LockAll); candidates in id order.
  const pqxx::result rows = tx.exec_prepared(kLockLeaseRows, NumberArray(ids));
  std::map<int64_t, pqxx::row> by_id;
  for (const auto& r : rows) by_id.emplace(r[0].as<int64_t>(), r);
  std::vector<LeaseRow> accepted;
  accepted.reserve(calls.size());  // Completion points into it
  std::vector<Completion> done;
  for (CompleteCall* call : calls) {
    auto it = by_id.find(call->candidate_id);
    if (it == by_id.end()) {
      call->answer =
          absl::NotFoundError(absl::StrCat("candidate ", call->candidate_id, " not found"));
      continue;
    }
    absl::StatusOr<LeaseRow> row = JudgeRow(tx, &cx, it->second, call->token, *call->worker_id,
                                            LeaseUse::kComplete, call->now);
    call->answer = row.status();
    if (!row.ok() || row->verdict == LeaseVerdict::kRepeat) continue;
    accepted.push_back(*std::move(row));
    done.push_back({call->candidate_id, &accepted.back(), call->result, call->final_metrics,
                    CandidateState::kSucceeded, call->token, call->now});
  }
  StoreCompletions(tx, cx, done);
  for (const Completion& c : done) cx.deltas->CheckDone(c.row->campaign_id, c.now);
  return absl::OkStatus();
}

absl::Status PgStore::CompleteRung(int64_t candidate_id, int64_t token,
                                   const std::string& worker_id, const quartet::v1::Result& result,
                                   const std::vector<MetricRecord>& final_metrics,
                                   const RungCompletion& plan, absl::Time now) {
  return RunTransition(
      {candidate_id}, /*leases=*/false, [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
        QUARTET_ASSIGN_OR_RETURN(LeaseRow row, CheckLease(tx, &cx, candidate_id, token, worker_id,
                                                          LeaseUse::kComplete, now));
        if (row.verdict == LeaseVerdict::kRepeat) return absl::OkStatus();
        StoreCompletions(
            tx, cx,
            {{candidate_id, &row, &result, &final_metrics,
              plan.last_rung ? CandidateState::kSucceeded : CandidateState::kStoppedEarly, token,
              now}});
        tx.exec_params(
            "UPDATE candidates SET rung_results = rung_results || jsonb_build_array($2::jsonb) "
            "WHERE id = $1",
            candidate_id, common::MessageToJson(NewRungResult(plan, result, now)));
        for (const Promotion& p : plan.promotions) {
          QUARTET_RETURN_IF_ERROR(Promote(tx, cx, row, p, now));
        }
        cx.deltas->CheckDone(row.campaign_id, now);
        return absl::OkStatus();
      });
}

absl::StatusOr<CandidateState> PgStore::FailCandidate(int64_t candidate_id, int64_t token,
                                                      const std::string& worker_id,
                                                      quartet::v1::ErrorClass error_class,
                                                      const std::string& message, bool retryable,
                                                      absl::Time now) {
  CandidateState to = CandidateState::kFailed;
  QUARTET_RETURN_IF_ERROR(RunTransition(
      {candidate_id}, /*leases=*/false, [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
        QUARTET_ASSIGN_OR_RETURN(LeaseRow row, CheckLease(tx, &cx, candidate_id, token, worker_id,
                                                          LeaseUse::kFail, now));
        if (row.verdict == LeaseVerdict::kRepeat) {
          to = row.state;
          return absl::OkStatus();
        }
        const bool preempted = error_class == quartet::v1::ERROR_CLASS_PREEMPTED;
        const int preemptions = row.preemptions + (preempted ? 1 : 0);
        to = AfterLeaseEnds(row.campaign->state, retryable, preempted, row.attempt, preemptions,
                            row.campaign->max_attempts, row.campaign->max_preemptions);
        EndLease(tx, cx, candidate_id, row.campaign_id, row.families, row.levels, to, error_class,
                 message, preemptions, row.campaign->priority, now);
        return absl::OkStatus();
      }));
  return to;
}

absl::StatusOr<std::vector<ExpiredLease>> PgStore::ExpireLeases(absl::Time now) {
  std::vector<ExpiredLease> out;
  QUARTET_RETURN_IF_ERROR(
      RunAlone({}, /*leases=*/false, [&](dbtransaction& tx, TxContext& cx) -> absl::Status {
        out.clear();
        // Read without locks, then lock campaign before candidate (in campaign order), rechecking
        // that each lease is still live and overdue.
        pqxx::result due = tx.exec_params(
            absl::StrCat("SELECT id, campaign_id FROM candidates WHERE state = ", kLeased,
                         " AND lease_deadline < to_timestamp($1) ORDER BY campaign_id, id LIMIT ",
                         kExpireBatch),
            Epoch(now));
        for (const auto& d : due) {
          const int64_t candidate_id = d[0].as<int64_t>();
          ExpiredLease e;
          e.campaign_id = d[1].as<int64_t>();
          QUARTET_ASSIGN_OR_RETURN(CampaignLock * camp, cx.locks->Lock(tx, e.campaign_id));
          pqxx::result r = tx.exec_params(
              absl::StrCat("SELECT worker_id, attempt, preemptions, array_to_json(families)::text, "
                           "array_to_json(levels)::text FROM candidates WHERE id = $1 AND state = ",
                           kLeased, " AND lease_deadline < to_timestamp($2) FOR UPDATE"),
              candidate_id, Epoch(now));
          if (r.empty()) continue;  // renewed or reported meanwhile
          e.candidate_id = candidate_id;
          e.worker_id = r[0][0].as<std::string>();
          e.attempt = r[0][1].as<int>();
          const int preemptions = r[0][2].as<int>();
          e.new_state =
              AfterLeaseEnds(camp->state, /*retryable=*/true, /*preempted=*/false, e.attempt,
                             preemptions, camp->max_attempts, camp->max_preemptions);
          EndLease(tx, cx, candidate_id, e.campaign_id, ParseTextArrayJson(r[0][3]),
                   ParseIntArrayJson(r[0][4]), e.new_state, quartet::v1::ERROR_CLASS_LOST,
                   absl::StrCat("lease expired: the worker stopped heartbeating (attempt ",
                                e.attempt, ")"),
                   preemptions, camp->priority, now);
          out.push_back(std::move(e));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<CandidateRecord> PgStore::GetCandidate(int64_t candidate_id) {
  CandidateRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kCandidateColumns, " FROM candidates WHERE id = $1"), candidate_id);
    if (r.empty()) {
      return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
    }
    QUARTET_ASSIGN_OR_RETURN(out, ParseCandidate(r[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<CandidateRecord>> PgStore::ListCandidates(const CandidateQuery& query) {
  std::vector<int> states;
  for (CandidateState s : query.states) states.push_back(static_cast<int>(s));
  std::vector<CandidateRecord> out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out.clear();
    if (query.campaign_id != 0) {
      pqxx::result c = tx.exec_params("SELECT 1 FROM campaigns WHERE id = $1", query.campaign_id);
      if (c.empty()) {
        return absl::NotFoundError(absl::StrCat("campaign ", query.campaign_id, " not found"));
      }
    }
    // Without results, the result column is read as NULL (same column count and order).
    const std::string columns =
        query.without_results ? absl::StrReplaceAll(kCandidateColumns, {{"result::text", "NULL"}})
                              : std::string(kCandidateColumns);
    pqxx::result rows = tx.exec_params(
        absl::StrCat("SELECT ", columns,
                     " FROM candidates WHERE ($1 = 0 OR campaign_id = $1) AND "
                     "(cardinality($2::int[]) = 0 OR state = ANY($2::int[])) AND id > $4 "
                     "ORDER BY ",
                     query.by_accuracy ? "test_accuracy DESC, id" : "id", " LIMIT $3"),
        query.campaign_id, NumberArray(states), query.limit > 0 ? query.limit : INT64_MAX,
        query.after_id);
    for (const auto& row : rows) {
      QUARTET_ASSIGN_OR_RETURN(CandidateRecord c, ParseCandidate(row));
      out.push_back(std::move(c));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<MetricRecord>> PgStore::GetMetrics(int64_t candidate_id) {
  std::vector<MetricRecord> out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out.clear();
    pqxx::result c = tx.exec_params("SELECT 1 FROM candidates WHERE id = $1", candidate_id);
    if (c.empty()) {
      return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
    }
    pqxx::result rows = tx.exec_params(
        "SELECT attempt, step, name, epoch, value, "
        "(EXTRACT(EPOCH FROM recorded_at) * 1000)::bigint FROM metrics WHERE candidate_id = $1 "
        "ORDER BY attempt, step, name",
        candidate_id);
    for (const auto& r : rows) {
      MetricRecord m;
      m.candidate_id = candidate_id;
      m.attempt = r[0].as<int>();
      m.step = r[1].as<int64_t>();
      m.name = r[2].as<std::string>();
      m.epoch = r[3].as<int>();
      m.value = r[4].as<double>();
      m.time_unix_ms = r[5].as<int64_t>();
      out.push_back(std::move(m));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<CoverageCounters> PgStore::GetCoverage(int64_t campaign_id) {
  CoverageCounters out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out = {};
    pqxx::result c = tx.exec_params("SELECT 1 FROM campaigns WHERE id = $1", campaign_id);
    if (c.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
    auto counts = [](const pqxx::row& r, int first) {
      StateCounts s;
      s.pending = r[first].as<int64_t>();
      s.leased = r[first + 1].as<int64_t>();
      s.succeeded = r[first + 2].as<int64_t>();
      s.failed = r[first + 3].as<int64_t>();
      s.cancelled = r[first + 4].as<int64_t>();
      s.stopped_early = r[first + 5].as<int64_t>();
      return s;
    };
    for (const auto& r : tx.exec_params(
             "SELECT family, pending, leased, succeeded, failed, cancelled, stopped_early FROM "
             "family_coverage "
             "WHERE campaign_id = $1 ORDER BY position",
             campaign_id)) {
      out.families.push_back({r[0].as<std::string>(), counts(r, 1)});
    }
    for (const auto& r :
         tx.exec_params("SELECT family_a, family_b, pending, leased, succeeded, failed, cancelled, "
                        "stopped_early FROM pair_coverage WHERE campaign_id = $1 ORDER BY position",
                        campaign_id)) {
      out.pairs.push_back({r[0].as<std::string>(), r[1].as<std::string>(), counts(r, 2)});
    }
    for (const auto& r :
         tx.exec_params("SELECT family_a, family_b, family_c, issued FROM triple_coverage WHERE "
                        "campaign_id = $1 AND issued > 0",
                        campaign_id)) {
      out.triples.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                             r[3].as<int64_t>()});
    }
    // By axis, level, then the level row (family '') before the families in pool order.
    for (const auto& r : tx.exec_params(
             "SELECT x.axis, x.level, x.family, x.pending, x.leased, x.succeeded, x.failed, "
             "x.cancelled, x.stopped_early FROM axis_coverage x LEFT JOIN family_coverage f ON "
             "f.campaign_id = "
             "x.campaign_id AND f.family = x.family WHERE x.campaign_id = $1 "
             "ORDER BY x.axis, x.level, x.family <> '', f.position",
             campaign_id)) {
      out.levels.push_back({r[0].as<int>(), r[1].as<int>(), r[2].as<std::string>(), counts(r, 3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<ArtifactRecord>> PgStore::ListArtifacts(int64_t campaign_id) {
  std::vector<ArtifactRecord> out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out.clear();
    pqxx::result c = tx.exec_params("SELECT 1 FROM campaigns WHERE id = $1", campaign_id);
    if (c.empty()) return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
    for (const auto& r :
         tx.exec_params("SELECT id, candidate_id, kind, uri, size_bytes, sha256, epoch, attempt, "
                        "EXTRACT(EPOCH FROM created_at) FROM artifacts WHERE campaign_id = $1 AND "
                        "deleted_at IS NULL ORDER BY id",
                        campaign_id)) {
      ArtifactRecord a;
      a.id = r[0].as<int64_t>();
      a.candidate_id = r[1].as<int64_t>();
      a.campaign_id = campaign_id;
      a.kind = static_cast<ArtifactKind>(r[2].as<int>());
      a.artifact.set_uri(r[3].as<std::string>());
      a.artifact.set_size_bytes(r[4].as<int64_t>());
      a.artifact.set_sha256(r[5].as<std::string>());
      a.artifact.set_epoch(r[6].as<int>());
      a.artifact.set_attempt(r[7].as<int>());
      a.created_at = TimeOf(r[8]);
      out.push_back(std::move(a));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PgStore::MarkArtifactsDeleted(const std::vector<int64_t>& artifact_ids,
                                           absl::Time now) {
  if (artifact_ids.empty()) return absl::OkStatus();
  return Run([&](dbtransaction& tx) -> absl::Status {
    // The lock order of every transaction: campaign rows (in id order), then candidates.
    tx.exec_params(
        "SELECT id FROM campaigns WHERE id IN (SELECT campaign_id FROM artifacts WHERE id = "
        "ANY($1::bigint[])) ORDER BY id FOR NO KEY UPDATE",
        NumberArray(artifact_ids));
    // Candidates whose current checkpoint or export is deleted lose it.
    tx.exec_params(
        "WITH gone AS (UPDATE artifacts SET deleted_at = to_timestamp($2) WHERE id = "
        "ANY($1::bigint[]) AND deleted_at IS NULL RETURNING candidate_id, uri) "
        "UPDATE candidates k SET "
        "checkpoint = CASE WHEN k.checkpoint->>'uri' IN (SELECT uri FROM gone g WHERE "
        "g.candidate_id = k.id) THEN NULL ELSE k.checkpoint END, "
        "exported_model = CASE WHEN k.exported_model->>'uri' IN (SELECT uri FROM gone g WHERE "
        "g.candidate_id = k.id) THEN NULL ELSE k.exported_model END "
        "WHERE k.id IN (SELECT candidate_id FROM gone)",
        NumberArray(artifact_ids), Epoch(now));
    return absl::OkStatus();
  });
}

absl::Status PgStore::Ping() {
  return Run([](dbtransaction& tx) -> absl::Status {
    tx.exec("SELECT 1");
    return absl::OkStatus();
  });
}

absl::StatusOr<WorkerRecord> PgStore::RegisterWorker(const WorkerRecord& worker, absl::Time now) {
  WorkerRecord out = worker;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out = worker;
    if (out.id.empty()) {
      pqxx::result r = tx.exec("SELECT nextval('worker_ids')");
      out.id = absl::StrCat("worker-", r[0][0].as<int64_t>());
    }
    pqxx::result r = tx.exec_params(
        "INSERT INTO workers (id, host, device, gpu_name, gpu_memory_bytes, families, version, "
        "registered_at, last_seen_at, secret_hash) VALUES ($1, $2, $3, $4, $5, $6::text[], $7, "
        "to_timestamp($8), to_timestamp($8), $9) ON CONFLICT (id) DO UPDATE SET host = $2, "
        "device = $3, gpu_name = $4, gpu_memory_bytes = $5, families = $6::text[], version = $7, "
        "last_seen_at = to_timestamp($8), secret_hash = $9 "
        "RETURNING EXTRACT(EPOCH FROM registered_at), draining",
        out.id, out.host, out.device, out.gpu_name, out.gpu_memory_bytes, TextArray(out.families),
        out.version, Epoch(now), out.secret_hash);
    out.registered_at = TimeOf(r[0][0]);
    out.draining = r[0][1].as<bool>();
    out.last_seen_at = now;
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<WorkerRecord> PgStore::GetWorker(const std::string& worker_id) {
  WorkerRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kWorkerColumns, " FROM workers WHERE id = $1"), worker_id);
    if (r.empty()) return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' not found"));
    out = ParseWorker(r[0]);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<WorkerActivity>> PgStore::ListWorkers() {
  std::vector<WorkerActivity> out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    out.clear();
    std::map<std::string, size_t> index;
    for (const auto& r :
         tx.exec(absl::StrCat("SELECT ", kWorkerColumns, " FROM workers ORDER BY id"))) {
      WorkerActivity a;
      a.worker = ParseWorker(r);
      index[a.worker.id] = out.size();
      out.push_back(std::move(a));
    }
    // The epoch column follows the candidate's columns (the metrics primary key serves it).
    for (const auto& r : tx.exec(absl::StrCat(
             "SELECT ", kCandidateColumns,
             ", (SELECT COALESCE(max(m.epoch), 0) FROM metrics m WHERE m.candidate_id = "
             "candidates.id AND m.attempt = candidates.attempt) FROM candidates WHERE state = ",
             kLeased, " ORDER BY id"))) {
      QUARTET_ASSIGN_OR_RETURN(CandidateRecord c, ParseCandidate(r));
      const int epoch = r[kCandidateColumnCount].as<int>();
      auto it = index.find(c.worker_id);
      if (it != index.end()) out[it->second].leased.push_back({std::move(c), epoch});
    }
    for (const auto& r :
         tx.exec(absl::StrCat("SELECT worker_id, count(*) FILTER (WHERE state = ", kSucceeded,
                              "), count(*) FILTER (WHERE state = ", kCandidateFailed,
                              ") FROM candidates WHERE state IN (", kSucceeded, ", ",
                              kCandidateFailed, ") AND worker_id <> '' GROUP BY worker_id"))) {
      auto it = index.find(r[0].as<std::string>());
      if (it == index.end()) continue;
      out[it->second].succeeded = r[1].as<int64_t>();
      out[it->second].failed = r[2].as<int64_t>();
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<WorkerRecord> PgStore::SetWorkerDraining(const std::string& worker_id,
                                                        bool draining) {
  WorkerRecord out;
  QUARTET_RETURN_IF_ERROR(Run([&](dbtransaction& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        absl::StrCat("UPDATE workers SET draining = $2 WHERE id = $1 RETURNING ", kWorkerColumns),
        worker_id, draining);
    if (r.empty()) return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' not found"));
    out = ParseWorker(r[0]);
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace quartet::coordinator
