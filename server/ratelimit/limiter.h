// Limiter: the rate an UpstreamAdmission (and a client's quota) admits calls
// at, behind one interface with two implementations:
//   * LocalLimiter (local_limiter.h): a GCRA in this process, steered by the
//     provider's pushback (AIMD); exact for one replica (`scope: local`);
//   * GlobalLimiter (global_limiter.h): tokens leased in small batches from
//     a GCRA kept in Redis and shared by every replica (`scope: global`).
//
// Owned by its UpstreamAdmission or ClientQuotas and used on that owner's
// dispatcher thread only (not thread-safe). Time is passed in.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"

namespace switchboard::ratelimit {

struct SharedLimit;  // lease_service.h

class Limiter {
 public:
  virtual ~Limiter() = default;

  // The earliest time, not before `now`, at which a call of `cost` conforms.
  // InfiniteFuture when the limiter cannot tell yet (a global limiter
  // waiting for tokens it asked for); it calls the change callback once it
  // can. Consumes nothing.
  virtual absl::Time ConformingTime(uint64_t cost, absl::Time now) const = 0;

  // An estimate of ConformingTime for a call queued behind calls totalling
  // `cost_ahead`, each admitted as early as the limiter allows: exact for a
  // local limiter while its rate and pause stay as they are; for a global
  // one, its leased tokens and then its expected share of the fleet's rate.
  // Never InfiniteFuture. For refusing at once a call that cannot make its
  // deadline. Consumes nothing.
  virtual absl::Time EstimateConformingTime(uint64_t cost_ahead, uint64_t cost,
                                            absl::Time now) const = 0;

  // Records a call of `cost` admitted at `now`, which must be at or after
  // ConformingTime(cost, now). `due` is the earliest time the call could
  // have left as far as its owner knows (when it was queued, or when a
  // connection freed up for it): a call admitted late by a timer that fired
  // late is counted at the time it was due (within a bound), so late
  // wake-ups do not lower the long-run rate.
  virtual void Consume(uint64_t cost, absl::Time due, absl::Time now) = 0;

  // A call of `arrived_cost` came for this limiter (0: a waiting call left
  // without being admitted), and calls totalling `waiting_cost` (it
  // included, when it was queued) now wait for it; Consume() takes an
  // admitted call's cost off the waiting cost. A global limiter leases
  // tokens to follow the demand. Local limiters ignore it.
  virtual void OnDemand(uint64_t arrived_cost, uint64_t waiting_cost, absl::Time now) {
    (void)arrived_cost;
    (void)waiting_cost;
    (void)now;
  }

  // The provider throttled a call at `now`, asking to wait `retry_after`
  // (absent when it did not say). Returns true when the rate changed.
  virtual bool OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now) = 0;

  // A call of `cost` got its answer from the provider. Returns true when the
  // rate changed.
  virtual bool OnSucceeded(uint64_t cost, absl::Time now) = 0;

  // The current rate, in cost units per second.
  virtual double rate() const = 0;

  // True while ConformingTime() is InfiniteFuture only because tokens asked
  // for are on their way (a global limiter's lease round trip): the change
  // callback will tell when they come. Local limiters never wait.
  virtual bool AwaitingTokens() const { return false; }

  // The fleet-wide limit this limiter shares, or nullptr for a limit of
  // this process alone.
  virtual const SharedLimit* shared_limit() const { return nullptr; }

  // True while a shared limit runs on this replica's fallback share.
  virtual bool fallback() const { return false; }

  // `on_change` runs on the dispatcher thread, never inline in a call to
  // this limiter, whenever its answers change by themselves: leased tokens
  // arrived, another replica paused the upstream, the shared rate moved.
  // The owner re-reads ConformingTime() then. Local limiters never call it.
  virtual void SetChangeCallback(absl::AnyInvocable<void()> on_change) { (void)on_change; }
};

}  // namespace switchboard::ratelimit
