// What the core reports as it happens, for an observer such as the coordinator's Prometheus
// metrics. The core calls these outside every lock it holds, after the change is stored; an
// implementation must be thread-safe and quick (no I/O, no calls back into the core).
#ifndef QUARTET_COORDINATOR_CORE_CORE_EVENTS_H_
#define QUARTET_COORDINATOR_CORE_CORE_EVENTS_H_

#include <cstdint>
#include <string>

namespace quartet::coordinator {

class CoreEvents {
 public:
  virtual ~CoreEvents() = default;

  // LeaseCandidate gave `worker_id` a candidate of `campaign_id`.
  virtual void LeaseGranted(int64_t campaign_id) = 0;
  // LeaseCandidate had nothing for the worker now (no pending candidate it can take); the worker
  // was told to ask again later.
  virtual void LeaseRefused() = 0;
  // The expiry sweep ended a lease of `campaign_id` that was not renewed in time.
  virtual void LeaseExpired(int64_t campaign_id) = 0;
  // A worker call passed the identity check (register, lease, heartbeat, metrics, report).
  virtual void WorkerSeen(const std::string& worker_id) = 0;
};

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_CORE_EVENTS_H_
