// PoolHarness: an HttpPoolImpl on a running dispatcher, driven from the
// test's main thread, for the HTTP layer's integration tests.
//
// The pool lives on the harness' I/O thread; Send() and Call() hop there.
// Every callback's result is recorded with its request id, and a recording
// observer counts connections (and their peak) and request outcomes.
#pragma once

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/http/http_pool_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::http {

inline constexpr absl::Duration kResultTimeout = absl::Seconds(10);

class RecordingObserver final : public HttpPoolObserver {
 public:
  void OnConnectionOpened() override {
    absl::MutexLock lock(&mu_);
    ++opened_;
    peak_open_ = std::max(peak_open_, opened_ - closed_);
  }
  void OnConnectionClosed() override {
    absl::MutexLock lock(&mu_);
    ++closed_;
  }
  void OnRequestDone(const RequestOutcome& outcome) override {
    absl::MutexLock lock(&mu_);
    outcomes_.push_back(outcome);
  }

  int opened() const {
    absl::MutexLock lock(&mu_);
    return opened_;
  }
  int closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  // The most connections open at once.
  int peak_open() const {
    absl::MutexLock lock(&mu_);
    return peak_open_;
  }
  std::vector<RequestOutcome> outcomes() const {
    absl::MutexLock lock(&mu_);
    return outcomes_;
  }

  // Waits until exactly `n` connections are open (opened and not closed
  // since), as the pool counts them; false after kResultTimeout.
  bool WaitForOpen(int n) const {
    absl::MutexLock lock(&mu_);
    const auto reached = [&]()
                             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return opened_ - closed_ == n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kResultTimeout);
  }

 private:
  mutable absl::Mutex mu_;
  int opened_ ABSL_GUARDED_BY(mu_) = 0;
  int closed_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_open_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<RequestOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
};

class PoolHarness {
 public:
  struct Result {
    RequestId id = 0;
    absl::StatusOr<Response> response;
  };

  explicit PoolHarness(HttpPoolOptions options = {})
      : io_("http-test-io", common::RealClock::Get()) {
    io_.Start();
    RunOnIo([&] { pool_ = std::make_unique<HttpPoolImpl>(io_, options, observer_); });
  }

  ~PoolHarness() {
    DestroyPool();
    io_.Shutdown();
  }

  // Runs `fn` on the I/O thread and waits for it.
  void RunOnIo(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(io_, std::move(fn)); }

  // The pool, for code running on the I/O thread.
  HttpPool& pool() { return *pool_; }

  // A callback that records its result under the id that `*id` holds by the
  // time it runs (callbacks never run inline in Send()).
  ResponseCallback Recorder(std::shared_ptr<RequestId> id) {
    return [this, id](absl::StatusOr<Response> response) {
      absl::MutexLock lock(&mu_);
      results_.push_back({*id, std::move(response)});
    };
  }

  // Sends `request` `count` times in one go on the I/O thread.
  std::vector<RequestId> Send(const Request& request, int count = 1) {
    std::vector<RequestId> ids;
    RunOnIo([&] {
      for (int i = 0; i < count; ++i) ids.push_back(SendOnIo(request));
    });
    return ids;
  }

  // Sends `request` from the I/O thread.
  RequestId SendOnIo(Request request) {
    auto id = std::make_shared<RequestId>();
    *id = pool_->Send(std::move(request), Recorder(id));
    return *id;
  }

  // Sends `request` and waits for its result.
  absl::StatusOr<Response> Call(const Request& request) {
    const RequestId id = Send(request).front();
    absl::MutexLock lock(&mu_);
    const auto has_result = [&] { return FindLocked(id) != nullptr; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_result), kResultTimeout)) {
      return absl::DeadlineExceededError("the test saw no result in time");
    }
    return FindLocked(id)->response;
  }

  // Waits until `n` results arrived.
  bool WaitForResults(size_t n) {
    absl::MutexLock lock(&mu_);
    const auto enough = [&] { return results_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kResultTimeout);
  }

  // Results in the order they arrived.
  std::vector<Result> results() const {
    absl::MutexLock lock(&mu_);
    return results_;
  }

  int open_connections() {
    int open = 0;
    RunOnIo([&] { open = pool_->open_connections(); });
    return open;
  }

  // Waits until the pool has `n` connections open: its observer hears of
  // every connection opened and closed, so the count is the pool's.
  bool WaitForOpenConnections(int n) { return observer_.WaitForOpen(n); }

  // Destroys the pool on the I/O thread.
  void DestroyPool() {
    RunOnIo([&] { pool_.reset(); });
  }

  const RecordingObserver& observer() const { return observer_; }

 private:
  const Result* FindLocked(RequestId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const Result& result : results_) {
      if (result.id == id) return &result;
    }
    return nullptr;
  }

  RecordingObserver observer_;
  event::DispatcherImpl io_;
  std::unique_ptr<HttpPool> pool_;  // I/O thread only.

  mutable absl::Mutex mu_;
  std::vector<Result> results_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::http
