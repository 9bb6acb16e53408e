#include "coordinator/core/coordinator_core.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/artifacts.h"
#include "common/log_escape.h"
#include "common/status_macros.h"
#include "coordinator/core/axes.h"
#include "coordinator/core/memory_estimate.h"
#include "coordinator/core/worker_identity.h"
#include "coordinator/space/combinatorics.h"
#include "coordinator/space/coverage_stats.h"
#include "spdlog/spdlog.h"

namespace quartet::coordinator {
namespace {

using quartet::v1::CandidateSummary;

// Client strings in log lines: escaped (no forged lines) and cut to these lengths.
constexpr size_t kLoggedIdBytes = 200;
// Candidates are matched to device memory at the smallest micro-batch the worker's out-of-memory
// fallback reaches (see memory_estimate.h).
constexpr int kLeaseMicroBatch = 1;
// Attempts at drawing an unused worker id (8 random hex characters each) before giving up.
constexpr int kWorkerIdTries = 8;
constexpr size_t kLoggedMessageBytes = 512;
constexpr absl::Duration kMinSweepInterval = absl::Milliseconds(100);
constexpr absl::Duration kMaxSweepInterval = absl::Seconds(1);

int64_t Millis(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixMillis(t); }

void FillCounts(const StateCounts& s, quartet::v1::StateCounts* out) {
  out->set_pending(s.pending);
  out->set_leased(s.leased);
  out->set_succeeded(s.succeeded);
  out->set_failed(s.failed);
  out->set_cancelled(s.cancelled);
  out->set_stopped_early(s.stopped_early);
}

// A seed per (campaign seed, rank, repeat) when the recipe does not fix one (splitmix64 mix).
uint64_t DeriveSeed(uint64_t campaign_seed, uint64_t rank, int repeat) {
  uint64_t z = campaign_seed ^ (rank * 0x9E3779B97F4A7C15ULL) ^
               (static_cast<uint64_t>(repeat) * 0xC2B2AE3D27D4EB4FULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Student's t quantile t(0.975, dof): exact table to 30 degrees of freedom, then the
// Cornish-Fisher expansion around the normal quantile (error below 1e-4 past 30).
double StudentT975(int64_t dof) {
  static constexpr double kTable[] = {0,     12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365,
                                      2.306, 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                                      2.120, 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069,
                                      2.064, 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  constexpr int64_t kTabled = sizeof(kTable) / sizeof(kTable[0]) - 1;
  if (dof < 1) return 0;
  if (dof <= kTabled) return kTable[dof];
  constexpr double z = 1.959963984540054;
  const double v = static_cast<double>(dof);
  return z + (z * z * z + z) / (4 * v) +
         (5 * std::pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * v * v);
}

struct YieldAccumulator {
  int64_t succeeded = 0, failed = 0;
  std::vector<double> accuracies;
  std::map<std::string, int64_t> failures_by_class;

  void Add(const CandidateRecord& c) {
    if (c.state == CandidateState::kSucceeded) {
      succeeded++;
      accuracies.push_back(c.test_accuracy);
    } else {
      failed++;
      failures_by_class[quartet::v1::ErrorClass_Name(c.error_class)]++;
    }
  }

  void Fill(std::vector<std::string> names, quartet::v1::YieldEntry* e) const {
    for (auto& n : names) e->add_families(std::move(n));
    e->set_succeeded(succeeded);
    e->set_failed(failed);
    e->set_success_rate(succeeded + failed ? static_cast<double>(succeeded) / (succeeded + failed)
                                           : 0);
    if (!accuracies.empty()) {
      double sum = 0;
      for (double a : accuracies) sum += a;
      const double n = static_cast<double>(accuracies.size());
      const double mean = sum / n;
      e->set_mean_accuracy(mean);
      e->set_median_accuracy(Median(accuracies));
      e->set_max_accuracy(*std::max_element(accuracies.begin(), accuracies.end()));
      if (accuracies.size() >= 2) {
        double squares = 0;
        for (double a : accuracies) squares += (a - mean) * (a - mean);
        const double sd = std::sqrt(squares / (n - 1));
        e->set_std_accuracy(sd);
        e->set_ci95_accuracy(StudentT975(static_cast<int64_t>(accuracies.size()) - 1) * sd /
                             std::sqrt(n));
      }
    }
    for (const auto& [cls, n] : failures_by_class) (*e->mutable_failures_by_class())[cls] = n;
  }
};

// The candidate at point `rank`, repeat `repeat`: its families, its level and value on every axis
// (a CONTINUOUS value drawn inside its stratum), and its memory estimate under the recipe those
// values give.
NewCandidate NewCandidateAt(const quartet::v1::CampaignConfig& config,
                            const space::ProductSpace& space, uint64_t rank, int repeat) {
  NewCandidate out;
  out.rank = rank;
  out.repeat = repeat;
  uint64_t combination;
  out.levels.resize(space.num_axes());
  space.Unrank(rank, &combination, out.levels.data());
  if (space.has_families()) {
    for (int idx : space.families().Unrank(combination)) out.families.push_back(config.pool(idx));
  }
  quartet::v1::CandidateSpec spec;
  *spec.mutable_recipe() = config.recipe();
  for (int j = 0; j < space.num_axes(); ++j) {
    out.axis_values.push_back(
        AxisValueText(config.axes(j), j, out.levels[j], config.seed(), rank, repeat));
    // Resolved axes apply cleanly; the value only informs the memory estimate here.
    ApplyAxisValue(config.axes(j).path(), out.axis_values.back(), &spec).IgnoreError();
  }
  out.est_memory_bytes =
      EstimateTrainingBytes(out.families, spec.recipe().input_size(), kLeaseMicroBatch);
  return out;
}

// Points in a stored campaign's space (family combinations times axis levels).
uint64_t SpaceSize(const quartet::v1::CampaignConfig& config) {
  const int n = config.pool_size(), k = config.k(), req = config.required_size();
  uint64_t size = config.without_families() ? 1 : space::Binomial(n - req, k - req);
  for (int levels : AxisLevelCounts(config)) size *= static_cast<uint64_t>(levels);
  return size;
}

// The candidate's value on every axis of `config`.
void FillAxisLevels(const quartet::v1::CampaignConfig& config, const CandidateRecord& c,
                    google::protobuf::RepeatedPtrField<quartet::v1::AxisLevel>* out) {
  for (size_t j = 0; j < c.levels.size() && static_cast<int>(j) < config.axes_size(); ++j) {
    quartet::v1::AxisLevel* a = out->Add();
    a->set_path(config.axes(j).path());
    a->set_level(c.levels[j]);
    if (j < c.axis_values.size()) a->set_value(c.axis_values[j]);
  }
}

// Per-axis coverage from the stored level counters (ordered by axis, level, level row first).
void FillAxisCoverage(const quartet::v1::CampaignConfig& config,
                      const std::vector<LevelCounter>& levels, quartet::v1::CoverageReport* out) {
  const std::vector<int> counts = AxisLevelCounts(config);
  for (int j = 0; j < config.axes_size(); ++j) {
    quartet::v1::AxisCoverage* axis = out->add_axes();
    axis->set_path(config.axes(j).path());
    axis->set_continuous(config.axes(j).has_range());
    for (int l = 0; l < counts[j]; ++l) {
      quartet::v1::LevelCoverage* level = axis->add_levels();
      level->set_level(l);
      level->set_label(LevelLabel(config.axes(j), l));
    }
    axis->set_family_levels_total(int64_t{counts[j]} * config.pool_size());
  }
  for (const LevelCounter& c : levels) {
    if (c.axis >= out->axes_size() || c.level >= out->axes(c.axis).levels_size()) continue;
    quartet::v1::AxisCoverage* axis = out->mutable_axes(c.axis);
    quartet::v1::LevelCoverage* level = axis->mutable_levels(c.level);
    if (c.family.empty()) {
      FillCounts(c.counts, level->mutable_counts());
      level->set_total(c.counts.total());
      continue;
    }
    quartet::v1::FamilyCoverage* f = level->add_families();
    f->set_family(c.family);
    FillCounts(c.counts, f->mutable_counts());
    f->set_total(c.counts.total());
    if (c.counts.total() > 0) axis->set_family_levels_seen(axis->family_levels_seen() + 1);
  }
  for (quartet::v1::AxisCoverage& axis : *out->mutable_axes()) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (const auto& level : axis.levels()) {
      lo = std::min(lo, level.total());
      hi = std::max(hi, level.total());
    }
    axis.set_max_level_deviation(axis.levels_size() > 0 ? hi - lo : 0);
  }
}

// Per-axis yield (every level, every (family, level) cell with a final candidate) and the best
// cells and levels with at least `min_samples` successes.
void FillAxisYield(const quartet::v1::CampaignConfig& config,
                   const std::vector<CandidateRecord>& finals, int min_samples, int top,
                   quartet::v1::YieldReport* out) {
  const std::vector<int> counts = AxisLevelCounts(config);
  std::map<std::string, int> position;
  for (int i = 0; i < config.pool_size(); ++i) position[config.pool(i)] = i;
  for (int j = 0; j < config.axes_size(); ++j) {
    std::vector<YieldAccumulator> levels(counts[j]);
    std::map<std::pair<int, int>, YieldAccumulator> cells;  // (pool position, level)
    for (const CandidateRecord& c : finals) {
      if (static_cast<int>(c.levels.size()) <= j || c.levels[j] >= counts[j]) continue;
      levels[c.levels[j]].Add(c);
      for (const std::string& f : c.families) cells[{position[f], c.levels[j]}].Add(c);
    }
    quartet::v1::AxisYield* axis = out->add_axes();
    axis->set_path(config.axes(j).path());
    for (int l = 0; l < counts[j]; ++l) {
      quartet::v1::YieldEntry* e = axis->add_levels();
      levels[l].Fill({}, e);
      e->set_axis(config.axes(j).path());
      e->set_level(LevelLabel(config.axes(j), l));
    }
    for (const auto& [key, acc] : cells) {
      quartet::v1::YieldEntry* e = axis->add_family_levels();
      acc.Fill({config.pool(key.first)}, e);
      e->set_axis(config.axes(j).path());
      e->set_level(LevelLabel(config.axes(j), key.second));
    }
  }
  std::vector<const quartet::v1::YieldEntry*> best;
  for (const auto& axis : out->axes()) {
    for (const auto* list : {&axis.levels(), &axis.family_levels()}) {
      for (const auto& e : *list) {
        if (e.succeeded() >= min_samples) best.push_back(&e);
      }
    }
  }
  std::stable_sort(best.begin(), best.end(),
                   [](auto* a, auto* b) { return a->mean_accuracy() > b->mean_accuracy(); });
  for (int i = 0; i < static_cast<int>(best.size()) && i < top; ++i) {
    *out->add_best_cells() = *best[i];
  }
}

CandidateSummary Summarize(const CandidateRecord& c, const quartet::v1::CampaignConfig& config) {
  CandidateSummary s;
  s.set_candidate_id(c.id);
  s.set_campaign_id(c.campaign_id);
  for (const auto& f : c.families) s.mutable_combination()->add_families(f);
  s.mutable_combination()->set_rank(c.rank);
  s.set_repeat(c.repeat);
  s.set_state(static_cast<quartet::v1::CandidateState>(c.state));
  s.set_attempts(c.attempt);
  if (c.result) {
    *s.mutable_result() = *c.result;
  } else if (c.state == CandidateState::kSucceeded) {
    // Listed without results: the accuracy column stands in for the document.
    s.mutable_result()->set_test_accuracy(c.test_accuracy);
  }
  s.set_error_class(c.error_class);
  s.set_error_message(c.error_message);
  s.set_worker_id(c.worker_id);
  s.set_created_unix_ms(Millis(c.created_at));
  s.set_finished_unix_ms(Millis(c.finished_at));
  s.set_started_unix_ms(Millis(c.started_at));
  FillAxisLevels(config, c, s.mutable_axis_levels());
  s.set_rung(c.rung);
  for (const auto& r : c.rungs) *s.add_rungs() = r;
  if (c.checkpoint) *s.mutable_checkpoint() = *c.checkpoint;
  if (c.exported_model) *s.mutable_exported_model() = *c.exported_model;
  return s;
}

}  // namespace

CoordinatorCore::CoordinatorCore(const Options& options, Store* store, common::Clock* clock)
    : options_(options), store_(store), clock_(clock) {}

CoordinatorCore::~CoordinatorCore() { Stop(); }

absl::StatusOr<std::unique_ptr<CoordinatorCore>> CoordinatorCore::Create(const Options& options,
                                                                         Store* store,
                                                                         common::Clock* clock) {
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease: must be positive");
  }
  if (options.issue_ahead < 1) return absl::InvalidArgumentError("issue_ahead: must be >= 1");
  Options o = options;
  if (o.heartbeat_interval <= absl::ZeroDuration()) o.heartbeat_interval = o.lease / 4;
  if (o.sweep_interval <= absl::ZeroDuration()) {
    o.sweep_interval = std::clamp(o.lease / 4, kMinSweepInterval, kMaxSweepInterval);
  }
  if (o.grace <= absl::ZeroDuration()) o.grace = o.lease;
  std::unique_ptr<CoordinatorCore> core(new CoordinatorCore(o, store, clock));
  // Paused campaigns keep their sampler too, so a resume carries on where they stopped.
  QUARTET_ASSIGN_OR_RETURN(
      auto running, store->ListCampaigns({CampaignState::kRunning, CampaignState::kPaused}, 0));
  for (const CampaignRecord& record : running) {
    QUARTET_ASSIGN_OR_RETURN(auto runtime, core->Rebuild(record));
    {
      absl::MutexLock lock(&core->mu_);
      core->runtimes_[record.id] = std::move(runtime);
    }
    spdlog::info("campaign {} '{}' restored ({}): {} of {} issued, sampler {} restored", record.id,
                 record.name, CampaignStateName(record.state), record.issued, record.budget,
                 space::SamplerKindName(FromProto(record.config.sampler())));
  }
  return core;
}

absl::StatusOr<std::shared_ptr<CoordinatorCore::Runtime>> CoordinatorCore::Rebuild(
    const CampaignRecord& record) {
  auto runtime = std::make_shared<Runtime>();
  QUARTET_ASSIGN_OR_RETURN(runtime->campaign, ResolveCampaign(record.config));
  QUARTET_ASSIGN_OR_RETURN(space::ProductSpace space, SpaceOf(runtime->campaign));
  runtime->space = std::make_unique<space::ProductSpace>(std::move(space));
  QUARTET_ASSIGN_OR_RETURN(
      auto sampler, space::CreateSampler(runtime->campaign.sampler, *runtime->space,
                                         record.config.seed(), runtime->campaign.sampler_options));
  CandidateQuery query;
  query.campaign_id = record.id;
  query.without_results = true;  // ranks, states and accuracies rebuild the sampler
  QUARTET_ASSIGN_OR_RETURN(auto candidates, store_->ListCandidates(query));
  std::set<uint64_t> drawn;
  for (const CandidateRecord& c : candidates) {
    if (drawn.insert(c.rank).second) QUARTET_RETURN_IF_ERROR(sampler->MarkDrawn(c.rank));
  }
  runtime->fidelity = record.config.has_fidelity();
  absl::MutexLock lock(&runtime->mu);
  if (record.config.has_fidelity()) {
    runtime->asha = std::make_unique<Asha>(SettingsOf(record.config.fidelity()));
    runtime->asha->set_issued(record.issued);
  }
  for (const CandidateRecord& c : candidates) {
    if (runtime->asha != nullptr) {
      // Every candidate is observed once, at rung 0, so the sampler compares equal fidelities.
      runtime->asha->Track(c);
      if (!c.rungs.empty()) sampler->Observe(c.rank, c.rungs.front().test_accuracy());
    } else if (c.state == CandidateState::kSucceeded) {
      sampler->Observe(c.rank, c.test_accuracy);
    }
  }
  runtime->sampler = std::move(sampler);
  return runtime;
}

std::shared_ptr<CoordinatorCore::Runtime> CoordinatorCore::RuntimeOf(int64_t campaign_id) {
  absl::MutexLock lock(&mu_);
  auto it = runtimes_.find(campaign_id);
  return it == runtimes_.end() ? nullptr : it->second;
}

void CoordinatorCore::DropRuntime(int64_t campaign_id) {
  absl::MutexLock lock(&mu_);
  runtimes_.erase(campaign_id);
}

void CoordinatorCore::Start() {
  {
    absl::MutexLock lock(&health_mu_);
    expire_not_before_ = clock_->Now() + options_.grace;
  }
  spdlog::info("leases expire from {} on (grace {} after start)",
               absl::FormatTime(clock_->Now() + options_.grace),
               absl::FormatDuration(options_.grace));
  absl::MutexLock lock(&sweep_mu_);
  if (sweeper_.joinable()) return;
  stopping_ = false;
  sweeper_ = std::thread([this] { SweepLoop(); });
  if (options_.issue_in_background) {
    absl::MutexLock issue(&issuer_mu_);
    issuing_ = true;
    issuer_ = std::thread([this] { IssueLoop(); });
  }
}

void CoordinatorCore::Stop() {
  {
    absl::MutexLock lock(&sweep_mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  {
    absl::MutexLock lock(&issuer_mu_);
    issuing_ = false;
  }
  if (issuer_.joinable()) issuer_.join();
}

void CoordinatorCore::SweepLoop() {
  while (true) {
    {
      absl::MutexLock lock(&sweep_mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sweep_mu_) { return stopping_; };
      // Real time, not clock_: the sweep's cadence is an operational detail; what expires is
      // decided by clock_->Now() inside the sweep.
      if (sweep_mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.sweep_interval)) return;
    }
    auto swept = Tick();
    if (!swept.ok()) spdlog::warn("lease expiry sweep failed: {}", swept.status().ToString());
  }
}

void CoordinatorCore::Changed() {
  absl::MutexLock lock(&change_mu_);
  ++change_version_;
}

uint64_t CoordinatorCore::change_version() {
  absl::MutexLock lock(&change_mu_);
  return change_version_;
}

uint64_t CoordinatorCore::WaitForChange(uint64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&change_mu_);
  auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(change_mu_) {
    return change_version_ != seen || woken_;
  };
  change_mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  return change_version_;
}

void CoordinatorCore::Wake() {
  absl::MutexLock lock(&change_mu_);
  woken_ = true;
}

bool CoordinatorCore::serving() {
  absl::MutexLock lock(&health_mu_);
  return store_available_;
}

absl::StatusOr<int> CoordinatorCore::Tick() {
  const absl::Status ping = store_->Ping();
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&health_mu_);
    if (!ping.ok()) {
      if (store_available_) {
        spdlog::error("database unreachable ({}): serving NOT_SERVING, lease expiry suspended",
                      ping.ToString());
      }
      store_available_ = false;
      return 0;
    }
    if (!store_available_) {
      store_available_ = true;
      expire_not_before_ = std::max(expire_not_before_, now + options_.grace);
      spdlog::info("database reachable again: serving; leases get {} of grace",
                   absl::FormatDuration(options_.grace));
    }
    if (now < expire_not_before_) return 0;
  }
  return SweepExpiredLeases();
}

