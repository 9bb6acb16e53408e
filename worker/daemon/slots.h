// Slots: one worker process training up to N candidates at once (quartet-worker --slots).
//
// Each slot is a WorkerDaemon of its own on a thread of its own, with its own registration (worker
// id <label>-slot<k>), lease, heartbeat, metric stream, spool and trainer (its own thread team on
// CPU, its own CUDA stream on GPU; see train/torch_trainer.h). So every guarantee of a one-slot
// worker holds per slot: Stop() (SIGTERM) hands every slot's candidate back, a report that cannot
// be delivered is spooled in that slot's state directory, and a candidate that fails or throws
// fails only its slot's candidate. The slots share the coordinator connection, the datasets, the
// Prometheus registry (series labelled slot="<k>") and, under --max_candidates, one lease budget.
//
// State: slot 0 keeps the worker's state directory itself, slot k >= 1 its subdirectory
// slot-<k>/, so a worker that goes from one slot to several keeps its identity and spool. A
// slot-<k>/ left by an earlier run with more slots is not forgotten: its spooled reports are
// delivered under its identity at start (and the directory is removed once nothing is left in it).
//
// Thread safety: Run() on one thread; Stop() from any thread.
#ifndef QUARTET_WORKER_DAEMON_SLOTS_H_
#define QUARTET_WORKER_DAEMON_SLOTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/daemon/daemon.h"
#include "worker/metrics/worker_metrics.h"
#include "worker/train/trainer.h"

namespace quartet::worker::daemon {

// The most slots a worker runs.
inline constexpr int kMaxSlots = 64;

// What the operator asked for (0 = automatic) and what the machine has.
struct SlotRequest {
  int slots = 0;
  // Intra-op threads per slot.
  int threads = 0;
  int online_cpus = 1;
  // Host memory available for training (bytes; 0 = unknown): caps the automatic CPU slots.
  int64_t host_memory = 0;
  // Training on a GPU with `device_memory` bytes.
  bool gpu = false;
  int64_t device_memory = 0;
};

struct SlotPlan {
  int slots = 1;
  int threads_per_slot = 1;
  // The device memory each slot may use (told to the coordinator, which then leases it only
  // candidates whose memory estimate fits); 0 on CPU.
  int64_t memory_per_slot = 0;
};

// CPU: by default one slot per online CPU with one thread each, but no more than one per
// kAutoSlotHostMemory of available host memory (a MoE4 at 256 px needs about 7 GiB: set --slots
// for large inputs); with only --threads, as many slots as the CPUs hold; with only --slots, the
// CPUs shared among them. GPU: by default a slot per
// kAutoSlotDeviceMemory of usable device memory (at least 1, at most kMaxAutoGpuSlots), the usable
// memory shared evenly, the CPUs shared among the slots. INVALID_ARGUMENT for negative counts or
// more than kMaxSlots slots, naming the flag.
absl::StatusOr<SlotPlan> PlanSlots(const SlotRequest& request);

// Slot k's state directory (empty when state_dir is).
std::string SlotStateDir(const std::string& state_dir, int slot);
// The label slot k registers with: the worker's own (or, when empty, the host name) and
// "-slot<k>"; unchanged for a single slot.
std::string SlotLabel(const std::string& label, const std::string& host, int slot, int slots);

class WorkerSlots {
 public:
  // One entry per slot; pointers not owned, they must outlive Run(). `metrics` may be null.
  struct Slot {
    train::Trainer* trainer = nullptr;
    WorkerMetrics* metrics = nullptr;
  };

  // `base` is the options of a one-slot worker: its worker_id label, state_dir and max_candidates
  // are turned into each slot's own; plan.memory_per_slot becomes each slot's gpu_memory_bytes.
  WorkerSlots(const WorkerDaemon::Options& base, const SlotPlan& plan, std::vector<Slot> slots,
              CoordinatorClient* client, common::Clock* clock);
  ~WorkerSlots();

  // Delivers what slots of an earlier run left, and runs every slot until each stops (Stop(),
  // max_candidates, drain). OK when every slot stopped cleanly, else the first slot's error (the
  // other slots ran on regardless).
  absl::Status Run();
  void Stop();

  int size() const { return static_cast<int>(daemons_.size()); }
  const WorkerDaemon& daemon(int slot) const { return *daemons_[slot]; }
  // Candidates every slot finished together.
  int candidates_done() const;

 private:
  // Deliver-only daemons for slot directories beyond this run's slots.
  void AdoptLeftoverSlots(const WorkerDaemon::Options& base, train::Trainer* trainer);

  CoordinatorClient* const client_;
  common::Clock* const clock_;
  std::unique_ptr<LeaseBudget> budget_;
  std::vector<std::unique_ptr<WorkerDaemon>> daemons_;
  // Deliver-only daemons and the directories they empty.
  std::vector<std::unique_ptr<WorkerDaemon>> leftovers_;
  std::vector<std::string> leftover_dirs_;
};

}  // namespace quartet::worker::daemon

#endif  // QUARTET_WORKER_DAEMON_SLOTS_H_
