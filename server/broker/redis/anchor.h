// Anchor: reaches an object that lives on one dispatcher from any thread,
// safely even after the object is gone.
//
// The Redis backend keeps its broker state on the broker's dispatcher and
// its connections on the I/O dispatcher; work and replies cross between the
// two through Anchors. Run() executes a closure with the object on its
// dispatcher's thread (at once when already there, so a backend whose two
// dispatchers are one pays no hop), or with nullptr once the owner called
// Clear(). Copies share the same target. Thread-safe; Clear() on the
// dispatcher thread only.
#pragma once

#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::redis {

template <typename T>
class Anchor {
 public:
  Anchor(event::Dispatcher& dispatcher, T* object)
      : target_(std::make_shared<Target>(Target{dispatcher, object})) {}

  // Runs `fn(object)`, or `fn(nullptr)` after Clear(), on the dispatcher
  // thread: inline when called there, posted otherwise.
  void Run(absl::AnyInvocable<void(T*)> fn) const {
    if (target_->dispatcher.IsDispatcherThread()) {
      fn(target_->object);
      return;
    }
    target_->dispatcher.Post(
        [target = target_, fn = std::move(fn)]() mutable { fn(target->object); });
  }

  // Later Run() calls get nullptr. Dispatcher thread only.
  void Clear() { target_->object = nullptr; }

 private:
  struct Target {
    event::Dispatcher& dispatcher;
    T* object;  // Read and written on the dispatcher thread only.
  };
  std::shared_ptr<Target> target_;
};

}  // namespace switchboard::broker::redis