absl::StatusOr<int> CoordinatorCore::SweepExpiredLeases() {
  QUARTET_ASSIGN_OR_RETURN(auto expired, store_->ExpireLeases(clock_->Now()));
  if (!expired.empty()) Changed();
  {
    absl::MutexLock lock(&leased_mu_);
    for (const ExpiredLease& e : expired) leased_.erase(e.candidate_id);
  }
  for (const ExpiredLease& e : expired) {
    if (options_.events != nullptr) options_.events->LeaseExpired(e.campaign_id);
    spdlog::warn("candidate {} of campaign {}: lease of worker {} expired (attempt {}) -> {}",
                 e.candidate_id, e.campaign_id, e.worker_id, e.attempt,
                 CandidateStateName(e.new_state));
  }
  return static_cast<int>(expired.size());
}

// ---- Issuing ---------------------------------------------------------------------------------

bool CoordinatorCore::FullEnough(const Runtime& rt) const {
  // In batches of a quarter of issue_ahead: an insert is a commit that holds the campaign row.
  const int64_t step = std::max<int64_t>(1, options_.issue_ahead / 4);
  const int64_t floor = rt.pending_floor.load();
  return !rt.fidelity && floor > 0 && options_.issue_ahead - floor < step;
}

absl::StatusOr<std::vector<NewCandidate>> CoordinatorCore::Draw(Runtime& rt, int64_t need,
                                                                int64_t remaining) {
  const int repeats = rt.campaign.config.repeats();
  std::vector<NewCandidate> batch;
  while (static_cast<int64_t>(batch.size()) < need) {
    auto rank = rt.sampler->Next();
    if (!rank.ok()) {
      if (rank.status().code() != absl::StatusCode::kOutOfRange) return rank.status();
      rt.exhausted = true;
      break;
    }
    for (int r = 0; r < repeats && static_cast<int64_t>(batch.size()) < remaining; ++r) {
      batch.push_back(NewCandidateAt(rt.campaign.config, *rt.space, *rank, r));
    }
  }
  return batch;
}

