// Poll(): for state that gives no change notification (a metrics page, what
// Redis or RabbitMQ holds), asks until the answer is the awaited one, within
// a deadline. The test then asserts on the returned value, so a state that
// never comes fails with the last answer seen.
#pragma once

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace switchboard::testing {

// Calls `probe` every 10 ms until its value satisfies `done` or `timeout`
// passes, and returns the last result.
template <typename T>
absl::StatusOr<T> Poll(absl::FunctionRef<absl::StatusOr<T>()> probe,
                       absl::FunctionRef<bool(const T&)> done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<T> result = probe();
  while (!(result.ok() && done(*result)) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    result = probe();
  }
  return result;
}

}  // namespace switchboard::testing
