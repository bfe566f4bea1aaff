// GlobalLimiter: a limit shared by every Switchboard replica (`scope:
// global`), enforced with tokens leased from the fleet's shared GCRA
// (LeaseService), so that no call waits for a round trip to Redis.
//
// Owned by an UpstreamAdmission or ClientQuotas and used on the dispatcher
// thread of its LeaseService (not thread-safe).
//
// A token is a slot in the shared schedule: it is used at its time, and if
// its owner has no call for it within kSlotGrace it expires, is counted as
// returned unused, and the capacity it stood for is gone. So what a replica
// holds never outlives one horizon: a replica that dies or goes idle gives
// its share back within about one horizon, and a token used late overlaps
// other replicas' tokens by at most kSlotGrace (the overshoot bound: rate x
// kSlotGrace cost units above the burst).
//
// Leases follow demand, one round trip at a time. Queued calls that the held
// tokens do not cover ask for tokens (the service grants at most one horizon
// ahead); while the fleet has spare capacity (a lease's first token was due
// at once), the limiter also keeps kSlotGrace of its estimated demand (an
// exponentially weighted average of OnDemand) in stock, so calls at a steady
// moderate rate find tokens at hand rather than wait for a round trip; under
// contention it asks for the demand until its next lease. Round trips are
// paced: after a lease that granted less than asked (the fleet is
// contended) the next comes three quarters of a horizon later, while the
// tokens still cover a quarter; after a full grant, a quarter of a horizon
// later at the soonest; after a lease that found the schedule taken a whole
// horizon ahead, as soon as its first free slot comes within the horizon, so
// that a replica with a trickle of calls is not starved by a busy one.
//
// Pushback is shared: a throttle here voids the leased tokens, pauses this
// replica, and is reported to the service, which pauses every replica (and
// lowers the shared rate) through PauseNotice.
//
// When the service fails (Redis unreachable, or slower than its timeout),
// the limiter falls back to a LocalLimiter at its share of the limit: the
// shared rate divided by the replicas last known alive, the burst likewise.
// It drops its leased tokens and starts the fallback bucket full, so the
// switch adds no burst, and it keeps trying to lease every retry interval;
// the first lease that succeeds brings it back to global coordination (the
// service keeps the shared schedule at the share of the replicas back until
// every replica is; see lease_scripts.h). The overshoot while in fallback is bounded by replicas
// dying or joining unseen meanwhile (see the README, "Running several replicas").
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/event/dispatcher.h"
#include "server/ratelimit/lease_service.h"
#include "server/ratelimit/limiter.h"
#include "server/ratelimit/local_limiter.h"

namespace switchboard::ratelimit {

class GlobalLimiter final : public Limiter {
 public:
  // How long after its time (or after its lease arrived, when that is later)
  // a leased token may still be used.
  static constexpr absl::Duration kSlotGrace = absl::Milliseconds(20);
  // How often a limiter in fallback tries the service again.
  static constexpr absl::Duration kFallbackRetry = absl::Milliseconds(200);

  // `dispatcher`, `service` and `observer` must outlive this object; use it
  // on `dispatcher`'s thread.
  GlobalLimiter(event::Dispatcher& dispatcher, LeaseService& service, SharedLimit limit,
                GlobalLimitObserver& observer);
  ~GlobalLimiter() override;

  GlobalLimiter(const GlobalLimiter&) = delete;
  GlobalLimiter& operator=(const GlobalLimiter&) = delete;

  // Limiter.
  absl::Time ConformingTime(uint64_t cost, absl::Time now) const override;
  absl::Time EstimateConformingTime(uint64_t cost_ahead, uint64_t cost,
                                    absl::Time now) const override;
  void Consume(uint64_t cost, absl::Time due, absl::Time now) override;
  void OnDemand(uint64_t arrived_cost, uint64_t waiting_cost, absl::Time now) override;
  bool OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now) override;
  bool OnSucceeded(uint64_t cost, absl::Time now) override;
  double rate() const override;
  bool AwaitingTokens() const override { return lease_pending_ && fallback_ == nullptr; }
  void SetChangeCallback(absl::AnyInvocable<void()> on_change) override {
    on_change_ = std::move(on_change);
  }

  const SharedLimit* shared_limit() const override { return &limit_; }
  bool fallback() const override { return fallback_ != nullptr; }
  // Leased tokens not used yet (expired ones included until dropped).
  size_t tokens_held() const { return slots_.size(); }
  absl::Time paused_until() const { return paused_until_; }

 private:
  struct Slot {
    absl::Time at;       // Usable from.
    absl::Time expires;  // Unusable after.
  };

  // Of a call of `cost`, the tokens whose slots must have come before it
  // goes: as Gcra does, a call costing more than the burst goes once the
  // burst is there, its other tokens (later slots) taken with it.
  uint64_t TokensDueAtOnce(uint64_t cost) const;
  // The first slot usable at `now` (skipping expired ones).
  size_t FirstUsable(absl::Time now) const;
  // Drops expired slots, counting them as returned.
  void DropExpired(absl::Time now);
  // Drops every slot (a pause voided them, or the fallback began).
  void DropAll();
  // The demand estimate decayed to `now`, in cost units per second.
  double DemandAt(absl::Time now) const;
  // Asks for a lease when the demand calls for one and none is under way.
  void MaybeLease(absl::Time now);
  void OnLease(uint32_t wanted, absl::StatusOr<Lease> lease);
  void OnPause(PauseNotice notice);
  void EnterFallback(absl::Time now, const absl::Status& why);
  void LeaveFallback();
  // Wakes MaybeLease at `at` (keeps an earlier wake-up).
  void WakeAt(absl::Time at);
  void Changed() {
    if (on_change_) on_change_();
  }

  event::Dispatcher& dispatcher_;
  LeaseService& service_;
  const SharedLimit limit_;
  GlobalLimitObserver& observer_;
  absl::AnyInvocable<void()> on_change_;

  std::deque<Slot> slots_;  // In time order.
  double rate_;             // The shared rate, as last heard.
  uint32_t live_replicas_ = 1;
  absl::Time paused_until_ = absl::InfinitePast();

  // Demand: cost per second asked for (EWMA), and cost queued now.
  double demand_rate_ = 0;
  absl::Time demand_updated_ = absl::InfinitePast();
  uint64_t waiting_cost_ = 0;
  // Tokens granted per second (EWMA), for estimates beyond the held ones.
  double granted_rate_ = 0;

  bool lease_pending_ = false;
  absl::Time next_lease_allowed_ = absl::InfinitePast();
  uint64_t succeeded_since_lease_ = 0;
  // The fleet had spare capacity at the last lease.
  bool uncontended_ = true;
  // The cost of the last call ConformingTime() could not admit for want of
  // tokens: a lease asks for at least that many at once.
  mutable uint64_t cost_short_ = 0;

  // Set while in fallback.
  std::unique_ptr<LocalLimiter> fallback_;
  // After a fallback, slots before this are not used (the fallback bucket
  // already spent that time).
  absl::Time resume_after_ = absl::InfinitePast();

  std::unique_ptr<event::Timer> wake_timer_;
  absl::Time wake_at_ = absl::InfiniteFuture();
  // Lets callbacks from the service find out that this limiter is gone.
  std::shared_ptr<GlobalLimiter*> self_;
};

}  // namespace switchboard::ratelimit