absl::Status CoordinatorCore::Refill(int64_t campaign_id, bool may_skip) {
  std::shared_ptr<Runtime> rt = RuntimeOf(campaign_id);
  if (rt == nullptr) return absl::OkStatus();
  if (may_skip && FullEnough(*rt)) return absl::OkStatus();  // a read would find nothing to do
  absl::MutexLock issuing(&rt->issue_mu);
  if (may_skip && FullEnough(*rt)) return absl::OkStatus();  // topped up meanwhile
  rt->pending_floor = -1;
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord rec, store_->GetCampaign(campaign_id));
  if (rec.state != CampaignState::kRunning) {
    if (IsFinal(rec.state)) DropRuntime(campaign_id);
    return absl::OkStatus();
  }
  rt->pending_floor = rec.counts.pending;
  const int64_t step = std::max<int64_t>(1, options_.issue_ahead / 4);
  std::vector<NewCandidate> batch;
  // Multi-fidelity: the epoch budget the draws were sized to stays fixed until they are stored
  // (completions decide promotions under mu). Otherwise results are observed while they are.
  absl::ReleasableMutexLock lock(&rt->mu);
  {
    int64_t remaining = rec.budget - rec.issued;
    if (rt->asha != nullptr) {
      rt->asha->set_issued(rec.issued);
      remaining = std::min(remaining, rt->asha->NewCandidatesAffordable());
      if (remaining == 0 && rec.issued < rec.budget) return CloseIssuing(rec, *rt->asha);
    }
    const int64_t need = std::min<int64_t>(remaining, options_.issue_ahead - rec.counts.pending);
    if (need <= 0 || rt->exhausted) return absl::OkStatus();
    if (need < step && need < remaining && rec.counts.pending > 0) return absl::OkStatus();
    QUARTET_ASSIGN_OR_RETURN(batch, Draw(*rt, need, remaining));
  }
  if (batch.empty()) return absl::OkStatus();
  if (!rt->fidelity) lock.Release();
  absl::Status inserted = store_->InsertCandidates(campaign_id, batch, clock_->Now());
  if (rt->fidelity) lock.Release();
  if (!inserted.ok()) {
    // The sampler advanced past what was stored: rebuild it from the store.
    spdlog::warn("campaign {}: storing {} new candidates failed ({}); rebuilding its sampler",
                 campaign_id, batch.size(), inserted.ToString());
    rt->pending_floor = -1;
    auto again = store_->GetCampaign(campaign_id);
    if (!again.ok()) return inserted;
    auto rebuilt = Rebuild(*again);
    if (!rebuilt.ok()) return inserted;
    absl::MutexLock relock(&rt->mu);
    absl::MutexLock inner(&(*rebuilt)->mu);
    rt->sampler = std::move((*rebuilt)->sampler);
    rt->exhausted = false;
    return inserted;
  }
  rt->pending_floor += static_cast<int64_t>(batch.size());
  spdlog::debug("campaign {}: issued {} candidates ({} of {})", campaign_id, batch.size(),
                rec.issued + static_cast<int64_t>(batch.size()), rec.budget);
  return absl::OkStatus();
}

void CoordinatorCore::RefillSoon(int64_t campaign_id) {
  if (std::shared_ptr<Runtime> rt = RuntimeOf(campaign_id); rt == nullptr || FullEnough(*rt)) {
    return;
  }
  {
    absl::MutexLock lock(&issuer_mu_);
    if (issuing_) {
      to_issue_.insert(campaign_id);
      return;
    }
  }
  absl::Status refill = Refill(campaign_id, /*may_skip=*/true);
  if (!refill.ok()) spdlog::warn("campaign {}: issuing failed: {}", campaign_id, refill.ToString());
}

