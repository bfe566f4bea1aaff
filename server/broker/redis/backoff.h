// Backoff: reconnect delays, exponential with full jitter.
//
// Used by every Redis connection between reconnect attempts. Attempt n waits
// a uniformly random delay in [0, min(max, initial * 2^n)], so many
// Switchboard replicas that lose Redis together spread their reconnects out
// instead of arriving in one storm. Not thread-safe; owned by one connection.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace switchboard::broker::redis {

class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, uint64_t seed);

  // The delay before the next attempt; each call doubles the ceiling.
  absl::Duration Next();

  // An attempt succeeded: the next failure starts from `initial` again.
  void Reset() { ceiling_ = initial_; }

  // The ceiling the next delay is drawn under.
  absl::Duration ceiling() const { return ceiling_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  absl::Duration ceiling_;
  std::mt19937_64 random_;
};

}  // namespace switchboard::broker::redis
