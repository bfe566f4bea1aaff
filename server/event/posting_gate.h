// PostingGate: the thread-safe way in to an object that lives on one
// dispatcher thread, until the object goes away.
//
// Any thread may Run() a closure; it is posted to the dispatcher and runs
// there with the target, or with nullptr once Close() has run (the owner is
// shutting the target down). Closures posted before Close() still see the
// target: the dispatcher runs posts in order, so an owner that posts the
// target's destruction after Close() frees it after every closure that can
// see it. Used by the brokers (their State) and the upstream proxy.
//
// The gate does not own the target.
#pragma once

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "server/event/dispatcher.h"

namespace switchboard::event {

template <typename Target>
class PostingGate {
 public:
  // `dispatcher` must outlive the gate.
  PostingGate(Dispatcher& dispatcher, Target* target) : dispatcher_(dispatcher), target_(target) {}

  PostingGate(const PostingGate&) = delete;
  PostingGate& operator=(const PostingGate&) = delete;

  // Posts `fn`, to run with the target, or with nullptr once the gate is
  // closed. Returns whether the target was live.
  bool Run(absl::AnyInvocable<void(Target* target)> fn) {
    absl::ReaderMutexLock lock(&mu_);
    Target* target = target_;
    dispatcher_.Post([target, fn = std::move(fn)]() mutable { fn(target); });
    return target != nullptr;
  }

  // Later Run()s pass nullptr. Returns false when the gate was closed
  // already.
  bool Close() {
    absl::MutexLock lock(&mu_);
    if (target_ == nullptr) return false;
    target_ = nullptr;
    return true;
  }

  Dispatcher& dispatcher() const { return dispatcher_; }

 private:
  Dispatcher& dispatcher_;
  absl::Mutex mu_;
  Target* target_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::event
