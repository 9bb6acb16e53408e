#include "coordinator/storage/memory_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace quartet::coordinator {

absl::StatusOr<CampaignRecord> MemoryStore::CreateCampaign(const CampaignRecord& campaign,
                                                           absl::Time now) {
  QUARTET_RETURN_IF_ERROR(CheckCampaignShape(campaign));
  absl::MutexLock lock(&mu_);
  CampaignData data;
  data.record = campaign;
  data.record.id = next_campaign_id_++;
  data.record.state = CampaignState::kRunning;
  data.record.issued = 0;
  data.record.counts = {};
  data.record.best_accuracy = 0;
  data.record.best_candidate_id = 0;
  data.record.succeeded_seconds = 0;
  data.record.created_at = data.record.updated_at = now;
  data.record.finished_at = absl::InfinitePast();
  const auto& pool = campaign.config.pool();
  for (int i = 0; i < pool.size(); ++i) {
    data.family[pool[i]] = {};
    for (int j = i + 1; j < pool.size(); ++j) data.pair[{pool[i], pool[j]}] = {};
  }
  data.level_counts = AxisLevelCounts(campaign.config);
  for (size_t a = 0; a < data.level_counts.size(); ++a) {
    for (int l = 0; l < data.level_counts[a]; ++l) {
      data.cell[{static_cast<int>(a), l, ""}] = {};
      for (const std::string& f : pool) data.cell[{static_cast<int>(a), l, f}] = {};
    }
  }
  const int64_t id = data.record.id;
  CampaignRecord out = data.record;
  campaigns_.emplace(id, std::move(data));
  return out;
}

absl::StatusOr<CampaignRecord> MemoryStore::GetCampaign(int64_t campaign_id) {
  absl::MutexLock lock(&mu_);
  auto it = campaigns_.find(campaign_id);
  if (it == campaigns_.end()) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  return it->second.record;
}

absl::StatusOr<std::vector<CampaignRecord>> MemoryStore::ListCampaigns(
    const std::vector<CampaignState>& states, int64_t limit) {
  absl::MutexLock lock(&mu_);
  std::vector<CampaignRecord> out;
  for (auto it = campaigns_.rbegin(); it != campaigns_.rend(); ++it) {
    const CampaignRecord& r = it->second.record;
    if (!states.empty() && std::find(states.begin(), states.end(), r.state) == states.end()) {
      continue;
    }
    out.push_back(r);
    if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
  }
  return out;
}

void MemoryStore::Transition(CandidateRecord& c, CandidateState to, absl::Time now) {
  CampaignData& camp = campaigns_.at(c.campaign_id);
  const CandidateState from = c.state;
  camp.record.counts.at(from)--;
  camp.record.counts.at(to)++;
  FamilyTally tally;
  tally.AddCandidate(c.families, c.levels);
  for (const auto& [f, n] : tally.families) {
    camp.family[f].at(from) -= n;
    camp.family[f].at(to) += n;
  }
  for (const auto& [p, n] : tally.pairs) {
    camp.pair[p].at(from) -= n;
    camp.pair[p].at(to) += n;
  }
  for (const auto& [cell, n] : tally.cells) {
    camp.cell[cell].at(from) -= n;
    camp.cell[cell].at(to) += n;
  }
  c.state = to;
  camp.record.updated_at = now;
  if (to == CandidateState::kPending) {
    queue_.insert(KeyOf(camp.record.priority, c));
  }
  if (IsFinal(to)) c.finished_at = now;
}

void MemoryStore::MaybeFinish(CampaignData& c, absl::Time now) {
  CampaignRecord& r = c.record;
  if (IsFinal(r.state)) return;
  if (r.issued == r.budget && r.counts.pending == 0 && r.counts.leased == 0) {
    r.state = CampaignState::kDone;
    r.finished_at = now;
    r.updated_at = now;
  }
}

absl::StatusOr<CampaignRecord> MemoryStore::CancelCampaign(int64_t campaign_id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = campaigns_.find(campaign_id);
  if (it == campaigns_.end()) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  CampaignRecord& r = it->second.record;
  if (IsFinal(r.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("campaign ", campaign_id, " is already ", CampaignStateName(r.state)));
  }
  for (auto& [id, c] : candidates_) {
    if (c.campaign_id != campaign_id) continue;
    if (c.state == CandidateState::kPending) {
      queue_.erase(KeyOf(r.priority, c));
      Transition(c, CandidateState::kCancelled, now);
    } else if (c.state == CandidateState::kLeased) {
      c.cancel_requested = true;
    }
  }
  r.state = CampaignState::kCancelled;
  r.finished_at = now;
  r.updated_at = now;
  return r;
}

