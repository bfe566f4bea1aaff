// The dispatcher: one event loop on one thread, the unit of I/O ownership.
//
// Every Redis connection, every curl multi handle and the memory broker's
// state belong to exactly one dispatcher and are touched only on its thread.
// Other threads (gRPC reactors) hand work over with Post(); nothing else
// crosses. Timers read the dispatcher's injected Clock, so under a
// SimulatedClock they fire when the test advances time, not when wall time
// passes.
#pragma once

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace switchboard::event {

// A one-shot timer owned by a dispatcher. Create, arm, disarm and destroy it
// on the dispatcher's thread only. Its callback runs on that thread and never
// after Disable() or destruction.
class Timer {
 public:
  virtual ~Timer() = default;

  // Arms the timer to fire at `deadline` (by the dispatcher's clock),
  // replacing any earlier arming. A deadline in the past fires on the next
  // loop iteration, never inline.
  virtual void EnableAt(absl::Time deadline) = 0;

  // Arms the timer to fire `delay` from now.
  virtual void Enable(absl::Duration delay) = 0;

  virtual void Disable() = 0;

  virtual bool Enabled() const = 0;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;

  // The dispatcher's name, used in thread names and logs.
  virtual const std::string& name() const = 0;

  // Queues `fn` to run on the dispatcher thread, in posting order. Safe from
  // any thread, including the dispatcher's own (the closure then runs on a
  // later loop iteration, never inline). Closures posted after Shutdown()
  // began are destroyed without running.
  virtual void Post(absl::AnyInvocable<void()> fn) = 0;

  // Creates a disarmed timer. Dispatcher thread only.
  virtual std::unique_ptr<Timer> CreateTimer(absl::AnyInvocable<void()> callback) = 0;

  // True when called from the dispatcher's own thread.
  virtual bool IsDispatcherThread() const = 0;

  virtual common::Clock& clock() = 0;
};

}  // namespace switchboard::event
