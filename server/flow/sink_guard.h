// SinkGuard: lets a backend call a caller-owned sink from its dispatcher
// thread while the handle that owns the sink may be destroyed on any thread.
//
// Every broker backend wraps each SubscriberSink / ConsumerSink (and
// Settle's completion) in one, and the provider subscription hub each
// NotificationSink, shared between the handle and the backend's state. The
// backend calls the sink only through Invoke(); the handle's destructor calls
// Detach(). Invoke() holds the guard's lock while the sink runs, so once
// Detach() returns no callback is running and none will start: this is what
// makes "no callback after the handle's destructor returns" true.
//
// Consequences for callers, stated in broker.h and subscription_hub.h: a handle must not be
// destroyed from inside one of its own callbacks (Detach() would wait for the
// very callback that calls it), and whoever destroys a handle must not hold a
// lock that the sink's callbacks take.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace switchboard::flow {

template <typename Sink>
class SinkGuard {
 public:
  // `sink` must stay valid until Detach() returns.
  explicit SinkGuard(Sink& sink) : sink_(&sink) {}

  SinkGuard(const SinkGuard&) = delete;
  SinkGuard& operator=(const SinkGuard&) = delete;

  // Runs `fn(sink)` unless the guard is detached. Returns whether it ran.
  // Callable from any thread; `fn` must not call Detach() on this guard.
  template <typename Fn>
  bool Invoke(Fn&& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (sink_ == nullptr) return false;
    fn(*sink_);
    return true;
  }

  // Stops all future callbacks, waiting for one in progress to finish.
  // Idempotent.
  void Detach() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  Sink* sink_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::flow