absl::StatusOr<MemoryStore::CampaignData*> MemoryStore::OpenCampaign(int64_t campaign_id,
                                                                     const char* action) {
  auto it = campaigns_.find(campaign_id);
  if (it == campaigns_.end()) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  const CampaignState state = it->second.record.state;
  if (IsFinal(state)) {
    return absl::FailedPreconditionError(absl::StrCat("campaign ", campaign_id, " is ",
                                                      CampaignStateName(state), "; cannot ", action,
                                                      " a finished campaign"));
  }
  return &it->second;
}

absl::StatusOr<CampaignRecord> MemoryStore::SetCampaignPaused(int64_t campaign_id, bool paused,
                                                              absl::Time now) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CampaignData * camp,
                           OpenCampaign(campaign_id, paused ? "pause" : "resume"));
  CampaignRecord& r = camp->record;
  const CampaignState to = paused ? CampaignState::kPaused : CampaignState::kRunning;
  if (r.state != to) {
    r.state = to;
    r.updated_at = now;
  }
  return r;
}

absl::StatusOr<CampaignRecord> MemoryStore::UpdateCampaign(int64_t campaign_id,
                                                           const CampaignUpdate& update,
                                                           absl::Time now) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CampaignData * camp, OpenCampaign(campaign_id, "update"));
  CampaignRecord& r = camp->record;
  QUARTET_RETURN_IF_ERROR(CheckBudgetUpdate(campaign_id, update, r.issued));
  if (update.priority.has_value() && *update.priority != r.priority) {
    std::vector<int64_t> queued;
    for (auto q = queue_.begin(); q != queue_.end();) {
      if (candidates_.at(std::get<2>(*q)).campaign_id == campaign_id) {
        queued.push_back(std::get<2>(*q));
        q = queue_.erase(q);
      } else {
        ++q;
      }
    }
    r.priority = *update.priority;
    r.config.set_priority(r.priority);
    for (int64_t id : queued) queue_.insert(KeyOf(r.priority, candidates_.at(id)));
  }
  if (update.budget.has_value()) {
    r.budget = *update.budget;
    r.config.set_budget(r.budget);
  }
  r.updated_at = now;
  MaybeFinish(*camp, now);
  return r;
}