void CoordinatorCore::IssueLoop() {
  for (;;) {
    std::set<int64_t> ids;
    {
      absl::MutexLock lock(&issuer_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(issuer_mu_) {
        return !to_issue_.empty() || !issuing_;
      };
      issuer_mu_.Await(absl::Condition(&ready));
      if (!issuing_) return;
      ids.swap(to_issue_);
    }
    for (int64_t id : ids) {
      absl::Status refill = Refill(id, /*may_skip=*/true);
      if (!refill.ok()) spdlog::warn("campaign {}: issuing failed: {}", id, refill.ToString());
    }
  }
}

absl::Status CoordinatorCore::CloseIssuing(const CampaignRecord& rec, const Asha& asha) {
  CampaignUpdate update;
  update.budget = rec.issued;
  QUARTET_RETURN_IF_ERROR(store_->UpdateCampaign(rec.id, update, clock_->Now()).status());
  spdlog::info(
      "campaign {}: epoch budget reached ({} of {} epochs granted): issuing closed at {} "
      "candidates; promotions and open candidates finish",
      rec.id, asha.epochs_committed(), asha.settings().budget_epochs, rec.issued);
  Changed();
  return absl::OkStatus();
}

absl::Status CoordinatorCore::RefillAll() {
  std::vector<int64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, rt] : runtimes_) ids.push_back(id);
  }
  absl::Status first;
  for (int64_t id : ids) {
    absl::Status s = Refill(id);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

// ---- Operator API ------------------------------------------------------------------------------

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::ToProto(const CampaignRecord& r) {
  quartet::v1::Campaign c;
  c.set_id(r.id);
  *c.mutable_config() = r.config;
  c.set_state(static_cast<quartet::v1::CampaignState>(r.state));
  FillCounts(r.counts, c.mutable_counts());
  c.set_issued(r.issued);
  c.set_space_size(SpaceSize(r.config));
  c.set_best_accuracy(r.best_accuracy);
  if (r.best_candidate_id != 0) {
    auto best = store_->GetCandidate(r.best_candidate_id);
    if (best.ok()) {
      for (const auto& f : best->families) c.mutable_best_combination()->add_families(f);
      c.mutable_best_combination()->set_rank(best->rank);
    }
  }
  if (r.counts.succeeded > 0)
    c.set_mean_candidate_seconds(r.succeeded_seconds / r.counts.succeeded);
  const int64_t done = r.counts.final_count();
  const double elapsed = absl::ToDoubleSeconds(clock_->Now() - r.created_at);
  if (!IsFinal(r.state) && done > 0 && elapsed > 0) {
    c.set_eta_seconds((r.budget - done) / (done / elapsed));
  }
  c.set_created_unix_ms(Millis(r.created_at));
  c.set_updated_unix_ms(Millis(r.updated_at));
  c.set_finished_unix_ms(Millis(r.finished_at));
  c.set_checkpoint_failures(r.checkpoint_failures);
  if (r.config.has_fidelity()) {
    c.set_budget_epochs(r.config.fidelity().budget_epochs());
    c.set_epochs_committed(EpochsCommitted(r));
  }
  return c;
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::SubmitCampaign(
    const quartet::v1::CampaignConfig& config) {
  QUARTET_ASSIGN_OR_RETURN(ResolvedCampaign resolved, ResolveCampaign(config));
  // Build the sampler before storing anything, so a sampler error stores nothing.
  QUARTET_ASSIGN_OR_RETURN(space::ProductSpace space, SpaceOf(resolved));
  QUARTET_ASSIGN_OR_RETURN(auto sampler,
                           space::CreateSampler(resolved.sampler, space, resolved.config.seed(),
                                                resolved.sampler_options));
  CampaignRecord record;
  record.config = resolved.config;
  record.name = resolved.config.name();
  record.k = resolved.config.k();
  record.budget = resolved.config.budget();
  record.max_attempts = resolved.config.max_attempts();
  record.max_preemptions = resolved.config.max_preemptions();
  record.priority = resolved.config.priority();
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord stored, store_->CreateCampaign(record, clock_->Now()));
  auto runtime = std::make_shared<Runtime>();
  runtime->campaign = std::move(resolved);
  runtime->space = std::make_unique<space::ProductSpace>(std::move(space));
  runtime->fidelity = stored.config.has_fidelity();
  {
    absl::MutexLock lock(&runtime->mu);
    runtime->sampler = std::move(sampler);
    if (stored.config.has_fidelity()) {
      runtime->asha = std::make_unique<Asha>(SettingsOf(stored.config.fidelity()));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    runtimes_[stored.id] = runtime;
  }
  spdlog::info("campaign {} '{}' submitted: k={} of {} families, {} sampler, budget {}, space {}",
               stored.id, stored.name, stored.k, stored.config.pool_size(),
               space::SamplerKindName(runtime->campaign.sampler), stored.budget,
               runtime->space->size());
  absl::Status refill = Refill(stored.id);
  if (!refill.ok())
    spdlog::warn("campaign {}: first issue failed: {}", stored.id, refill.ToString());
  Changed();
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord now, store_->GetCampaign(stored.id));
  return ToProto(now);
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::GetCampaign(int64_t campaign_id) {
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord r, store_->GetCampaign(campaign_id));
  return ToProto(r);
}

absl::StatusOr<std::vector<quartet::v1::Campaign>> CoordinatorCore::ListCampaigns(
    const std::vector<quartet::v1::CampaignState>& states, int limit) {
  std::vector<CampaignState> s;
  for (auto st : states) {
    if (st == quartet::v1::CAMPAIGN_STATE_UNSPECIFIED || !quartet::v1::CampaignState_IsValid(st)) {
      return absl::InvalidArgumentError(absl::StrCat("states: unknown campaign state ", st));
    }
    s.push_back(static_cast<CampaignState>(st));
  }
  if (limit < 0) return absl::InvalidArgumentError("limit: must be >= 0");
  QUARTET_ASSIGN_OR_RETURN(auto records, store_->ListCampaigns(s, limit == 0 ? 100 : limit));
  std::vector<quartet::v1::Campaign> out;
  for (const auto& r : records) {
    QUARTET_ASSIGN_OR_RETURN(auto c, ToProto(r));
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::CancelCampaign(int64_t campaign_id) {
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord r, store_->CancelCampaign(campaign_id, clock_->Now()));
  DropRuntime(campaign_id);
  PruneArtifacts(campaign_id);
  Changed();
  spdlog::info("campaign {} '{}' cancelled: {} pending cancelled, {} leased told to stop", r.id,
               r.name, r.counts.cancelled, r.counts.leased);
  return ToProto(r);
}

absl::StatusOr<quartet::v1::CoverageReport> CoordinatorCore::GetCoverageReport(
    int64_t campaign_id, bool include_all_pairs) {
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord rec, store_->GetCampaign(campaign_id));
  QUARTET_ASSIGN_OR_RETURN(CoverageCounters cov, store_->GetCoverage(campaign_id));
  const int n = rec.config.pool_size(), k = rec.config.k(), req = rec.config.required_size();
  quartet::v1::CoverageReport out;
  out.set_campaign_id(campaign_id);
  out.set_pool_size(n);
  out.set_k(k);
  const uint64_t space_size = SpaceSize(rec.config);
  out.set_space_size(space_size);
  const int repeats = std::max(1, rec.config.repeats());
  const int64_t distinct = (rec.issued + repeats - 1) / repeats;
  out.set_distinct_issued(distinct);
  out.set_space_fraction(space_size ? static_cast<double>(distinct) / space_size : 0);

  std::vector<int64_t> family_totals, pair_totals;
  const double uniform = n ? static_cast<double>(rec.issued) * k / n : 0;
  for (const FamilyCounter& f : cov.families) {
    auto* e = out.add_families();
    e->set_family(f.family);
    FillCounts(f.counts, e->mutable_counts());
    e->set_total(f.counts.total());
    e->set_share_vs_uniform(uniform > 0 ? f.counts.total() / uniform : 0);
    family_totals.push_back(f.counts.total());
  }
  int64_t pairs_succeeded = 0;
  for (const PairCounter& p : cov.pairs) {
    pair_totals.push_back(p.counts.total());
    if (p.counts.succeeded > 0) ++pairs_succeeded;
    if (include_all_pairs || p.counts.total() > 0) {
      auto* e = out.add_pairs();
      e->set_family_a(p.family_a);
      e->set_family_b(p.family_b);
      FillCounts(p.counts, e->mutable_counts());
      e->set_total(p.counts.total());
    }
  }
  const space::CoverageFigures fig =
      space::ComputeCoverage(family_totals, pair_totals, rec.issued, k);
  out.set_anchoring_index(fig.anchoring_index);
  out.set_family_entropy(fig.family_entropy);
  out.set_max_family_deviation(fig.max_family_deviation);
  out.set_pair_coverage(fig.pair_coverage);
  out.set_pairs_seen(fig.pairs_seen);
  out.set_pairs_total(static_cast<int64_t>(pair_totals.size()));
  out.set_pair_coverage_succeeded(
      pair_totals.empty() ? 0 : static_cast<double>(pairs_succeeded) / pair_totals.size());
  out.set_min_pair_count(fig.min_pair_count);
  out.set_max_pair_count(fig.max_pair_count);
  const int64_t triples_total = static_cast<int64_t>(space::Binomial(n, 3));
  out.set_triples_seen(static_cast<int64_t>(cov.triples.size()));
  out.set_triples_total(triples_total);
  out.set_triple_coverage(triples_total ? static_cast<double>(cov.triples.size()) / triples_total
                                        : 0);
  FillAxisCoverage(rec.config, cov.levels, &out);
  if (rec.config.has_fidelity()) FillFidelity(campaign_id, rec.counts, &out);
  return out;
}

int64_t CoordinatorCore::EpochsCommitted(const CampaignRecord& r) {
  std::shared_ptr<Runtime> rt = RuntimeOf(r.id);
  if (rt == nullptr && IsFinal(r.state)) {
    {
      absl::MutexLock lock(&mu_);
      auto it = final_epochs_.find(r.id);
      if (it != final_epochs_.end()) return it->second;
    }
    auto rebuilt = Rebuild(r);
    if (!rebuilt.ok()) return 0;
    rt = *rebuilt;
  }
  if (rt == nullptr) return 0;
  int64_t committed = 0;
  {
    absl::MutexLock lock(&rt->mu);
    if (rt->asha == nullptr) return 0;
    rt->asha->set_issued(r.issued);
    committed = rt->asha->epochs_committed();
  }
  if (IsFinal(r.state)) {
    absl::MutexLock lock(&mu_);
    final_epochs_[r.id] = committed;
  }
  return committed;
}

std::shared_ptr<CoordinatorCore::Runtime> CoordinatorCore::ReportRuntime(int64_t campaign_id) {
  std::shared_ptr<Runtime> rt = RuntimeOf(campaign_id);
  if (rt != nullptr) return rt;
  // A finished campaign: rebuild its promotion state from the store for the report.
  auto rec = store_->GetCampaign(campaign_id);
  if (!rec.ok()) return nullptr;
  auto rebuilt = Rebuild(*rec);
  return rebuilt.ok() ? *rebuilt : nullptr;
}

void CoordinatorCore::FillRungYield(int64_t campaign_id, quartet::v1::YieldReport* out) {
  std::shared_ptr<Runtime> rt = ReportRuntime(campaign_id);
  if (rt == nullptr) return;
  absl::MutexLock lock(&rt->mu);
  if (rt->asha == nullptr) return;
  const auto tallies = rt->asha->CompletedAtRung();
  auto fill = [&](const std::string& key, quartet::v1::YieldEntry* e) {
    auto it = tallies.find(key);
    if (it == tallies.end()) return;
    for (size_t r = 0; r < it->second.completed.size(); ++r) {
      e->add_completed_at_rung(it->second.completed[r]);
      e->add_mean_accuracy_at_rung(it->second.mean_accuracy[r]);
    }
  };
  for (auto& e : *out->mutable_families()) fill(e.families(0), &e);
  for (auto& e : *out->mutable_pairs()) {
    fill(absl::StrCat(e.families(0), "+", e.families(1)), &e);
  }
}

void CoordinatorCore::FillFidelity(int64_t campaign_id, const StateCounts& counts,
                                   quartet::v1::CoverageReport* out) {
  std::shared_ptr<Runtime> rt = ReportRuntime(campaign_id);
  if (rt == nullptr) return;
  absl::MutexLock lock(&rt->mu);
  if (rt->asha == nullptr) return;
  const Asha& asha = *rt->asha;
  const std::vector<RungStats> stats = asha.Stats();
  int64_t open_above = 0;
  for (size_t r = 1; r < stats.size(); ++r) open_above += stats[r].open;
  for (size_t r = 0; r < stats.size(); ++r) {
    auto* row = out->add_rungs();
    row->set_rung(static_cast<int>(r));
    row->set_epochs(asha.epochs_at(static_cast<int>(r)));
    row->set_completed(stats[r].completed);
    row->set_promoted(stats[r].promoted);
    row->set_stopped_early(stats[r].stopped_early);
    // New candidates are not all tracked: rung 0's open ones are the rest of the open ones.
    row->set_open(r == 0 ? std::max<int64_t>(0, counts.pending + counts.leased - open_above)
                         : stats[r].open);
    row->set_best_accuracy(stats[r].best_accuracy);
    row->set_mean_accuracy(stats[r].mean_accuracy);
    row->set_families_completed(stats[r].families_completed);
  }
  const auto completed = asha.CompletedAtRung();
  auto fill = [&](const std::string& key, google::protobuf::RepeatedField<int64_t>* field) {
    auto it = completed.find(key);
    for (size_t r = 0; r < stats.size(); ++r) {
      field->Add(it == completed.end() ? 0 : it->second.completed[r]);
    }
  };
  for (auto& f : *out->mutable_families()) fill(f.family(), f.mutable_completed_at_rung());
  for (auto& p : *out->mutable_pairs()) {
    fill(absl::StrCat(p.family_a(), "+", p.family_b()), p.mutable_completed_at_rung());
  }
  out->set_guard_promotions(asha.guard_promotions());
  for (const std::string& key : asha.GuardKept()) out->add_guard_kept(key);
}

absl::StatusOr<quartet::v1::YieldReport> CoordinatorCore::GetYieldReport(int64_t campaign_id,
                                                                         int min_samples, int top) {
  if (min_samples < 0) return absl::InvalidArgumentError("min_samples: must be >= 0");
  if (top < 0) return absl::InvalidArgumentError("top: must be >= 0");
  if (min_samples == 0) min_samples = 3;
  if (top == 0) top = 5;
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord rec, store_->GetCampaign(campaign_id));
  CandidateQuery query;
  query.campaign_id = campaign_id;
  query.states = {CandidateState::kSucceeded, CandidateState::kFailed};
  query.without_results = true;  // states, accuracies, families and levels are enough
  QUARTET_ASSIGN_OR_RETURN(auto finals, store_->ListCandidates(query));
  std::map<std::string, YieldAccumulator> fam;
  std::map<std::pair<std::string, std::string>, YieldAccumulator> pairs;
  auto add = [](YieldAccumulator& y, const CandidateRecord& c) { y.Add(c); };
  for (const CandidateRecord& c : finals) {
    for (size_t i = 0; i < c.families.size(); ++i) {
      add(fam[c.families[i]], c);
      for (size_t j = i + 1; j < c.families.size(); ++j) {
        add(pairs[{c.families[i], c.families[j]}], c);
      }
    }
  }
  quartet::v1::YieldReport out;
  out.set_campaign_id(campaign_id);
  out.set_min_samples(min_samples);
  for (const std::string& f : rec.config.pool()) {  // pool order, also families with no result
    fam[f].Fill({f}, out.add_families());
  }
  // Pairs in pool order.
  std::map<std::string, int> position;
  for (int i = 0; i < rec.config.pool_size(); ++i) position[rec.config.pool(i)] = i;
  std::vector<
      std::pair<std::pair<int, int>,
                const std::pair<const std::pair<std::string, std::string>, YieldAccumulator>*>>
      ordered;
  for (const auto& entry : pairs) {
    ordered.push_back({{position[entry.first.first], position[entry.first.second]}, &entry});
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [pos, entry] : ordered) {
    entry->second.Fill({entry->first.first, entry->first.second}, out.add_pairs());
  }
  if (rec.config.has_fidelity()) FillRungYield(campaign_id, &out);
  std::vector<const quartet::v1::YieldEntry*> low, best;
  for (const auto& e : out.families()) {
    if (e.succeeded() >= min_samples) low.push_back(&e);
  }
  for (const auto& e : out.pairs()) {
    if (e.succeeded() >= min_samples) best.push_back(&e);
  }
  std::stable_sort(low.begin(), low.end(),
                   [](auto* a, auto* b) { return a->mean_accuracy() < b->mean_accuracy(); });
  std::stable_sort(best.begin(), best.end(),
                   [](auto* a, auto* b) { return a->mean_accuracy() > b->mean_accuracy(); });
  for (int i = 0; i < static_cast<int>(low.size()) && i < top; ++i) {
    *out.add_low_yield_families() = *low[i];
  }
  for (int i = 0; i < static_cast<int>(best.size()) && i < top; ++i) {
    *out.add_best_pairs() = *best[i];
  }
  FillAxisYield(rec.config, finals, min_samples, top, &out);
  return out;
}

