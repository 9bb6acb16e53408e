// What the coordinator stores: campaigns, candidates, metric points, workers, coverage counters.
// Plain structs shared by the Store interface, its implementations and the core.
#ifndef QUARTET_COORDINATOR_STORAGE_RECORDS_H_
#define QUARTET_COORDINATOR_STORAGE_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "quartet/v1/campaign.pb.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::coordinator {

// Numeric values equal the proto enums' (quartet.v1.CampaignState / CandidateState), which is also
// what the database stores.
enum class CampaignState { kRunning = 1, kPaused = 2, kCancelled = 3, kDone = 4 };
enum class CandidateState {
  kPending = 1,
  kLeased = 2,
  kSucceeded = 3,
  kFailed = 4,
  kCancelled = 5
};

const char* CampaignStateName(CampaignState s);    // "RUNNING", ...
const char* CandidateStateName(CandidateState s);  // "PENDING", ...
inline bool IsFinal(CampaignState s) {
  return s == CampaignState::kCancelled || s == CampaignState::kDone;
}
inline bool IsFinal(CandidateState s) {
  return s == CandidateState::kSucceeded || s == CandidateState::kFailed ||
         s == CandidateState::kCancelled;
}

struct StateCounts {
  int64_t pending = 0, leased = 0, succeeded = 0, failed = 0, cancelled = 0;

  int64_t total() const { return pending + leased + succeeded + failed + cancelled; }
  int64_t final_count() const { return succeeded + failed + cancelled; }
  int64_t& at(CandidateState s);
  int64_t at(CandidateState s) const;
  bool operator==(const StateCounts& o) const {
    return pending == o.pending && leased == o.leased && succeeded == o.succeeded &&
           failed == o.failed && cancelled == o.cancelled;
  }
};

struct CampaignRecord {
  // Assigned by the store.
  int64_t id = 0;
  // Complete config: defaults filled, pool resolved to model names in catalog order, recipe with
  // every field set. The fields below repeat what the store indexes or the hot paths need.
  quartet::v1::CampaignConfig config;
  std::string name;
  int k = 4;
  int64_t budget = 0;
  int max_attempts = 3;
  int priority = 0;
  CampaignState state = CampaignState::kRunning;
  // Candidates created so far (<= budget) and their states.
  int64_t issued = 0;
  StateCounts counts;
  // Best succeeded candidate (0 / -1 when none).
  double best_accuracy = 0;
  int64_t best_candidate_id = 0;
  // Sum of wall seconds of succeeded candidates.
  double succeeded_seconds = 0;
  absl::Time created_at = absl::InfinitePast();
  absl::Time updated_at = absl::InfinitePast();
  // InfinitePast while not final.
  absl::Time finished_at = absl::InfinitePast();
};

// A candidate to create.
struct NewCandidate {
  uint64_t rank = 0;
  int repeat = 0;
  // Model names of the combination, in pool (catalog) order.
  std::vector<std::string> families;
};

struct CandidateRecord {
  int64_t id = 0;
  int64_t campaign_id = 0;
  uint64_t rank = 0;
  int repeat = 0;
  std::vector<std::string> families;
  CandidateState state = CandidateState::kPending;
  // Leases taken so far; the current (or last) lease's attempt number.
  int attempt = 0;
  // Current (or last) lease: fencing token, holder, expiry.
  int64_t lease_token = 0;
  std::string worker_id;
  absl::Time lease_deadline = absl::InfinitePast();
  // Set by CancelCampaign for a leased candidate: the next heartbeat tells the worker to stop.
  bool cancel_requested = false;
  // Present when SUCCEEDED.
  std::optional<quartet::v1::Result> result;
  double test_accuracy = 0;
  // Set when FAILED (or the last failed attempt's when requeued).
  quartet::v1::ErrorClass error_class = quartet::v1::ERROR_CLASS_UNSPECIFIED;
  std::string error_message;
  absl::Time created_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
};

// A lease just granted.
struct LeaseGrant {
  CandidateRecord candidate;
  // The campaign's stored config (recipe, data) to build the spec from.
  quartet::v1::CampaignConfig config;
};

struct LeaseRenewal {
  absl::Time deadline;
  bool cancel = false;
};

// A lease the expiry sweep ended.
struct ExpiredLease {
  int64_t candidate_id = 0;
  int64_t campaign_id = 0;
  std::string worker_id;
  int attempt = 0;
  // PENDING (requeued), FAILED (attempts used up) or CANCELLED (campaign cancelled).
  CandidateState new_state = CandidateState::kPending;
};

struct MetricRecord {
  int64_t candidate_id = 0;
  int attempt = 0;
  int64_t step = 0;
  int epoch = 0;
  std::string name;
  double value = 0;
  int64_t time_unix_ms = 0;
};

struct WorkerRecord {
  std::string id;
  std::string host;
  std::string device;
  std::string gpu_name;
  int64_t gpu_memory_bytes = 0;
  std::vector<std::string> families;
  std::string version;
  absl::Time registered_at = absl::InfinitePast();
  absl::Time last_seen_at = absl::InfinitePast();
};

// Coverage counters of one campaign, by candidate state.
struct FamilyCounter {
  std::string family;
  StateCounts counts;
};
struct PairCounter {
  std::string family_a, family_b;  // family_a before family_b in pool order
  StateCounts counts;
};
struct TripleCounter {
  std::string family_a, family_b, family_c;
  int64_t issued = 0;
};
struct CoverageCounters {
  // Every pool family, in pool order.
  std::vector<FamilyCounter> families;
  // Every pair of pool families, in pool order.
  std::vector<PairCounter> pairs;
  // Triples seen at least once.
  std::vector<TripleCounter> triples;
};

struct CandidateQuery {
  int64_t campaign_id = 0;
  // Empty means every state.
  std::vector<CandidateState> states;
  // Best test accuracy first (else id order).
  bool by_accuracy = false;
  // 0 means no limit.
  int64_t limit = 0;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_RECORDS_H_
