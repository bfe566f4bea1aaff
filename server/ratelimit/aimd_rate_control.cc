#include "server/ratelimit/aimd_rate_control.h"

#include <algorithm>

namespace switchboard::ratelimit {

AimdRateControl::AimdRateControl(Gcra& limiter, AimdOptions options)
    : limiter_(limiter),
      options_(options),
      configured_rate_(limiter.rate()),
      min_rate_(limiter.rate() * options.min_rate_fraction),
      increase_per_cost_unit_(1 / absl::ToDoubleSeconds(options.recovery_time)) {}

bool AimdRateControl::OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now) {
  const bool already_paused = now < limiter_.paused_until();
  limiter_.Pause(now + retry_after.value_or(options_.default_pause));
  if (already_paused) return false;
  const double lowered = std::max(limiter_.rate() * options_.decrease_factor, min_rate_);
  if (lowered == limiter_.rate()) return false;
  limiter_.SetRate(lowered, now);
  return true;
}

bool AimdRateControl::OnSucceeded(uint64_t cost, absl::Time now) {
  if (now < limiter_.paused_until() || limiter_.rate() == configured_rate_) return false;
  limiter_.SetRate(std::min(limiter_.rate() + cost * increase_per_cost_unit_, configured_rate_),
                   now);
  return true;
}

}  // namespace switchboard::ratelimit
