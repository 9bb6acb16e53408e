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
  // With `mu` held: waits until `cond` holds or `d` has passed on this clock, releasing `mu` while
  // waiting, like absl::Mutex::AwaitWithTimeout. Returns whether `cond` holds. A FakeClock advances
  // itself by `d` instead of waiting (after a short real pause that lets other threads run).
  virtual bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond, absl::Duration d)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // The process-wide real clock. Never destroyed.
  static Clock* Real();
};

// The real clock.
class SystemClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond, absl::Duration d) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu->AwaitWithTimeout(cond, d);
  }
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
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond, absl::Duration d) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (cond.Eval()) return true;
    // A real pause bounded by kFakeWaitPause: other threads get to run and can make `cond` true.
    if (mu->AwaitWithTimeout(cond, kFakeWaitPause)) return true;
    Advance(d);
    return cond.Eval();
  }
  // The real time a FakeClock wait takes at most before it advances the clock.
  static constexpr absl::Duration kFakeWaitPause = absl::Milliseconds(1);
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
