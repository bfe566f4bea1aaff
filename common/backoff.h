// Exponential backoff with jitter: how long to wait before attempt n of
// something that failed.
//
// The one backoff of the project. The Redis connections wait by it between
// reconnects (full jitter), the client library's Consumer between streams
// and the example workers between retries (equal jitter), and the upstream
// retry asks for the delay of attempt n without keeping state. The ceiling of
// attempt n is min(max, initial * multiplier^n); the delay is drawn under it,
// so a fleet that failed together does not retry in lockstep.
//
// The random source is passed in on every call: tests pass a seeded or a
// fixed generator and get the same delays every run.
#pragma once

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"

namespace switchboard::common {

// Where in [0, ceiling] a delay is drawn from.
enum class Jitter {
  // Uniform over [0, ceiling]: the widest spread, for many peers that lost
  // one server together and must not come back together.
  kFull,
  // Uniform over [ceiling/2, ceiling]: spread out, yet never retries at once.
  kEqual,
};

struct BackoffOptions {
  // The ceiling of attempt 0.
  absl::Duration initial = absl::Milliseconds(100);
  // No ceiling exceeds this, attempt 0's included.
  absl::Duration max = absl::Seconds(10);
  // The ceiling grows by this factor per attempt; at least 1.
  double multiplier = 2.0;
  Jitter jitter = Jitter::kFull;
};

// How a connection to a shared server (Redis, RabbitMQ) waits between
// reconnects: full jitter under a ceiling that doubles from `initial` up to
// `max`, so that replicas that lost the server together spread their
// reconnects over the whole range instead of coming back in one storm.
BackoffOptions ReconnectBackoff(absl::Duration initial, absl::Duration max);

// The largest delay attempt `attempt` (counted from 0) may draw:
// min(max, initial * multiplier^attempt).
absl::Duration BackoffCeiling(const BackoffOptions& options, int attempt);

// The delay before attempt `attempt` (counted from 0), drawn from `random`
// under BackoffCeiling() as `options.jitter` says. Pure: the same draws from
// `random` give the same delay.
absl::Duration BackoffDelay(const BackoffOptions& options, int attempt, absl::BitGenRef random);

// BackoffDelay() for callers that count their failures in one place: each
// Next() is the delay of one attempt more, until Reset(). Not thread-safe:
// one per retry loop, used by one thread at a time.
class Backoff {
 public:
  explicit Backoff(const BackoffOptions& options) : options_(options) {}

  // The delay before the next attempt; the one after has a higher ceiling,
  // until the ceiling reaches `max`.
  absl::Duration Next(absl::BitGenRef random);

  // An attempt succeeded: the next failure waits as attempt 0 again.
  void Reset() { attempt_ = 0; }

 private:
  const BackoffOptions options_;
  int attempt_ = 0;  // Stops growing once its ceiling is `max`.
};

}  // namespace switchboard::common
