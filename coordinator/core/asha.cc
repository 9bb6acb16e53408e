#include "coordinator/core/asha.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quartet::coordinator {
namespace {

bool Open(CandidateState s) {
  return s == CandidateState::kPending || s == CandidateState::kLeased;
}

}  // namespace

FidelitySettings SettingsOf(const quartet::v1::MultiFidelity& f) {
  FidelitySettings s;
  s.rung_epochs.assign(f.rung_epochs().begin(), f.rung_epochs().end());
  s.eta = f.eta();
  s.guard = f.coverage_guard();
  s.guard_min = f.guard_min();
  s.budget_epochs = f.budget_epochs();
  return s;
}

Asha::Asha(FidelitySettings settings) : settings_(std::move(settings)) {}

void Asha::Track(const CandidateRecord& c) {
  auto [it, inserted] = entries_.try_emplace(c.id);
  Entry& e = it->second;
  if (!inserted) promoted_epochs_ -= epochs_at(e.rung) - epochs_at(0);
  e.families = c.families;
  e.rung = std::clamp(c.rung, 0, last_rung());
  e.state = c.state;
  e.accuracy.clear();
  e.promoted.clear();
  e.guard.clear();
  for (const quartet::v1::RungResult& r : c.rungs) {
    if (r.rung() < 0 || r.rung() > last_rung()) continue;
    const size_t at = static_cast<size_t>(r.rung());
    if (e.accuracy.size() <= at) {
      e.accuracy.resize(at + 1, 0);
      e.promoted.resize(at + 1, false);
      e.guard.resize(at + 1, false);
    }
    e.accuracy[at] = r.test_accuracy();
    e.promoted[at] = r.promoted();
    e.guard[at] = r.guard();
  }
  promoted_epochs_ += epochs_at(e.rung) - epochs_at(0);
}

int64_t Asha::NewCandidatesAffordable() const {
  const int64_t left = settings_.budget_epochs - epochs_committed();
  return left <= 0 ? 0 : left / epochs_at(0);
}

int64_t Asha::PromotionCost(int rung) const { return epochs_at(rung + 1) - epochs_at(rung); }

std::vector<std::pair<double, int64_t>> Asha::Ranked(int rung, int64_t extra_id,
                                                     double extra_accuracy) const {
  std::vector<std::pair<double, int64_t>> out;
  for (const auto& [id, e] : entries_) {
    if (id == extra_id) continue;
    if (static_cast<int>(e.accuracy.size()) > rung) out.emplace_back(e.accuracy[rung], id);
  }
  if (extra_id != 0) out.emplace_back(extra_accuracy, extra_id);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  return out;
}

std::vector<std::string> Asha::GroupKeys(const std::vector<std::string>& families) {
  std::vector<std::string> keys(families.begin(), families.end());
  for (size_t i = 0; i < families.size(); ++i) {
    for (size_t j = i + 1; j < families.size(); ++j) {
      keys.push_back(absl::StrCat(families[i], "+", families[j]));
    }
  }
  return keys;
}

RungCompletion Asha::Decide(int64_t id, double accuracy) const {
  const Entry& e = entries_.at(id);
  RungCompletion plan;
  plan.rung = e.rung;
  plan.epochs = epochs_at(e.rung);
  plan.last_rung = e.rung == last_rung();
  if (plan.last_rung) return plan;
  int64_t budget_left = settings_.budget_epochs - epochs_committed();
  const auto ranked = Ranked(e.rung, id, accuracy);
  const size_t quota = ranked.size() / static_cast<size_t>(settings_.eta);
  for (size_t i = 0; i < quota; ++i) {
    const int64_t cid = ranked[i].second;
    if (cid != id) {
      const Entry& other = entries_.at(cid);
      if (other.state != CandidateState::kStoppedEarly || other.rung != e.rung) continue;
    }
    if (budget_left < PromotionCost(e.rung)) break;
    budget_left -= PromotionCost(e.rung);
    plan.promotions.push_back({cid, e.rung + 1, false});
  }
  if (e.rung == 0 && settings_.guard) GuardPromotions(id, accuracy, &budget_left, &plan.promotions);
  return plan;
}

void Asha::GuardPromotions(int64_t id, double accuracy, int64_t* budget_left,
                           std::vector<Promotion>* promotions) const {
  auto planned = [&](int64_t cid) {
    return std::any_of(promotions->begin(), promotions->end(),
                       [cid](const Promotion& p) { return p.candidate_id == cid; });
  };
  for (const std::string& key : GroupKeys(entries_.at(id).families)) {
    int64_t members = 0, promoted = 0, best_id = 0;
    double best = -1;
    for (const auto& [cid, e] : entries_) {
      const bool self = cid == id;
      if (!self && e.accuracy.empty()) continue;
      const auto keys = GroupKeys(e.families);
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
      ++members;
      const bool up = (!self && e.promoted[0]) || planned(cid);
      if (up) ++promoted;
      const bool pickable = self || (e.state == CandidateState::kStoppedEarly && e.rung == 0);
      const double acc = self ? accuracy : e.accuracy[0];
      if (!up && pickable && acc > best) {
        best = acc;
        best_id = cid;
      }
    }
    if (members < settings_.eta || promoted >= settings_.guard_min || best_id == 0) continue;
    if (*budget_left < PromotionCost(0)) return;
    *budget_left -= PromotionCost(0);
    promotions->push_back({best_id, 1, true});
  }
}

