// CircuitBreaker: whether one upstream URL should be tried right now.
//
// Owned by the upstream client's Transport (transport.h), one per URL, and
// used on its dispatcher thread only (not thread-safe). Closed, it lets every
// call through and counts consecutive failures (transport errors and HTTP
// 5xx); at `failure_threshold` it opens and skips its URL for
// `open_duration`; then it lets exactly one probe through (half-open): the
// probe's success closes it, its failure opens it again for another
// `open_duration`. Time is passed in, so the breaker follows whichever clock
// its owner runs on.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::upstream {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  CircuitBreaker(uint32_t failure_threshold, absl::Duration open_duration)
      : failure_threshold_(failure_threshold), open_duration_(open_duration) {}

  // True when a call may go to the URL now. An open breaker whose time is up
  // turns half-open and allows this one call, the probe.
  bool Allow(absl::Time now);

  void OnSuccess();
  void OnFailure(absl::Time now);

  // The state as of `now` (an open breaker past its time reads half-open
  // until its probe is sent).
  State state(absl::Time now) const;

 private:
  const uint32_t failure_threshold_;
  const absl::Duration open_duration_;
  State state_ = State::kClosed;
  uint32_t consecutive_failures_ = 0;
  absl::Time open_until_ = absl::InfinitePast();
  bool probe_in_flight_ = false;
};

absl::string_view CircuitBreakerStateName(CircuitBreaker::State state);

}  // namespace switchboard::upstream
