// A worker's Prometheus metrics, fed by its daemon from the trainer's metric points; served on the
// worker's --metrics_listen by common/metrics_server.h. No LibTorch, no gRPC.
//   quartet_worker_current_candidate          the candidate being trained (0 when idle)
//   quartet_worker_samples_per_second         training throughput of the last finished epoch
//   quartet_worker_step_seconds               seconds per optimiser step, between the last two
//                                             per-step points of the running candidate
//   quartet_worker_device_memory_peak_bytes   peak device memory of the last finished epoch
//   quartet_worker_steps                      optimiser step of the running candidate
//   quartet_worker_candidates_total{outcome}  candidates finished: succeeded, failed, handed_back
// With slots (quartet-worker --slots), each slot has a WorkerMetrics of its own on one shared
// registry, and every series carries the label slot="<k>".
// Thread-safe.
#ifndef QUARTET_WORKER_METRICS_WORKER_METRICS_H_
#define QUARTET_WORKER_METRICS_WORKER_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::worker {

class WorkerMetrics {
 public:
  // Names of the trainer's metric points read here.
  static constexpr char kSamplesPerSecond[] = "samples_per_second";
  static constexpr char kPeakMemoryBytes[] = "peak_memory_bytes";
  static constexpr char kStepPrefix[] = "step/";

  // A registry of its own when `registry` is null; `slot` labels every series when not empty.
  explicit WorkerMetrics(std::shared_ptr<prometheus::Registry> registry = nullptr,
                         const std::string& slot = "");

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Training of `candidate_id` starts.
  void CandidateStarted(int64_t candidate_id);
  // Points the trainer measured for the running candidate.
  void Observe(const std::vector<quartet::v1::MetricPoint>& points);
  // The running candidate ended with `outcome` ("succeeded", "failed" or "handed_back").
  void CandidateFinished(absl::string_view outcome);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  const std::string slot_;
  prometheus::Gauge& current_candidate_;
  prometheus::Gauge& samples_per_second_;
  prometheus::Gauge& step_seconds_;
  prometheus::Gauge& peak_memory_;
  prometheus::Gauge& step_;
  prometheus::Family<prometheus::Counter>& candidates_;

  absl::Mutex mu_;
  // The last per-step point of the running candidate (step 0: none yet).
  int64_t last_step_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_step_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace quartet::worker

#endif  // QUARTET_WORKER_METRICS_WORKER_METRICS_H_