absl::Status MemoryStore::InsertCandidates(int64_t campaign_id,
                                           const std::vector<NewCandidate>& candidates,
                                           absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = campaigns_.find(campaign_id);
  if (it == campaigns_.end()) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  CampaignData& camp = it->second;
  CampaignRecord& r = camp.record;
  if (IsFinal(r.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("campaign ", campaign_id, " is ", CampaignStateName(r.state)));
  }
  if (r.issued + static_cast<int64_t>(candidates.size()) > r.budget) {
    return absl::FailedPreconditionError(absl::StrCat(
        "campaign ", campaign_id, ": issuing ", candidates.size(),
        " more candidates would exceed the budget of ", r.budget, " (", r.issued, " issued)"));
  }
  std::set<std::pair<uint64_t, int>> batch;
  for (const NewCandidate& nc : candidates) {
    std::pair<uint64_t, int> key{nc.rank, nc.repeat};
    if (camp.keys.count(key) || !batch.insert(key).second) {
      return absl::AlreadyExistsError(absl::StrCat("campaign ", campaign_id, ": combination rank ",
                                                   nc.rank, " repeat ", nc.repeat,
                                                   " already issued"));
    }
    for (const std::string& f : nc.families) {
      if (!camp.family.count(f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("families: '", f, "' is not in the pool of campaign ", campaign_id));
      }
    }
    QUARTET_RETURN_IF_ERROR(CheckAxisLevels(nc, camp.level_counts));
  }
  for (const NewCandidate& nc : candidates) {
    CandidateRecord c;
    c.id = next_candidate_id_++;
    c.campaign_id = campaign_id;
    c.rank = nc.rank;
    c.repeat = nc.repeat;
    c.families = nc.families;
    c.est_memory_bytes = nc.est_memory_bytes;
    c.levels = nc.levels;
    c.axis_values = nc.axis_values;
    c.state = CandidateState::kPending;
    c.created_at = now;
    camp.keys.insert({nc.rank, nc.repeat});
    r.counts.pending++;
    FamilyTally tally;
    tally.AddCandidate(c.families, c.levels, 1, /*with_triples=*/true);
    for (const auto& [f, n] : tally.families) camp.family[f].pending += n;
    for (const auto& [p, n] : tally.pairs) camp.pair[p].pending += n;
    for (const auto& [t, n] : tally.triples) camp.triple[t] += n;
    for (const auto& [cell, n] : tally.cells) camp.cell[cell].pending += n;
    queue_.insert(KeyOf(r.priority, c));
    candidates_.emplace(c.id, std::move(c));
  }
  r.issued += static_cast<int64_t>(candidates.size());
  r.updated_at = now;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LeaseGrant>> MemoryStore::LeaseNext(const std::string& worker_id,
                                                                 absl::Time now,
                                                                 absl::Duration lease) {
  absl::MutexLock lock(&mu_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("worker '", worker_id, "' is not registered; call RegisterWorker first"));
  }
  w->second.last_seen_at = now;
  for (auto q = queue_.begin(); q != queue_.end(); ++q) {
    CandidateRecord& c = candidates_.at(std::get<2>(*q));
    CampaignData& camp = campaigns_.at(c.campaign_id);
    if (camp.record.state != CampaignState::kRunning) continue;
    if (!WorkerCanTake(w->second, c.families, c.est_memory_bytes)) continue;
    queue_.erase(q);
    Transition(c, CandidateState::kLeased, now);
    c.attempt++;
    c.lease_token = NewLeaseToken(c.lease_token);
    c.worker_id = worker_id;
    c.lease_deadline = now + lease;
    c.cancel_requested = false;
    if (c.started_at == absl::InfinitePast()) c.started_at = now;
    return LeaseGrant{c, camp.record.config};
  }
  return std::optional<LeaseGrant>();
}

absl::StatusOr<MemoryStore::CheckedLease> MemoryStore::CheckLease(int64_t candidate_id,
                                                                  int64_t token,
                                                                  const std::string& worker_id,
                                                                  LeaseUse use, absl::Time now) {
  auto it = candidates_.find(candidate_id);
  if (it == candidates_.end()) {
    return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
  }
  CandidateRecord& c = it->second;
  QUARTET_ASSIGN_OR_RETURN(LeaseVerdict verdict, JudgeLease(candidate_id,
                                                            {c.state, c.lease_token, c.worker_id,
                                                             c.error_class, c.completed_token},
                                                            token, worker_id, use));
  if (verdict == LeaseVerdict::kRevive) {
    CampaignData& camp = campaigns_.at(c.campaign_id);
    if (c.state == CandidateState::kPending) queue_.erase(KeyOf(camp.record.priority, c));
    if (camp.record.state == CampaignState::kDone) camp.record.state = CampaignState::kRunning;
    c.error_class = quartet::v1::ERROR_CLASS_UNSPECIFIED;
    c.error_message.clear();
    c.finished_at = absl::InfinitePast();
    Transition(c, CandidateState::kLeased, now);
  }
  return CheckedLease{&c, verdict};
}

int64_t MemoryStore::StoreMetrics(const CandidateRecord& c,
                                  const std::vector<MetricRecord>& points) {
  int64_t added = 0;
  for (MetricRecord p : points) {
    p.candidate_id = c.id;
    p.attempt = c.attempt;
    auto key = std::make_tuple(c.id, p.attempt, p.step, p.name);
    if (metrics_.emplace(key, p).second) ++added;
  }
  return added;
}

absl::StatusOr<LeaseRenewal> MemoryStore::RenewLease(int64_t candidate_id, int64_t token,
                                                     const std::string& worker_id, absl::Time now,
                                                     absl::Duration lease) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CheckedLease c,
                           CheckLease(candidate_id, token, worker_id, LeaseUse::kRenew, now));
  c.candidate->lease_deadline = now + lease;
  auto w = workers_.find(worker_id);
  if (w != workers_.end()) w->second.last_seen_at = now;
  const bool cancelled =
      campaigns_.at(c.candidate->campaign_id).record.state == CampaignState::kCancelled;
  return LeaseRenewal{c.candidate->lease_deadline, c.candidate->cancel_requested || cancelled};
}

