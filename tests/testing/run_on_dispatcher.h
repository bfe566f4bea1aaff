// RunOnDispatcher: runs a closure on a dispatcher's thread and waits for it,
// so a test can drive objects that live on that thread (not thread-safe,
// dispatcher-thread-only) from its own thread, one step at a time.
#pragma once

#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/notification.h"
#include "server/event/dispatcher.h"

namespace switchboard::testing {

// Runs `fn` on `dispatcher`'s thread after everything posted before, and
// returns once it has run. Not on the dispatcher thread itself.
inline void RunOnDispatcher(event::Dispatcher& dispatcher, absl::AnyInvocable<void()> fn) {
  absl::Notification done;
  dispatcher.Post([&] {
    fn();
    done.Notify();
  });
  done.WaitForNotification();
}

}  // namespace switchboard::testing