void Asha::Apply(int64_t id, double accuracy, const RungCompletion& plan) {
  Entry& e = entries_.at(id);
  const size_t at = static_cast<size_t>(plan.rung);
  if (e.accuracy.size() <= at) {
    e.accuracy.resize(at + 1, 0);
    e.promoted.resize(at + 1, false);
    e.guard.resize(at + 1, false);
  }
  e.accuracy[at] = accuracy;
  e.state = plan.last_rung ? CandidateState::kSucceeded : CandidateState::kStoppedEarly;
  for (const Promotion& p : plan.promotions) {
    Entry& up = entries_.at(p.candidate_id);
    const size_t below = static_cast<size_t>(p.to_rung - 1);
    if (up.promoted.size() <= below) {
      up.promoted.resize(below + 1, false);
      up.guard.resize(below + 1, false);
    }
    up.promoted[below] = true;
    up.guard[below] = p.guard;
    promoted_epochs_ += epochs_at(p.to_rung) - epochs_at(up.rung);
    up.rung = p.to_rung;
    up.state = CandidateState::kPending;
  }
}

bool Asha::MayStillPromote(int64_t id) const {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.state != CandidateState::kStoppedEarly) return false;
  const Entry& e = it->second;
  const auto ranked = Ranked(e.rung);
  const size_t quota = ranked.size() / static_cast<size_t>(settings_.eta);
  for (size_t i = 0; i < ranked.size() && i < quota + static_cast<size_t>(settings_.eta); ++i) {
    if (ranked[i].second == id) return true;
  }
  if (e.rung != 0 || !settings_.guard) return false;
  // The best candidate not promoted of a family or pair the guard has not served yet.
  for (const std::string& key : GroupKeys(e.families)) {
    int64_t promoted = 0, best_id = 0;
    double best = -1;
    for (const auto& [cid, other] : entries_) {
      if (other.accuracy.empty()) continue;
      const auto keys = GroupKeys(other.families);
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;
      if (other.promoted[0]) {
        ++promoted;
      } else if (other.state == CandidateState::kStoppedEarly && other.accuracy[0] > best) {
        best = other.accuracy[0];
        best_id = cid;
      }
    }
    if (promoted < settings_.guard_min && best_id == id) return true;
  }
  return false;
}

std::vector<RungStats> Asha::Stats() const {
  std::vector<RungStats> out(settings_.rung_epochs.size());
  std::vector<std::set<std::string>> families(out.size());
  for (const auto& [id, e] : entries_) {
    if (Open(e.state)) out[e.rung].open++;
    for (size_t r = 0; r < e.accuracy.size(); ++r) {
      RungStats& s = out[r];
      s.completed++;
      s.mean_accuracy += e.accuracy[r];
      s.best_accuracy = std::max(s.best_accuracy, e.accuracy[r]);
      if (e.promoted[r]) s.promoted++;
      if (!e.promoted[r] && e.state == CandidateState::kStoppedEarly &&
          e.rung == static_cast<int>(r)) {
        s.stopped_early++;
      }
      families[r].insert(e.families.begin(), e.families.end());
    }
  }
  for (size_t r = 0; r < out.size(); ++r) {
    if (out[r].completed > 0) out[r].mean_accuracy /= static_cast<double>(out[r].completed);
    out[r].families_completed = static_cast<int>(families[r].size());
  }
  return out;
}

std::map<std::string, Asha::RungTally> Asha::CompletedAtRung() const {
  const size_t rungs = settings_.rung_epochs.size();
  std::map<std::string, RungTally> out;
  for (const auto& [id, e] : entries_) {
    for (const std::string& key : GroupKeys(e.families)) {
      RungTally& t = out[key];
      t.completed.resize(rungs, 0);
      t.mean_accuracy.resize(rungs, 0);
      for (size_t r = 0; r < e.accuracy.size(); ++r) {
        t.completed[r]++;
        t.mean_accuracy[r] += e.accuracy[r];
      }
    }
  }
  for (auto& [key, t] : out) {
    for (size_t r = 0; r < rungs; ++r) {
      if (t.completed[r] > 0) t.mean_accuracy[r] /= static_cast<double>(t.completed[r]);
    }
  }
  return out;
}

int64_t Asha::guard_promotions() const {
  int64_t n = 0;
  for (const auto& [id, e] : entries_) {
    for (size_t r = 0; r < e.guard.size(); ++r) n += e.guard[r] && e.promoted[r] ? 1 : 0;
  }
  return n;
}

std::vector<std::string> Asha::GuardKept() const {
  // Per family or pair: promotions past rung 0 by the top rule and by the guard.
  std::map<std::string, std::pair<int64_t, int64_t>> by_key;
  for (const auto& [id, e] : entries_) {
    if (e.promoted.empty() || !e.promoted[0]) continue;
    for (const std::string& key : GroupKeys(e.families)) {
      (e.guard[0] ? by_key[key].second : by_key[key].first)++;
    }
  }
  std::vector<std::string> out;
  for (const auto& [key, n] : by_key) {
    if (n.first == 0 && n.second > 0) out.push_back(key);
  }
  return out;
}

}  // namespace quartet::coordinator