absl::StatusOr<int64_t> MemoryStore::AppendMetrics(int64_t candidate_id, int64_t token,
                                                   const std::string& worker_id,
                                                   const std::vector<MetricRecord>& points) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(
      CheckedLease c, CheckLease(candidate_id, token, worker_id, LeaseUse::kMetrics, absl::Now()));
  return StoreMetrics(*c.candidate, points);
}

void MemoryStore::StoreCompletion(CandidateRecord& cand, const quartet::v1::Result& result,
                                  const std::vector<MetricRecord>& final_metrics, CandidateState to,
                                  int64_t token, absl::Time now) {
  StoreMetrics(cand, final_metrics);
  Transition(cand, to, now);
  cand.result = result;
  cand.test_accuracy = result.test_accuracy();
  cand.cancel_requested = false;
  cand.completed_token = token;
  CampaignData& camp = campaigns_.at(cand.campaign_id);
  if (camp.record.best_candidate_id == 0 || result.test_accuracy() > camp.record.best_accuracy) {
    camp.record.best_accuracy = result.test_accuracy();
    camp.record.best_candidate_id = cand.id;
  }
  camp.record.succeeded_seconds += result.wall_seconds();
  camp.record.checkpoint_failures += CheckpointFailures(result);
  const std::pair<ArtifactKind, const quartet::v1::Artifact*> reported[] = {
      {ArtifactKind::kCheckpoint, result.has_checkpoint() ? &result.checkpoint() : nullptr},
      {ArtifactKind::kExportedModel,
       result.has_exported_model() ? &result.exported_model() : nullptr}};
  for (const auto& [kind, artifact] : reported) {
    if (artifact == nullptr) continue;
    ArtifactRecord a{next_artifact_id_++, cand.id, cand.campaign_id, kind, *artifact, now};
    artifacts_.emplace(a.id, a);
    (kind == ArtifactKind::kCheckpoint ? cand.checkpoint : cand.exported_model) = *artifact;
  }
}

absl::Status MemoryStore::CompleteCandidate(int64_t candidate_id, int64_t token,
                                            const std::string& worker_id,
                                            const quartet::v1::Result& result,
                                            const std::vector<MetricRecord>& final_metrics,
                                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CheckedLease c,
                           CheckLease(candidate_id, token, worker_id, LeaseUse::kComplete, now));
  if (c.verdict == LeaseVerdict::kRepeat) return absl::OkStatus();
  StoreCompletion(*c.candidate, result, final_metrics, CandidateState::kSucceeded, token, now);
  MaybeFinish(campaigns_.at(c.candidate->campaign_id), now);
  return absl::OkStatus();
}

absl::Status MemoryStore::CompleteRung(int64_t candidate_id, int64_t token,
                                       const std::string& worker_id,
                                       const quartet::v1::Result& result,
                                       const std::vector<MetricRecord>& final_metrics,
                                       const RungCompletion& plan, absl::Time now) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CheckedLease c,
                           CheckLease(candidate_id, token, worker_id, LeaseUse::kComplete, now));
  if (c.verdict == LeaseVerdict::kRepeat) return absl::OkStatus();
  CandidateRecord& cand = *c.candidate;
  for (const Promotion& p : plan.promotions) {
    auto it = candidates_.find(p.candidate_id);
    const bool self = p.candidate_id == candidate_id;
    if (it == candidates_.end() || it->second.campaign_id != cand.campaign_id ||
        (!self && it->second.state != CandidateState::kStoppedEarly)) {
      return PromotionRefused(p.candidate_id, cand.campaign_id);
    }
  }
  StoreCompletion(cand, result, final_metrics,
                  plan.last_rung ? CandidateState::kSucceeded : CandidateState::kStoppedEarly,
                  token, now);
  cand.rungs.push_back(NewRungResult(plan, result, now));
  for (const Promotion& p : plan.promotions) {
    CandidateRecord& promoted = candidates_.at(p.candidate_id);
    MarkPromoted(promoted.rungs, p);
    promoted.rung = p.to_rung;
    promoted.error_class = quartet::v1::ERROR_CLASS_UNSPECIFIED;
    promoted.error_message.clear();
    Transition(promoted, CandidateState::kPending, now);
    promoted.finished_at = absl::InfinitePast();
  }
  MaybeFinish(campaigns_.at(cand.campaign_id), now);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ArtifactRecord>> MemoryStore::ListArtifacts(int64_t campaign_id) {
  absl::MutexLock lock(&mu_);
  if (!campaigns_.count(campaign_id)) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  std::vector<ArtifactRecord> out;
  for (const auto& [id, a] : artifacts_) {
    if (a.campaign_id == campaign_id) out.push_back(a);
  }
  return out;
}