absl::StatusOr<std::vector<CandidateSummary>> CoordinatorCore::ListResults(
    const quartet::v1::ListResultsRequest& request) {
  if (request.limit() < 0) return absl::InvalidArgumentError("limit: must be >= 0");
  CandidateQuery q;
  q.campaign_id = request.campaign_id();
  if (q.campaign_id <= 0) {
    return absl::InvalidArgumentError("campaign_id: required (a positive campaign id)");
  }
  for (int s : request.states()) {
    if (s == quartet::v1::CANDIDATE_STATE_UNSPECIFIED || !quartet::v1::CandidateState_IsValid(s)) {
      return absl::InvalidArgumentError(absl::StrCat("states: unknown candidate state ", s));
    }
    q.states.push_back(static_cast<CandidateState>(s));
  }
  if (q.states.empty()) q.states.push_back(CandidateState::kSucceeded);
  q.by_accuracy = request.has_by_accuracy() ? request.by_accuracy() : true;
  if (request.after_candidate_id() < 0) {
    return absl::InvalidArgumentError("after_candidate_id: must be >= 0");
  }
  if (request.after_candidate_id() > 0 && q.by_accuracy) {
    return absl::InvalidArgumentError(
        "after_candidate_id: pages follow candidate id order; set by_accuracy to false");
  }
  q.after_id = request.after_candidate_id();
  q.limit = request.limit() == 0 ? 20 : std::min(request.limit(), 100000);
  q.without_results = request.without_results();
  QUARTET_ASSIGN_OR_RETURN(auto records, store_->ListCandidates(q));
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord campaign, store_->GetCampaign(q.campaign_id));
  std::vector<CandidateSummary> out;
  for (const auto& c : records) out.push_back(Summarize(c, campaign.config));
  return out;
}

