// When and how soon the Consumer opens a new stream after one ended: which
// statuses are worth another attempt, and exponential backoff with jitter so
// that a fleet of workers does not reconnect in lockstep after a restart.
#pragma once

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace switchboard::client::internal {

// True for the ends of a stream that a new attempt may cure: the server went
// away or drained (UNAVAILABLE, or even OK), was overloaded, or the call broke.
// False for verdicts on the request itself (INVALID_ARGUMENT,
// FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, ...), which the
// next attempt would meet again.
bool IsRetryableStreamEnd(const absl::Status& status);

// Delays that start at `initial` and grow by `multiplier` up to `max`. Each
// delay is drawn uniformly from [d/2, d) ("equal jitter"), where d is the
// current step. Not thread-safe.
class ExponentialBackoff {
 public:
  ExponentialBackoff(absl::Duration initial, absl::Duration max, double multiplier);

  // The next delay; advances the step.
  absl::Duration NextDelay(absl::BitGenRef random);

  // Back to `initial`, after an attempt that succeeded.
  void Reset();

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const double multiplier_;
  absl::Duration step_;
};

}  // namespace switchboard::client::internal
