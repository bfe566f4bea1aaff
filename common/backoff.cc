#include "common/backoff.h"

#include <cmath>
#include <cstdint>

#include "absl/random/distributions.h"

namespace switchboard::common {

BackoffOptions ReconnectBackoff(absl::Duration initial, absl::Duration max) {
  BackoffOptions backoff;
  backoff.initial = initial;
  backoff.max = max;
  backoff.multiplier = 2.0;
  backoff.jitter = Jitter::kFull;
  return backoff;
}

absl::Duration BackoffCeiling(const BackoffOptions& options, int attempt) {
  if (options.initial <= absl::ZeroDuration()) return absl::ZeroDuration();
  // Compared as a factor first: initial * multiplier^attempt overflows long
  // before a retry loop gives up.
  const double factor = std::pow(options.multiplier, attempt);
  if (factor >= absl::FDivDuration(options.max, options.initial)) return options.max;
  return options.initial * factor;
}

absl::Duration BackoffDelay(const BackoffOptions& options, int attempt, absl::BitGenRef random) {
  const int64_t ceiling_ns = absl::ToInt64Nanoseconds(BackoffCeiling(options, attempt));
  const int64_t floor_ns = options.jitter == Jitter::kEqual ? ceiling_ns / 2 : 0;
  return absl::Nanoseconds(
      absl::Uniform<int64_t>(absl::IntervalClosedClosed, random, floor_ns, ceiling_ns));
}

absl::Duration Backoff::Next(absl::BitGenRef random) {
  const absl::Duration delay = BackoffDelay(options_, attempt_, random);
  if (BackoffCeiling(options_, attempt_) < options_.max) ++attempt_;
  return delay;
}

}  // namespace switchboard::common