absl::StatusOr<CandidateSummary> CoordinatorCore::GetCandidate(int64_t candidate_id) {
  if (candidate_id <= 0) {
    return absl::InvalidArgumentError("candidate_id: required (a positive candidate id)");
  }
  QUARTET_ASSIGN_OR_RETURN(CandidateRecord c, store_->GetCandidate(candidate_id));
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord campaign, store_->GetCampaign(c.campaign_id));
  return Summarize(c, campaign.config);
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::SetPaused(int64_t campaign_id, bool paused) {
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord before, store_->GetCampaign(campaign_id));
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord r,
                           store_->SetCampaignPaused(campaign_id, paused, clock_->Now()));
  if (before.state != r.state) {
    spdlog::info("campaign {} '{}' {}: {} -> {} ({} of {} issued, {} leased {})", r.id, r.name,
                 paused ? "paused" : "resumed", CampaignStateName(before.state),
                 CampaignStateName(r.state), r.issued, r.budget, r.counts.leased,
                 paused ? "finishing" : "running");
    Changed();
  }
  if (!paused) {
    if (RuntimeOf(campaign_id) == nullptr) {
      QUARTET_ASSIGN_OR_RETURN(auto runtime, Rebuild(r));
      absl::MutexLock lock(&mu_);
      runtimes_.emplace(campaign_id, std::move(runtime));
    }
    absl::Status refill = Refill(campaign_id);
    if (!refill.ok())
      spdlog::warn("campaign {}: issuing failed: {}", campaign_id, refill.ToString());
  }
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord now, store_->GetCampaign(campaign_id));
  return ToProto(now);
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::PauseCampaign(int64_t campaign_id) {
  return SetPaused(campaign_id, true);
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::ResumeCampaign(int64_t campaign_id) {
  return SetPaused(campaign_id, false);
}

absl::StatusOr<quartet::v1::Campaign> CoordinatorCore::UpdateCampaign(
    const quartet::v1::UpdateCampaignRequest& request) {
  if (!request.has_priority() && !request.has_budget()) {
    return absl::InvalidArgumentError(
        "nothing to update: set priority, budget or both (quartetctl campaign update ID "
        "--priority=N --budget=N)");
  }
  const int64_t id = request.campaign_id();
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord before, store_->GetCampaign(id));
  CampaignUpdate update;
  if (request.has_priority()) update.priority = request.priority();
  if (request.has_budget()) {
    const int repeats = std::max(1, before.config.repeats());
    const long double capacity = static_cast<long double>(SpaceSize(before.config)) * repeats;
    if (static_cast<long double>(request.budget()) > capacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "budget: ", request.budget(), " is more than the space of campaign ", id,
          " holds: ", SpaceSize(before.config), " distinct points x ", repeats, " repeats"));
    }
    update.budget = request.budget();
  }
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord r, store_->UpdateCampaign(id, update, clock_->Now()));
  spdlog::info("campaign {} '{}' updated: priority {} -> {}, budget {} -> {} ({} issued){}", r.id,
               r.name, before.priority, r.priority, before.budget, r.budget, r.issued,
               r.state == CampaignState::kDone ? "; now DONE" : "");
  Changed();
  if (r.state == CampaignState::kDone) {
    DropRuntime(id);
  } else if (absl::Status refill = Refill(id); !refill.ok()) {
    spdlog::warn("campaign {}: issuing failed: {}", id, refill.ToString());
  }
  QUARTET_ASSIGN_OR_RETURN(CampaignRecord now, store_->GetCampaign(id));
  return ToProto(now);
}

// ---- Fleet -------------------------------------------------------------------------------------

absl::StatusOr<quartet::v1::WorkerInfo> CoordinatorCore::ToWorkerInfo(const WorkerActivity& a) {
  const WorkerRecord& w = a.worker;
  quartet::v1::WorkerInfo out;
  out.set_worker_id(w.id);
  out.set_host(w.host);
  out.set_device(w.device);
  out.set_gpu_name(w.gpu_name);
  out.set_gpu_memory_bytes(w.gpu_memory_bytes);
  out.set_version(w.version);
  out.set_registered_unix_ms(Millis(w.registered_at));
  out.set_last_seen_unix_ms(Millis(w.last_seen_at));
  out.set_draining(w.draining);
  out.set_candidates_succeeded(a.succeeded);
  out.set_candidates_failed(a.failed);
  std::map<int64_t, int> epochs_of;  // campaign -> recipe epochs
  for (const HeldCandidate& held : a.leased) {
    const CandidateRecord& c = held.candidate;
    quartet::v1::WorkerTask* t = out.add_current();
    t->set_candidate_id(c.id);
    t->set_campaign_id(c.campaign_id);
    for (const auto& f : c.families) t->mutable_combination()->add_families(f);
    t->mutable_combination()->set_rank(c.rank);
    t->set_attempt(c.attempt);
    t->set_started_unix_ms(Millis(c.started_at));
    t->set_lease_deadline_unix_ms(Millis(c.lease_deadline));
    if (!epochs_of.count(c.campaign_id)) {
      QUARTET_ASSIGN_OR_RETURN(CampaignRecord campaign, store_->GetCampaign(c.campaign_id));
      epochs_of[c.campaign_id] = campaign.config.recipe().epochs();
    }
    t->set_epochs(epochs_of[c.campaign_id]);
    t->set_epoch(held.epoch);
  }
  return out;
}

absl::StatusOr<std::vector<quartet::v1::WorkerInfo>> CoordinatorCore::ListWorkers() {
  QUARTET_ASSIGN_OR_RETURN(auto fleet, store_->ListWorkers());
  std::vector<quartet::v1::WorkerInfo> out;
  for (const WorkerActivity& a : fleet) {
    QUARTET_ASSIGN_OR_RETURN(auto info, ToWorkerInfo(a));
    out.push_back(std::move(info));
  }
  return out;
}

absl::StatusOr<quartet::v1::WorkerInfo> CoordinatorCore::DrainWorker(const std::string& worker_id,
                                                                     bool drain) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id: required");
  absl::StatusOr<WorkerRecord> marked = store_->SetWorkerDraining(worker_id, drain);
  if (absl::IsNotFound(marked.status())) {
    return absl::NotFoundError(
        absl::StrCat("worker '", common::EscapeForLog(worker_id, kLoggedIdBytes),
                     "' is not registered; `quartetctl workers` lists the worker ids"));
  }
  QUARTET_ASSIGN_OR_RETURN(WorkerRecord w, std::move(marked));
  {
    absl::MutexLock lock(&workers_mu_);
    workers_[w.id] = WorkerAuth{w.secret_hash, w.draining};
  }
  spdlog::info("worker {} {}", common::EscapeForLog(w.id, kLoggedIdBytes),
               drain ? "draining: it finishes what it holds, leases nothing more and exits"
                     : "no longer draining");
  Changed();
  QUARTET_ASSIGN_OR_RETURN(auto fleet, store_->ListWorkers());
  for (const WorkerActivity& a : fleet) {
    if (a.worker.id == w.id) return ToWorkerInfo(a);
  }
  return ToWorkerInfo(WorkerActivity{w, {}, 0, 0});
}

// ---- Worker API --------------------------------------------------------------------------------

absl::StatusOr<quartet::v1::RegisterWorkerResponse> CoordinatorCore::RegisterWorker(
    const quartet::v1::RegisterWorkerRequest& request) {
  WorkerRecord w;
  w.host = request.host();
  w.device = request.device();
  w.gpu_name = request.gpu_name();
  w.gpu_memory_bytes = request.gpu_memory_bytes();
  w.families.assign(request.families().begin(), request.families().end());
  w.version = request.version();
  std::string secret;
  if (!request.worker_id().empty() && !request.session_secret().empty()) {
    // Re-attach: only with the secret this id was given.
    auto existing = store_->GetWorker(request.worker_id());
    if (existing.ok() && SessionSecretMatches(existing->secret_hash, request.session_secret())) {
      w.id = existing->id;
      secret = request.session_secret();
    } else if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound) {
      return existing.status();
    }
  }
  const bool reattached = !w.id.empty();
  if (!reattached) {
    secret = NewSessionSecret();
    for (int tries = 0; w.id.empty(); ++tries) {
      std::string id = NewWorkerId(request.worker_id());
      auto taken = store_->GetWorker(id);
      if (taken.status().code() == absl::StatusCode::kNotFound) {
        w.id = std::move(id);
      } else if (!taken.ok()) {
        return taken.status();
      } else if (tries >= kWorkerIdTries) {
        return absl::InternalError("could not choose an unused worker id");
      }
    }
  }
  w.secret_hash = HashSessionSecret(secret);
  QUARTET_ASSIGN_OR_RETURN(WorkerRecord stored, store_->RegisterWorker(w, clock_->Now()));
  {
    absl::MutexLock lock(&workers_mu_);
    workers_[stored.id] = WorkerAuth{stored.secret_hash, stored.draining};
  }
  spdlog::info(
      "worker {} {}: host {}, device {}{}", stored.id, reattached ? "re-attached" : "registered",
      common::EscapeForLog(stored.host, kLoggedIdBytes),
      common::EscapeForLog(stored.device, kLoggedIdBytes),
      stored.gpu_name.empty() ? ""
                              : " (" + common::EscapeForLog(stored.gpu_name, kLoggedIdBytes) + ")");
  if (options_.events != nullptr) options_.events->WorkerSeen(stored.id);
  quartet::v1::RegisterWorkerResponse out;
  out.set_worker_id(stored.id);
  out.set_session_secret(secret);
  out.set_heartbeat_interval_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  return out;
}