absl::Status MemoryStore::MarkArtifactsDeleted(const std::vector<int64_t>& artifact_ids,
                                               absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (int64_t id : artifact_ids) {
    auto it = artifacts_.find(id);
    if (it == artifacts_.end()) continue;
    CandidateRecord& c = candidates_.at(it->second.candidate_id);
    for (auto* current : {&c.checkpoint, &c.exported_model}) {
      if (current->has_value() && (*current)->uri() == it->second.artifact.uri()) current->reset();
    }
    artifacts_.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<CandidateState> MemoryStore::FailCandidate(int64_t candidate_id, int64_t token,
                                                          const std::string& worker_id,
                                                          quartet::v1::ErrorClass error_class,
                                                          const std::string& message,
                                                          bool retryable, absl::Time now) {
  absl::MutexLock lock(&mu_);
  QUARTET_ASSIGN_OR_RETURN(CheckedLease c,
                           CheckLease(candidate_id, token, worker_id, LeaseUse::kFail, now));
  CandidateRecord& cand = *c.candidate;
  if (c.verdict == LeaseVerdict::kRepeat) return cand.state;
  CampaignData& camp = campaigns_.at(cand.campaign_id);
  const bool preempted = error_class == quartet::v1::ERROR_CLASS_PREEMPTED;
  if (preempted) ++cand.preemptions;
  const CandidateState to =
      AfterLeaseEnds(camp.record.state, retryable, preempted, cand.attempt, cand.preemptions,
                     camp.record.max_attempts, camp.record.max_preemptions);
  cand.error_class = error_class;
  cand.error_message = message;
  cand.cancel_requested = false;
  Transition(cand, to, now);
  MaybeFinish(camp, now);
  return to;
}

absl::StatusOr<std::vector<ExpiredLease>> MemoryStore::ExpireLeases(absl::Time now) {
  absl::MutexLock lock(&mu_);
  std::vector<ExpiredLease> out;
  for (auto& [id, c] : candidates_) {
    if (c.state != CandidateState::kLeased || c.lease_deadline >= now) continue;
    CampaignData& camp = campaigns_.at(c.campaign_id);
    const CandidateState to =
        AfterLeaseEnds(camp.record.state, /*retryable=*/true, /*preempted=*/false, c.attempt,
                       c.preemptions, camp.record.max_attempts, camp.record.max_preemptions);
    c.error_class = quartet::v1::ERROR_CLASS_LOST;
    c.error_message = absl::StrCat("lease expired: worker '", c.worker_id,
                                   "' stopped heartbeating (attempt ", c.attempt, ")");
    c.cancel_requested = false;
    Transition(c, to, now);
    MaybeFinish(camp, now);
    out.push_back({c.id, c.campaign_id, c.worker_id, c.attempt, to});
  }
  return out;
}

absl::StatusOr<CandidateRecord> MemoryStore::GetCandidate(int64_t candidate_id) {
  absl::MutexLock lock(&mu_);
  auto it = candidates_.find(candidate_id);
  if (it == candidates_.end()) {
    return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
  }
  return it->second;
}

absl::StatusOr<std::vector<CandidateRecord>> MemoryStore::ListCandidates(
    const CandidateQuery& query) {
  absl::MutexLock lock(&mu_);
  if (query.campaign_id != 0 && !campaigns_.count(query.campaign_id)) {
    return absl::NotFoundError(absl::StrCat("campaign ", query.campaign_id, " not found"));
  }
  std::vector<CandidateRecord> out;
  for (const auto& [id, c] : candidates_) {
    if (query.campaign_id != 0 && c.campaign_id != query.campaign_id) continue;
    if (c.id <= query.after_id) continue;
    if (!query.states.empty() &&
        std::find(query.states.begin(), query.states.end(), c.state) == query.states.end()) {
      continue;
    }
    out.push_back(c);
    if (query.without_results) out.back().result.reset();
  }
  if (query.by_accuracy) {
    std::stable_sort(out.begin(), out.end(),
                     [](const CandidateRecord& a, const CandidateRecord& b) {
                       return a.test_accuracy > b.test_accuracy;
                     });
  }
  if (query.limit > 0 && static_cast<int64_t>(out.size()) > query.limit) out.resize(query.limit);
  return out;
}

absl::StatusOr<std::vector<MetricRecord>> MemoryStore::GetMetrics(int64_t candidate_id) {
  absl::MutexLock lock(&mu_);
  if (!candidates_.count(candidate_id)) {
    return absl::NotFoundError(absl::StrCat("candidate ", candidate_id, " not found"));
  }
  std::vector<MetricRecord> out;
  for (auto it = metrics_.lower_bound({candidate_id, 0, INT64_MIN, ""});
       it != metrics_.end() && std::get<0>(it->first) == candidate_id; ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<CoverageCounters> MemoryStore::GetCoverage(int64_t campaign_id) {
  absl::MutexLock lock(&mu_);
  auto it = campaigns_.find(campaign_id);
  if (it == campaigns_.end()) {
    return absl::NotFoundError(absl::StrCat("campaign ", campaign_id, " not found"));
  }
  const CampaignData& camp = it->second;
  const auto& pool = camp.record.config.pool();
  CoverageCounters out;
  for (int i = 0; i < pool.size(); ++i) {
    out.families.push_back({pool[i], camp.family.at(pool[i])});
    for (int j = i + 1; j < pool.size(); ++j) {
      out.pairs.push_back({pool[i], pool[j], camp.pair.at({pool[i], pool[j]})});
    }
  }
  for (const auto& [key, n] : camp.triple) {
    out.triples.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), n});
  }
  for (size_t a = 0; a < camp.level_counts.size(); ++a) {
    const int axis = static_cast<int>(a);
    for (int l = 0; l < camp.level_counts[a]; ++l) {
      out.levels.push_back({axis, l, "", camp.cell.at({axis, l, ""})});
      for (const std::string& f : pool)
        out.levels.push_back({axis, l, f, camp.cell.at({axis, l, f})});
    }
  }
  return out;
}

absl::StatusOr<WorkerRecord> MemoryStore::RegisterWorker(const WorkerRecord& worker,
                                                         absl::Time now) {
  absl::MutexLock lock(&mu_);
  WorkerRecord w = worker;
  if (w.id.empty()) w.id = absl::StrCat("worker-", next_worker_++);
  auto it = workers_.find(w.id);
  w.registered_at = it == workers_.end() ? now : it->second.registered_at;
  w.draining = it != workers_.end() && it->second.draining;
  w.last_seen_at = now;
  workers_[w.id] = w;
  return w;
}

absl::StatusOr<WorkerRecord> MemoryStore::GetWorker(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' not found"));
  }
  return it->second;
}

