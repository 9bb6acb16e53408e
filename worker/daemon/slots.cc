#include "worker/daemon/slots.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace quartet::worker::daemon {
namespace {

namespace fs = std::filesystem;

// Share of a GPU's memory the slots divide among themselves (the rest is the CUDA context's and
// the allocator's slack).
constexpr double kUsableDeviceMemoryShare = 0.9;
// Automatic GPU slots: one per this much usable memory, at most kMaxAutoGpuSlots.
constexpr int64_t kAutoSlotDeviceMemory = int64_t{16} << 30;
constexpr int kMaxAutoGpuSlots = 8;
// Automatic CPU slots: at most one per this much available host memory.
constexpr int64_t kAutoSlotHostMemory = int64_t{4} << 30;
constexpr char kSlotDirPrefix[] = "slot-";
constexpr char kSlotLabelInfix[] = "-slot";
// Where a daemon keeps its undelivered reports (daemon.cc's spool directory).
constexpr char kSpoolDir[] = "spool";

absl::Status CheckCount(const char* flag, int value, int most) {
  if (value < 0 || value > most) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", value, ": must be in [0, ", most, "] (0 = automatic)"));
  }
  return absl::OkStatus();
}

// Slot numbers of the slot-<k>/ directories under state_dir.
std::vector<int> SlotDirsOnDisk(const std::string& state_dir) {
  std::vector<int> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(state_dir, ec)) {
    const std::string name = e.path().filename().string();
    absl::string_view rest = name;
    int k = 0;
    if (e.is_directory(ec) && absl::ConsumePrefix(&rest, kSlotDirPrefix) &&
        absl::SimpleAtoi(rest, &k) && k > 0) {
      out.push_back(k);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool SpoolEmpty(const std::string& dir) {
  std::error_code ec;
  const fs::path spool = fs::path(dir) / kSpoolDir;
  return !fs::exists(spool, ec) || fs::is_empty(spool, ec);
}

}  // namespace

absl::StatusOr<SlotPlan> PlanSlots(const SlotRequest& r) {
  if (auto s = CheckCount("slots", r.slots, kMaxSlots); !s.ok()) return s;
  if (auto s = CheckCount("threads", r.threads, std::max(r.online_cpus, 1) * kMaxSlots); !s.ok()) {
    return s;
  }
  const int cpus = std::max(1, r.online_cpus);
  SlotPlan plan;
  if (r.gpu) {
    const auto usable =
        static_cast<int64_t>(static_cast<double>(r.device_memory) * kUsableDeviceMemoryShare);
    plan.slots = r.slots > 0 ? r.slots
                             : static_cast<int>(std::clamp<int64_t>(usable / kAutoSlotDeviceMemory,
                                                                    1, kMaxAutoGpuSlots));
    plan.memory_per_slot = usable / plan.slots;
  } else if (r.slots > 0) {
    plan.slots = r.slots;
  } else {
    int slots = r.threads > 0 ? cpus / r.threads : cpus;
    if (r.host_memory > 0) {
      slots = static_cast<int>(std::min<int64_t>(slots, r.host_memory / kAutoSlotHostMemory));
    }
    plan.slots = std::clamp(slots, 1, kMaxSlots);
  }
  plan.threads_per_slot = r.threads > 0 ? r.threads : std::max(1, cpus / plan.slots);
  return plan;
}

std::string SlotStateDir(const std::string& state_dir, int slot) {
  if (state_dir.empty() || slot == 0) return state_dir;
  return absl::StrCat(state_dir, "/", kSlotDirPrefix, slot);
}

std::string SlotLabel(const std::string& label, const std::string& host, int slot, int slots) {
  if (slots <= 1) return label;
  return absl::StrCat(label.empty() ? host : label, kSlotLabelInfix, slot);
}

WorkerSlots::WorkerSlots(const WorkerDaemon::Options& base, const SlotPlan& plan,
                         std::vector<Slot> slots, CoordinatorClient* client, common::Clock* clock)
    : client_(client), clock_(clock) {
  if (base.max_candidates > 0) budget_ = std::make_unique<LeaseBudget>(base.max_candidates);
  const int n = static_cast<int>(slots.size());
  for (int k = 0; k < n; ++k) {
    WorkerDaemon::Options o = base;
    o.worker_id = SlotLabel(base.worker_id, base.host, k, n);
    o.state_dir = SlotStateDir(base.state_dir, k);
    o.lease_budget = budget_.get();
    o.gpu_memory_bytes = plan.memory_per_slot;
    o.metrics = slots[k].metrics;
    daemons_.push_back(std::make_unique<WorkerDaemon>(o, client, slots[k].trainer, clock));
  }
  if (!slots.empty()) AdoptLeftoverSlots(base, slots[0].trainer);
}

WorkerSlots::~WorkerSlots() = default;

void WorkerSlots::AdoptLeftoverSlots(const WorkerDaemon::Options& base, train::Trainer* trainer) {
  if (base.state_dir.empty()) return;
  for (int k : SlotDirsOnDisk(base.state_dir)) {
    if (k < size()) continue;
    WorkerDaemon::Options o = base;
    o.state_dir = SlotStateDir(base.state_dir, k);
    o.worker_id = SlotLabel(base.worker_id, base.host, k, k + 1);
    o.deliver_only = true;
    o.metrics = nullptr;
    spdlog::info("slot directory {} is beyond this run's {} slot(s): delivering what it kept",
                 o.state_dir, size());
    leftovers_.push_back(std::make_unique<WorkerDaemon>(o, client_, trainer, clock_));
    leftover_dirs_.push_back(o.state_dir);
  }
}

absl::Status WorkerSlots::Run() {
  std::vector<absl::Status> results(daemons_.size() + leftovers_.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < daemons_.size(); ++k) {
    threads.emplace_back([this, k, &results] { results[k] = daemons_[k]->Run(); });
  }
  for (size_t j = 0; j < leftovers_.size(); ++j) {
    threads.emplace_back([this, j, &results] {
      results[daemons_.size() + j] = leftovers_[j]->Run();
      if (results[daemons_.size() + j].ok() && SpoolEmpty(leftover_dirs_[j])) {
        std::error_code ec;
        fs::remove_all(leftover_dirs_[j], ec);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  absl::Status first = absl::OkStatus();
  for (size_t k = 0; k < results.size(); ++k) {
    if (results[k].ok()) continue;
    if (k < daemons_.size()) {
      spdlog::error("slot {} stopped: {}", k, results[k].ToString());
    } else {
      spdlog::error("{}: its reports were not delivered: {}", leftover_dirs_[k - daemons_.size()],
                    results[k].ToString());
    }
    if (first.ok()) first = results[k];
  }
  return first;
}

void WorkerSlots::Stop() {
  for (auto& d : daemons_) d->Stop();
  for (auto& d : leftovers_) d->Stop();
}

int WorkerSlots::candidates_done() const {
  int done = 0;
  for (const auto& d : daemons_) done += d->candidates_done();
  return done;
}

}  // namespace quartet::worker::daemon
