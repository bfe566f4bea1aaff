// A thread-safe list of what a client callback received, that a test can
// wait on (with a generous timeout, never a sleep). Used by the client
// integration tests.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace switchboard::client {

class Collector {
 public:
  void Add(std::string item) {
    absl::MutexLock lock(&mu_);
    items_.push_back(std::move(item));
  }

  // True once at least `count` items arrived, false after `timeout`.
  bool AwaitCount(std::size_t count, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, count] {
      mu_.AssertReaderHeld();
      return items_.size() >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  std::vector<std::string> items() const {
    absl::MutexLock lock(&mu_);
    return items_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> items_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::client
