#include "server/ratelimit/local_limiter.h"

#include <algorithm>

namespace switchboard::ratelimit {

LocalLimiter::LocalLimiter(double rate, double burst, AimdOptions aimd)
    : gcra_(rate, burst), rate_control_(gcra_, aimd) {}

void LocalLimiter::Consume(uint64_t cost, absl::Time due, absl::Time now) {
  gcra_.ConsumeDue(cost, due, now);
}

}  // namespace switchboard::ratelimit
