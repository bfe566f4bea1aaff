// Gcra: the Generic Cell Rate Algorithm, the limiter behind every rate in
// Switchboard (an upstream's provider limit, a client's quota).
//
// A call has a cost in cost units (a method cost: getProgramAccounts = 10,
// most methods 1). The limiter lets `rate` cost units through per second on
// average, and up to `burst` cost units at one instant after a quiet spell.
// Its whole state is one time, the theoretical arrival time (TAT): the time
// at which everything admitted so far would have gone out at exactly `rate`.
// A call of cost C conforms at time t when the bucket has room for it:
//   TAT - t <= (burst - C) / rate
// A call costing more than `burst` conforms only on an empty bucket (TAT <= t)
// and then leaves the limiter in debt, so the long-run rate still holds.
//
// Pure: time is passed in, nothing is read from a clock. Not thread-safe; the
// owner serializes access (UpstreamAdmission on its dispatcher thread,
// ClientQuotas under a mutex).
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace switchboard::ratelimit {

class Gcra {
 public:
  // `rate`: cost units per second, > 0. `burst`: the cost units that may go
  // at one instant after a quiet spell, >= 1.
  Gcra(double rate, double burst);

  // The earliest time, not before `now`, at which a call of `cost` conforms.
  // Consumes nothing.
  absl::Time ConformingTime(uint64_t cost, absl::Time now) const;

  // The earliest time, not before `now`, at which a call of `cost` conforms
  // once calls totalling `cost_ahead` have been admitted before it, each as
  // early as the limiter allows. Exact while the rate and pause stay as they
  // are. Consumes nothing.
  absl::Time ConformingTimeAfter(uint64_t cost_ahead, uint64_t cost, absl::Time now) const;

  // Records a call of `cost` admitted at `now`. Call it at or after
  // ConformingTime(cost, now): the limiter does not refuse here.
  void Consume(uint64_t cost, absl::Time now);

  // Records a call of `cost` admitted at `now` that its owner could have
  // admitted from `due` (<= now) on: a queued call whose timer fired late.
  // The call is counted as if it had left at `due`, but never earlier than
  // half its own interval before `now`, so a late wake-up does not lose the
  // time it was late (at `burst: 1`, every late timer would otherwise lower
  // the long-run rate) while the provider never sees two calls closer than
  // half an interval beyond what the burst allows.
  void ConsumeDue(uint64_t cost, absl::Time due, absl::Time now);

  // Consumes `cost` when it conforms at `now` and returns zero. Otherwise
  // consumes nothing and returns how long until it would conform.
  absl::Duration TryConsume(uint64_t cost, absl::Time now);

  // Changes the rate from `now` on (> 0). What the bucket holds, in cost
  // units, carries over: a bucket that was half full stays half full.
  void SetRate(double rate, absl::Time now);

  // Nothing conforms before `until`. Pauses do not shorten: an earlier
  // `until` than the current pause's end changes nothing. The bucket's
  // content is kept, so when the pause ends a burst may go at once (the
  // provider's own bucket has refilled over the pause as well).
  void Pause(absl::Time until);

  double rate() const { return rate_; }
  double burst() const { return burst_; }
  absl::Time paused_until() const { return paused_until_; }

 private:
  // How long `cost_units` take to go out at the current rate.
  absl::Duration Interval(double cost_units) const;

  double rate_;
  const double burst_;
  absl::Time theoretical_arrival_ = absl::InfinitePast();
  absl::Time paused_until_ = absl::InfinitePast();
};

}  // namespace switchboard::ratelimit
