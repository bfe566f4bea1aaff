// Anchor: the one way to reach an object that lives on one dispatcher from
// any thread, safely even after the object is gone.
//
// Run() executes a closure with the object on its dispatcher's thread: at
// once when already there (so two components whose dispatchers are one pay
// no hop), posted otherwise. Post() always posts, for callers that must not
// re-enter the object from inside one of its own callbacks. The closure gets
// nullptr instead of the object once the anchor is done with it, in either
// of two ways:
//   - Clear(), on the dispatcher thread: every closure that runs from then
//     on gets nullptr, those already posted included. An object clears its
//     own anchor in its destructor, and nothing reaches it after.
//   - Close(), from any thread: closures posted from then on get nullptr;
//     those posted before still see the object. An owner shutting the
//     object down closes the anchor, then posts the object's destruction,
//     which runs after every closure that can still see it (the dispatcher
//     runs posts in order). Run() and Post() tell whether the anchor was
//     still open.
// Copies share the same target. Used by the brokers (their State, through
// broker::StateGate), the Redis backend's parts, the upstream proxy and the
// sharded HTTP pool.
#pragma once

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "server/event/dispatcher.h"

namespace switchboard::event {

template <typename T>
class Anchor {
 public:
  // `dispatcher` must outlive every copy of the anchor and every closure
  // posted through it.
  Anchor(Dispatcher& dispatcher, T* object)
      : target_(std::make_shared<Target>(dispatcher, object)) {}

  // Runs `fn(object)`, or `fn(nullptr)` (see above), on the dispatcher
  // thread: inline when called there, posted otherwise. Returns false when
  // the anchor was closed.
  bool Run(absl::AnyInvocable<void(T*)> fn) const {
    if (!target_->dispatcher.IsDispatcherThread()) return Post(std::move(fn));
    const bool open = target_->IsOpen();
    fn(open ? target_->object : nullptr);
    return open;
  }

  // The same, always posted (never inline, even on the dispatcher thread).
  bool Post(absl::AnyInvocable<void(T*)> fn) const {
    absl::ReaderMutexLock lock(&target_->mu);
    const bool open = target_->open;
    target_->dispatcher.Post([target = target_, open, fn = std::move(fn)]() mutable {
      fn(open ? target->object : nullptr);
    });
    return open;
  }

  // Closures posted from now on get nullptr. Any thread. Returns false when
  // the anchor was closed already.
  bool Close() {
    absl::MutexLock lock(&target_->mu);
    if (!target_->open) return false;
    target_->open = false;
    return true;
  }

  // Every closure that runs from now on gets nullptr. Dispatcher thread
  // only.
  void Clear() { target_->object = nullptr; }

  Dispatcher& dispatcher() const { return target_->dispatcher; }

 private:
  struct Target {
    Target(Dispatcher& dispatcher, T* object) : dispatcher(dispatcher), object(object) {}
    bool IsOpen() {
      absl::ReaderMutexLock lock(&mu);
      return open;
    }

    Dispatcher& dispatcher;
    absl::Mutex mu;
    bool open ABSL_GUARDED_BY(mu) = true;
    T* object;  // Read and written on the dispatcher thread only.
  };
  std::shared_ptr<Target> target_;
};

}  // namespace switchboard::event