absl::Status CoordinatorCore::CheckWorker(const std::string& worker_id,
                                          const std::string& session_secret) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id: required");
  std::string hash;
  {
    absl::MutexLock lock(&workers_mu_);
    auto it = workers_.find(worker_id);
    if (it != workers_.end()) hash = it->second.secret_hash;
  }
  if (hash.empty()) {
    auto w = store_->GetWorker(worker_id);
    if (w.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("worker '",
                                              common::EscapeForLog(worker_id, kLoggedIdBytes),
                                              "' is not registered; call RegisterWorker first"));
    }
    if (!w.ok()) return w.status();
    hash = w->secret_hash;
    absl::MutexLock lock(&workers_mu_);
    workers_[worker_id] = WorkerAuth{hash, w->draining};
  }
  if (!SessionSecretMatches(hash, session_secret)) {
    return absl::PermissionDeniedError(
        "the session secret is missing or does not match this worker id; register again");
  }
  if (options_.events != nullptr) options_.events->WorkerSeen(worker_id);
  return absl::OkStatus();
}

bool CoordinatorCore::Draining(const std::string& worker_id) {
  absl::MutexLock lock(&workers_mu_);
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.draining;
}

quartet::v1::CandidateSpec CoordinatorCore::SpecOf(const LeaseGrant& grant) const {
  const CandidateRecord& c = grant.candidate;
  quartet::v1::CandidateSpec spec;
  spec.set_candidate_id(c.id);
  spec.set_campaign_id(c.campaign_id);
  for (const auto& f : c.families) spec.mutable_combination()->add_families(f);
  spec.mutable_combination()->set_rank(c.rank);
  spec.set_repeat(c.repeat);
  spec.set_attempt(c.attempt);
  *spec.mutable_recipe() = grant.config.recipe();
  *spec.mutable_data() = grant.config.data();
  for (size_t j = 0; j < c.axis_values.size() && static_cast<int>(j) < grant.config.axes_size();
       ++j) {
    // Values were produced from the resolved axis and apply cleanly.
    ApplyAxisValue(grant.config.axes(j).path(), c.axis_values[j], &spec).IgnoreError();
  }
  FillAxisLevels(grant.config, c, spec.mutable_axis_levels());
  if (!spec.recipe().has_seed()) {
    spec.mutable_recipe()->set_seed(DeriveSeed(grant.config.seed(), c.rank, c.repeat));
  }
  if (grant.config.has_fidelity()) {
    const auto& rungs = grant.config.fidelity().rung_epochs();
    const int rung = std::clamp(c.rung, 0, rungs.size() - 1);
    quartet::v1::Fidelity* f = spec.mutable_fidelity();
    f->set_rung(rung);
    f->set_stop_epoch(rungs[rung]);
    // Continue from the newest checkpoint short of this rung (none: from scratch).
    if (c.checkpoint && c.checkpoint->epoch() > 0 && c.checkpoint->epoch() < rungs[rung]) {
      *f->mutable_resume_from() = *c.checkpoint;
    }
  }
  return spec;
}

absl::StatusOr<quartet::v1::LeaseCandidateResponse> CoordinatorCore::LeaseCandidate(
    const quartet::v1::LeaseCandidateRequest& request) {
  QUARTET_RETURN_IF_ERROR(CheckWorker(request.worker_id(), request.session_secret()));
  const std::string& worker_id = request.worker_id();
  quartet::v1::LeaseCandidateResponse out;
  if (Draining(worker_id)) {
    spdlog::info("worker {} is draining: no lease, told to finish and exit", worker_id);
    out.set_drain(true);
    out.set_retry_after_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.retry_after)));
    return out;
  }
  const absl::Time now = clock_->Now();
  QUARTET_ASSIGN_OR_RETURN(auto grant, store_->LeaseNext(worker_id, now, options_.lease));
  if (!grant.has_value()) {
    absl::Status refill = RefillAll();
    if (!refill.ok()) spdlog::warn("issuing candidates failed: {}", refill.ToString());
    QUARTET_ASSIGN_OR_RETURN(grant, store_->LeaseNext(worker_id, now, options_.lease));
  }
  if (!grant.has_value()) {
    out.set_retry_after_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.retry_after)));
    if (options_.events != nullptr) options_.events->LeaseRefused();
    return out;
  }
  if (options_.events != nullptr) options_.events->LeaseGranted(grant->candidate.campaign_id);
  const CandidateRecord& c = grant->candidate;
  if (std::shared_ptr<Runtime> rt = RuntimeOf(c.campaign_id)) {
    if (rt->fidelity) {
      absl::MutexLock lock(&rt->mu);
      rt->asha->Track(c);
    }
    int64_t floor = rt->pending_floor.load();
    while (floor > 0 && !rt->pending_floor.compare_exchange_weak(floor, floor - 1)) {
    }
  }
  {
    absl::MutexLock lock(&leased_mu_);
    leased_[c.id] = LeasedCandidate{c.campaign_id, c.lease_token, c.rank, c.families};
  }
  *out.mutable_spec() = SpecOf(*grant);
  out.mutable_lease()->set_candidate_id(c.id);
  out.mutable_lease()->set_lease_token(c.lease_token);
  out.mutable_lease()->set_deadline_unix_ms(Millis(c.lease_deadline));
  spdlog::info("candidate {} of campaign {} ({}) leased to {} (attempt {}, token {})", c.id,
               c.campaign_id, absl::StrJoin(c.families, "+"), worker_id, c.attempt, c.lease_token);
  Changed();
  RefillSoon(c.campaign_id);
  return out;
}

absl::StatusOr<quartet::v1::HeartbeatResponse> CoordinatorCore::Heartbeat(
    const quartet::v1::HeartbeatRequest& request) {
  QUARTET_RETURN_IF_ERROR(CheckWorker(request.worker_id(), request.session_secret()));
  QUARTET_ASSIGN_OR_RETURN(LeaseRenewal r,
                           store_->RenewLease(request.candidate_id(), request.lease_token(),
                                              request.worker_id(), clock_->Now(), options_.lease));
  quartet::v1::HeartbeatResponse out;
  out.set_deadline_unix_ms(Millis(r.deadline));
  out.set_cancel(r.cancel);
  out.set_drain(Draining(request.worker_id()));
  return out;
}

