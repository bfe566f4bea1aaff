// Time sources for Switchboard.
//
// Every component that reasons about time (leases, rate limiters, timers)
// reads it from an injected `Clock`, never from the system directly, so tests
// drive time with `SimulatedClock` and never sleep.
#pragma once

#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace switchboard::common {

// A source of the current time. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // Registers `observer` to run (on the calling thread of whoever moves time)
  // whenever time jumps by other means than its own passing. Real clocks never
  // jump, so they ignore observers. Dispatchers use this to re-check timers
  // under simulated time. The observer must outlive the clock or be removed
  // with RemoveJumpObserver().
  virtual void AddJumpObserver(std::function<void()>* observer) { (void)observer; }
  virtual void RemoveJumpObserver(std::function<void()>* observer) { (void)observer; }
};

// The wall clock.
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }

  // The process-wide instance.
  static RealClock& Get() {
    static RealClock* const clock = new RealClock();
    return *clock;
  }
};

// A clock that moves only when told to. Used by tests.
class SimulatedClock final : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24 * 365 * 50))
      : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  // Moves time forward by `d` and notifies every jump observer.
  void Advance(absl::Duration d) {
    std::vector<std::function<void()>*> observers;
    {
      absl::MutexLock lock(&mu_);
      now_ += d;
      observers = observers_;
    }
    for (auto* observer : observers) (*observer)();
  }

  void AddJumpObserver(std::function<void()>* observer) override {
    absl::MutexLock lock(&mu_);
    observers_.push_back(observer);
  }

  void RemoveJumpObserver(std::function<void()>* observer) override {
    absl::MutexLock lock(&mu_);
    for (auto it = observers_.begin(); it != observers_.end(); ++it) {
      if (*it == observer) {
        observers_.erase(it);
        return;
      }
    }
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>*> observers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::common