absl::StatusOr<std::vector<WorkerActivity>> MemoryStore::ListWorkers() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, WorkerActivity> out;
  for (const auto& [id, w] : workers_) out[id].worker = w;
  for (const auto& [id, c] : candidates_) {
    auto it = out.find(c.worker_id);
    if (it == out.end()) continue;
    if (c.state == CandidateState::kLeased) {
      int epoch = 0;
      for (auto m = metrics_.lower_bound({c.id, c.attempt, INT64_MIN, ""});
           m != metrics_.end() && std::get<0>(m->first) == c.id &&
           std::get<1>(m->first) == c.attempt;
           ++m) {
        epoch = std::max(epoch, m->second.epoch);
      }
      it->second.leased.push_back({c, epoch});
    }
    if (c.state == CandidateState::kSucceeded) it->second.succeeded++;
    if (c.state == CandidateState::kFailed) it->second.failed++;
  }
  std::vector<WorkerActivity> list;
  for (auto& [id, a] : out) list.push_back(std::move(a));
  return list;
}

absl::StatusOr<WorkerRecord> MemoryStore::SetWorkerDraining(const std::string& worker_id,
                                                            bool draining) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' not found"));
  }
  it->second.draining = draining;
  return it->second;
}

}  // namespace quartet::coordinator
