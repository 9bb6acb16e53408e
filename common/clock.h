// Time source behind an interface so leases, deadlines and back-off are testable without sleeping.
#ifndef QUARTET_COMMON_CLOCK_H_
#define QUARTET_COMMON_CLOCK_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace quartet::common {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Current wall-clock time.
  virtual absl::Time Now() = 0;
  // Blocks the caller for `d` (a FakeClock returns at once after advancing itself).
  virtual void SleepFor(absl::Duration d) = 0;

  // The process-wide real clock. Never destroyed.
  static Clock* Real();
};

// The real clock.
class SystemClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  // Advances the clock by `d` instead of sleeping.
  void SleepFor(absl::Duration d) override { Advance(d); }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

// Milliseconds since the Unix epoch.
inline int64_t ToUnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace quartet::common

#endif  // QUARTET_COMMON_CLOCK_H_
