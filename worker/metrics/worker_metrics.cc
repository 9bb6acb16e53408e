#include "worker/metrics/worker_metrics.h"

#include <string>

#include "absl/strings/match.h"

namespace quartet::worker {
namespace {

constexpr double kMillisPerSecond = 1000.0;

constexpr char kSlotLabel[] = "slot";

prometheus::Labels SlotLabels(const std::string& slot) {
  if (slot.empty()) return {};
  return {{kSlotLabel, slot}};
}

// The gauge of this slot in the family `name` (registered once per registry; the slots of one
// worker share the family, a series each).
prometheus::Gauge& AddGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help, const std::string& slot) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(SlotLabels(slot));
}

}  // namespace

WorkerMetrics::WorkerMetrics(std::shared_ptr<prometheus::Registry> registry,
                             const std::string& slot)
    : registry_(registry != nullptr ? std::move(registry)
                                    : std::make_shared<prometheus::Registry>()),
      slot_(slot),
      current_candidate_(AddGauge(*registry_, "quartet_worker_current_candidate",
                                  "Candidate being trained (0 when idle)", slot)),
      samples_per_second_(AddGauge(*registry_, "quartet_worker_samples_per_second",
                                   "Training samples per second in the last finished epoch", slot)),
      step_seconds_(AddGauge(*registry_, "quartet_worker_step_seconds",
                             "Seconds per optimiser step between the last two per-step points",
                             slot)),
      peak_memory_(AddGauge(*registry_, "quartet_worker_device_memory_peak_bytes",
                            "Peak device memory in the last finished epoch", slot)),
      step_(AddGauge(*registry_, "quartet_worker_steps", "Optimiser step of the running candidate",
                     slot)),
      candidates_(prometheus::BuildCounter()
                      .Name("quartet_worker_candidates_total")
                      .Help("Candidates finished, by outcome")
                      .Register(*registry_)) {}

void WorkerMetrics::CandidateStarted(int64_t candidate_id) {
  current_candidate_.Set(static_cast<double>(candidate_id));
  step_.Set(0);
  absl::MutexLock lock(&mu_);
  last_step_ = 0;
  last_step_ms_ = 0;
}

void WorkerMetrics::Observe(const std::vector<quartet::v1::MetricPoint>& points) {
  for (const quartet::v1::MetricPoint& p : points) {
    if (p.name() == kSamplesPerSecond) {
      samples_per_second_.Set(p.value());
    } else if (p.name() == kPeakMemoryBytes) {
      peak_memory_.Set(p.value());
    } else if (absl::StartsWith(p.name(), kStepPrefix)) {
      step_.Set(static_cast<double>(p.step()));
      absl::MutexLock lock(&mu_);
      if (last_step_ > 0 && p.step() > last_step_ && p.time_unix_ms() >= last_step_ms_) {
        step_seconds_.Set((p.time_unix_ms() - last_step_ms_) / kMillisPerSecond /
                          static_cast<double>(p.step() - last_step_));
      }
      if (p.step() > last_step_) {
        last_step_ = p.step();
        last_step_ms_ = p.time_unix_ms();
      }
    }
  }
}

void WorkerMetrics::CandidateFinished(absl::string_view outcome) {
  current_candidate_.Set(0);
  prometheus::Labels labels = SlotLabels(slot_);
  labels.emplace("outcome", std::string(outcome));
  candidates_.Add(labels).Increment();
}

}  // namespace quartet::worker
