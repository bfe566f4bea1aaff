#include "server/broker/redis/backoff.h"

#include <algorithm>

namespace switchboard::broker::redis {

Backoff::Backoff(absl::Duration initial, absl::Duration max, uint64_t seed)
    : initial_(initial), max_(std::max(initial, max)), ceiling_(initial), random_(seed) {}

absl::Duration Backoff::Next() {
  const int64_t ceiling_us = absl::ToInt64Microseconds(ceiling_);
  std::uniform_int_distribution<int64_t> uniform(0, ceiling_us);
  ceiling_ = std::min(max_, ceiling_ * 2);
  return absl::Microseconds(uniform(random_));
}

}  // namespace switchboard::broker::redis
