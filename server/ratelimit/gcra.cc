#include "server/ratelimit/gcra.h"

#include <algorithm>

namespace switchboard::ratelimit {

Gcra::Gcra(double rate, double burst) : rate_(rate), burst_(burst) {}

absl::Duration Gcra::Interval(double cost_units) const {
  return absl::Seconds(1) * (cost_units / rate_);
}

absl::Time Gcra::ConformingTime(uint64_t cost, absl::Time now) const {
  return ConformingTimeAfter(0, cost, now);
}

absl::Time Gcra::ConformingTimeAfter(uint64_t cost_ahead, uint64_t cost, absl::Time now) const {
  // The calls ahead go out back to back from whichever comes last: the
  // current TAT, now (an idle bucket) or the end of a pause. Each one moves
  // the TAT on by its cost, whenever within its allowance it leaves.
  const absl::Time arrival =
      std::max({theoretical_arrival_, now, paused_until_}) + Interval(cost_ahead);
  const double room_needed = std::min(static_cast<double>(cost), burst_);
  return std::max({arrival - Interval(burst_ - room_needed), now, paused_until_});
}

void Gcra::Consume(uint64_t cost, absl::Time now) {
  theoretical_arrival_ = std::max(theoretical_arrival_, now) + Interval(cost);
}

void Gcra::ConsumeDue(uint64_t cost, absl::Time due, absl::Time now) {
  const absl::Time counted_from = std::clamp(due, now - Interval(cost) / 2, now);
  theoretical_arrival_ =
      std::max({theoretical_arrival_, counted_from, paused_until_}) + Interval(cost);
}

absl::Duration Gcra::TryConsume(uint64_t cost, absl::Time now) {
  const absl::Time conforming = ConformingTime(cost, now);
  if (conforming > now) return conforming - now;
  Consume(cost, now);
  return absl::ZeroDuration();
}

void Gcra::SetRate(double rate, absl::Time now) {
  const absl::Duration debt = std::max(theoretical_arrival_ - now, absl::ZeroDuration());
  theoretical_arrival_ = now + debt * (rate_ / rate);
  rate_ = rate;
}

void Gcra::Pause(absl::Time until) { paused_until_ = std::max(paused_until_, until); }

}  // namespace switchboard::ratelimit