absl::StatusOr<std::vector<MetricRecord>> CoordinatorCore::ToMetricRecords(
    const google::protobuf::RepeatedPtrField<quartet::v1::MetricPoint>& points, const char* field) {
  std::vector<MetricRecord> out;
  out.reserve(points.size());
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  for (const auto& p : points) {
    if (p.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: every metric point needs a name"));
    }
    MetricRecord m;
    m.step = p.step();
    m.epoch = p.epoch();
    m.name = p.name();
    m.value = p.value();
    m.time_unix_ms = p.time_unix_ms() ? p.time_unix_ms() : now_ms;
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<int64_t> CoordinatorCore::AppendMetrics(const quartet::v1::MetricBatch& batch) {
  QUARTET_RETURN_IF_ERROR(CheckWorker(batch.worker_id(), batch.session_secret()));
  QUARTET_ASSIGN_OR_RETURN(auto points, ToMetricRecords(batch.points(), "points"));
  return store_->AppendMetrics(batch.candidate_id(), batch.lease_token(), batch.worker_id(),
                               points);
}

absl::Status CoordinatorCore::CompleteCandidate(
    const quartet::v1::CompleteCandidateRequest& request) {
  QUARTET_RETURN_IF_ERROR(CheckWorker(request.worker_id(), request.session_secret()));
  const quartet::v1::Result& result = request.result();
  if (!std::isfinite(result.test_accuracy()) || result.test_accuracy() < 0 ||
      result.test_accuracy() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("result.test_accuracy: must be in [0, 1], got ", result.test_accuracy()));
  }
  QUARTET_ASSIGN_OR_RETURN(auto final_metrics,
                           ToMetricRecords(request.final_metrics(), "final_metrics"));
  // The lease this core handed out names the candidate's campaign, rank and families (they never
  // change); without it (a repeat, a lease from before a restart) the candidate is read.
  std::optional<LeasedCandidate> c = TakeLeased(request.candidate_id(), request.lease_token());
  bool repeat = false;
  if (!c.has_value()) {
    QUARTET_ASSIGN_OR_RETURN(CandidateRecord before, store_->GetCandidate(request.candidate_id()));
    repeat =
        before.state == CandidateState::kSucceeded && before.lease_token == request.lease_token();
    c = LeasedCandidate{before.campaign_id, before.lease_token, before.rank, before.families};
  }
  if (std::shared_ptr<Runtime> rt = RuntimeOf(c->campaign_id); rt != nullptr && rt->fidelity) {
    return CompleteAtRung(request, final_metrics, rt);
  }
  QUARTET_RETURN_IF_ERROR(store_->CompleteCandidate(request.candidate_id(), request.lease_token(),
                                                    request.worker_id(), result, final_metrics,
                                                    clock_->Now()));
  if (repeat) return absl::OkStatus();  // a repeat of a completion already stored
  spdlog::info("candidate {} of campaign {} ({}) SUCCEEDED: test accuracy {:.4f} in {:.1f} s on {}",
               request.candidate_id(), c->campaign_id, absl::StrJoin(c->families, "+"),
               result.test_accuracy(), result.wall_seconds(), request.worker_id());
  if (std::shared_ptr<Runtime> rt = RuntimeOf(c->campaign_id)) {
    {
      absl::MutexLock lock(&rt->mu);
      rt->sampler->Observe(c->rank, result.test_accuracy());
    }
    RefillSoon(c->campaign_id);
  }
  if (result.has_checkpoint() || result.has_exported_model()) PruneArtifacts(c->campaign_id);
  Changed();
  return absl::OkStatus();
}

absl::Status CoordinatorCore::CompleteAtRung(const quartet::v1::CompleteCandidateRequest& request,
                                             const std::vector<MetricRecord>& final_metrics,
                                             const std::shared_ptr<Runtime>& rt) {
  const double accuracy = request.result().test_accuracy();
  RungCompletion plan;
  CandidateRecord c;
  {
    absl::MutexLock lock(&rt->mu);
    QUARTET_ASSIGN_OR_RETURN(c, store_->GetCandidate(request.candidate_id()));
    const bool repeat = c.completed_token != 0 && c.completed_token == request.lease_token();
    // The holder's own lease, live or ended by an outage (the store revives it); else the store
    // refuses the call.
    const bool decide = !repeat && c.lease_token == request.lease_token() &&
                        c.worker_id == request.worker_id() &&
                        (c.state == CandidateState::kLeased ||
                         c.state == CandidateState::kPending || c.state == CandidateState::kFailed);
    if (decide) {
      rt->asha->Track(c);
      plan = rt->asha->Decide(c.id, accuracy);
    }
    // A repeat or a stale call: the store gives the fencing answer and changes nothing.
    QUARTET_RETURN_IF_ERROR(store_->CompleteRung(c.id, request.lease_token(), request.worker_id(),
                                                 request.result(), final_metrics, plan,
                                                 clock_->Now()));
    if (!decide) return absl::OkStatus();
    rt->asha->Apply(c.id, accuracy, plan);
    if (plan.rung == 0) rt->sampler->Observe(c.rank, accuracy);
  }
  std::vector<std::string> promoted;
  for (const Promotion& p : plan.promotions) {
    promoted.push_back(absl::StrCat(p.candidate_id, p.guard ? " (guard)" : ""));
  }
  spdlog::info(
      "candidate {} of campaign {} ({}) completed rung {} ({} epochs): test accuracy {:.4f} in "
      "{:.1f} s on {} -> {}; promoted to rung {}: [{}]",
      c.id, c.campaign_id, absl::StrJoin(c.families, "+"), plan.rung, plan.epochs, accuracy,
      request.result().wall_seconds(), request.worker_id(),
      plan.last_rung ? "SUCCEEDED" : "STOPPED_EARLY", plan.rung + 1, absl::StrJoin(promoted, ", "));
  absl::Status refill = Refill(c.campaign_id);
  if (!refill.ok())
    spdlog::warn("campaign {}: issuing failed: {}", c.campaign_id, refill.ToString());
  if (request.result().has_checkpoint() || request.result().has_exported_model()) {
    PruneArtifacts(c.campaign_id);
  }
  Changed();
  return absl::OkStatus();
}

absl::StatusOr<std::pair<quartet::v1::Artifact, std::string>> CoordinatorCore::ExportedModel(
    int64_t candidate_id) {
  if (candidate_id <= 0) return absl::InvalidArgumentError("candidate_id: must be positive");
  QUARTET_ASSIGN_OR_RETURN(CandidateRecord c, store_->GetCandidate(candidate_id));
  if (!c.exported_model.has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "candidate ", candidate_id, " has no exported model kept (", CandidateStateName(c.state),
        "; workers need --artifacts, and only the campaign's best keep theirs)"));
  }
  auto bytes = common::ReadArtifact(*c.exported_model);
  if (!bytes.ok()) {
    return absl::DataLossError(absl::StrCat("exported model of candidate ", candidate_id, " (",
                                            c.exported_model->uri(),
                                            "): ", bytes.status().message()));
  }
  return std::make_pair(*c.exported_model, *std::move(bytes));
}

void CoordinatorCore::PruneArtifacts(int64_t campaign_id) {
  auto artifacts = store_->ListArtifacts(campaign_id);
  auto campaign = store_->GetCampaign(campaign_id);
  if (!artifacts.ok() || !campaign.ok() || artifacts->empty()) return;
  // The candidates holding artifacts, and the newest artifact of each kind per candidate.
  std::map<int64_t, CandidateRecord> holders;
  std::map<std::pair<int64_t, ArtifactKind>, int64_t> newest;
  for (const ArtifactRecord& a : *artifacts) {
    if (!holders.count(a.candidate_id)) {
      auto c = store_->GetCandidate(a.candidate_id);
      if (!c.ok()) return;
      holders[a.candidate_id] = *std::move(c);
    }
    int64_t& n = newest[{a.candidate_id, a.kind}];
    n = std::max(n, a.id);
  }
  // The best keep_best_checkpoints holders by accuracy (finished ones: SUCCEEDED or STOPPED_EARLY).
  std::vector<std::pair<double, int64_t>> ranked;
  for (const auto& [id, c] : holders) {
    if (c.state == CandidateState::kSucceeded || c.state == CandidateState::kStoppedEarly) {
      ranked.emplace_back(c.test_accuracy, id);
    }
  }
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::set<int64_t> best;
  const size_t keep = static_cast<size_t>(campaign->config.keep_best_checkpoints());
  for (size_t i = 0; i < ranked.size() && i < keep; ++i) best.insert(ranked[i].second);
  std::shared_ptr<Runtime> rt = IsFinal(campaign->state) ? nullptr : RuntimeOf(campaign_id);
  std::vector<int64_t> gone;
  for (const ArtifactRecord& a : *artifacts) {
    const CandidateRecord& c = holders.at(a.candidate_id);
    const bool superseded = newest.at({a.candidate_id, a.kind}) != a.id;
    bool needed = !superseded && (best.count(c.id) > 0 || c.state == CandidateState::kPending ||
                                  c.state == CandidateState::kLeased);
    if (!superseded && !needed && c.state == CandidateState::kStoppedEarly && rt != nullptr) {
      absl::MutexLock lock(&rt->mu);
      needed = rt->asha != nullptr && rt->asha->MayStillPromote(c.id);
    }
    if (needed) continue;
    if (absl::Status d = common::DeleteArtifact(a.artifact); !d.ok()) {
      spdlog::warn("campaign {}: could not delete {} of candidate {}: {}", campaign_id,
                   a.artifact.uri(), a.candidate_id, d.ToString());
      continue;
    }
    gone.push_back(a.id);
    spdlog::info("campaign {}: deleted {} of candidate {} ({}): {}", campaign_id,
                 a.kind == ArtifactKind::kCheckpoint ? "checkpoint" : "exported model",
                 a.candidate_id, superseded ? "superseded by a newer one" : "not among the best",
                 a.artifact.uri());
  }
  if (absl::Status m = store_->MarkArtifactsDeleted(gone, clock_->Now()); !m.ok()) {
    spdlog::warn("campaign {}: recording {} deleted artifacts failed: {}", campaign_id, gone.size(),
                 m.ToString());
  }
}

std::optional<CoordinatorCore::LeasedCandidate> CoordinatorCore::TakeLeased(int64_t candidate_id,
                                                                            int64_t token) {
  absl::MutexLock lock(&leased_mu_);
  auto it = leased_.find(candidate_id);
  if (it == leased_.end() || it->second.token != token) return std::nullopt;
  LeasedCandidate out = std::move(it->second);
  leased_.erase(it);
  return out;
}

absl::StatusOr<quartet::v1::FailCandidateResponse> CoordinatorCore::FailCandidate(
    const quartet::v1::FailCandidateRequest& request) {
  QUARTET_RETURN_IF_ERROR(CheckWorker(request.worker_id(), request.session_secret()));
  if (!quartet::v1::ErrorClass_IsValid(request.error_class()) ||
      request.error_class() == quartet::v1::ERROR_CLASS_UNSPECIFIED ||
      request.error_class() == quartet::v1::ERROR_CLASS_LOST) {
    return absl::InvalidArgumentError(
        absl::StrCat("error_class: must name why the candidate failed (NUMERIC, OOM, BUILD, DATA, "
                     "TIMEOUT, PREEMPTED, CANCELLED, INTERNAL), got ",
                     request.error_class()));
  }
  TakeLeased(request.candidate_id(), request.lease_token());
  QUARTET_ASSIGN_OR_RETURN(
      CandidateState to,
      store_->FailCandidate(request.candidate_id(), request.lease_token(), request.worker_id(),
                            request.error_class(), request.message(), request.retryable(),
                            clock_->Now()));
  spdlog::info("candidate {} failed on {} ({}: {}) -> {}", request.candidate_id(),
               common::EscapeForLog(request.worker_id(), kLoggedIdBytes),
               quartet::v1::ErrorClass_Name(request.error_class()),
               common::EscapeForLog(request.message(), kLoggedMessageBytes),
               CandidateStateName(to));
  Changed();
  quartet::v1::FailCandidateResponse out;
  out.set_requeued(to == CandidateState::kPending);
  return out;
}

}  // namespace quartet::coordinator
