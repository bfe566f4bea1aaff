// FakeLeaseService: a LeaseService for unit tests of GlobalLimiter and of
// what owns one. It records every request and answers only when the test
// says so (Grant, Fail, Pause), on the thread the test calls from (the
// limiter's dispatcher, through RunOnDispatcher). Header-only.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/ratelimit/lease_service.h"

namespace switchboard::testing {

class FakeLeaseService final : public ratelimit::LeaseService {
 public:
  struct Request {
    ratelimit::SharedLimit limit;
    ratelimit::LeaseRequest request;
    LeaseCallback done;  // Empty once answered.
  };
  struct Throttle {
    std::string key;
    absl::Duration pause;
  };

  void Lease(const ratelimit::SharedLimit& limit, ratelimit::LeaseRequest request,
             LeaseCallback done) override {
    requests_.push_back({limit, request, std::move(done)});
  }
  void ReportThrottle(const ratelimit::SharedLimit& limit, absl::Duration pause) override {
    throttles_.push_back({limit.key(), pause});
  }
  void Watch(const ratelimit::SharedLimit& limit, PauseCallback on_pause) override {
    watchers_[limit.key()] = std::move(on_pause);
  }
  void Unwatch(const ratelimit::SharedLimit& limit) override { watchers_.erase(limit.key()); }
  absl::Duration horizon() const override { return horizon_; }
  uint32_t live_replicas() const override { return live_replicas_; }
  void Describe(const ratelimit::SharedLimit&, DescribeCallback done) override {
    done(absl::UnimplementedError("fake"));
  }

  // Answers request `index` with `tokens` slots from `first_slot`, one per
  // `interval`, at the limit's configured rate.
  void Grant(size_t index, uint32_t tokens, absl::Time first_slot, absl::Duration interval) {
    Request& request = requests_.at(index);
    ratelimit::Lease lease;
    lease.tokens = tokens;
    lease.not_before = first_slot;
    lease.first_slot = first_slot;
    lease.interval = interval;
    lease.rate = request.limit.rate;
    lease.live_replicas = live_replicas_;
    std::exchange(request.done, nullptr)(lease);
  }
  // Fails request `index` as an unreachable Redis would.
  void Fail(size_t index) {
    std::exchange(requests_.at(index).done, nullptr)(absl::UnavailableError("redis is down"));
  }
  // Sends a pause notice for `key`, as a throttle on another replica would.
  void Pause(const std::string& key, absl::Time until, double rate) {
    watchers_.at(key)(ratelimit::PauseNotice{until, rate});
  }

  std::vector<Request>& requests() { return requests_; }
  const std::vector<Throttle>& throttles() const { return throttles_; }
  bool watching(const std::string& key) const { return watchers_.contains(key); }
  void set_live_replicas(uint32_t replicas) { live_replicas_ = replicas; }

 private:
  std::vector<Request> requests_;
  std::vector<Throttle> throttles_;
  absl::flat_hash_map<std::string, PauseCallback> watchers_;
  absl::Duration horizon_ = absl::Milliseconds(50);
  uint32_t live_replicas_ = 1;
};

}  // namespace switchboard::testing
