// AimdRateControl: lowers an upstream's rate when the provider pushes back and
// brings it back as calls succeed (additive increase, multiplicative
// decrease).
//
// Owned by UpstreamAdmission, beside the Gcra it steers; used on the same
// thread (not thread-safe). Pure: time is passed in. The current rate lives in
// the Gcra; this class keeps only the configured rate (the ceiling) and its
// options.
//
// A throttle (HTTP 429, or a JSON-RPC rate-limit error) pauses the limiter for
// the provider's Retry-After and multiplies the rate by `decrease_factor`,
// down to a floor. Calls already in flight when the provider pushed back are
// likely to be throttled too: a throttle that arrives while a pause is in
// force only extends the pause, so one episode lowers the rate once. For the
// same reason successes during a pause are not counted. After the pause every
// successful cost unit adds a constant to the rate, up to the configured rate.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "server/ratelimit/gcra.h"

namespace switchboard::ratelimit {

struct AimdOptions {
  // The rate is multiplied by this on a throttle (0 < factor < 1).
  double decrease_factor = 0.5;
  // The rate never falls below this fraction of the configured rate (0, 1].
  double min_rate_fraction = 0.1;
  // How long a throttle pauses the limiter when the provider sends no
  // Retry-After.
  absl::Duration default_pause = absl::Seconds(1);
  // Sets the additive increase: `recovery_time` worth of successful calls at
  // the configured rate would raise the rate by the whole configured rate.
  // Every successful cost unit adds 1 / recovery_time (in seconds) cost units
  // per second. Since the calls flow at the lowered rate meanwhile, getting
  // back from half the rate takes at most ln 2 x recovery_time (1.4 s by
  // default), from the 10% floor ln 10 x recovery_time (4.6 s), whatever
  // the rate; less when a burst goes at once.
  absl::Duration recovery_time = absl::Seconds(2);
};

class AimdRateControl {
 public:
  // Steers `limiter`, whose current rate is taken as the configured rate.
  // `limiter` must outlive this object.
  AimdRateControl(Gcra& limiter, AimdOptions options);

  // The provider throttled a call at `now`, asking to wait `retry_after`
  // (absent: `default_pause`). Pauses the limiter, and lowers its rate unless
  // a pause was already in force. Returns true when the rate changed.
  bool OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now);

  // A call of `cost` succeeded at `now`. Raises the limiter's rate, up to the
  // configured rate, unless the limiter is paused. Returns true when the rate
  // changed.
  bool OnSucceeded(uint64_t cost, absl::Time now);

  double configured_rate() const { return configured_rate_; }

 private:
  Gcra& limiter_;
  const AimdOptions options_;
  const double configured_rate_;
  const double min_rate_;
  // Rate gained per successful cost unit.
  const double increase_per_cost_unit_;
};

}  // namespace switchboard::ratelimit
