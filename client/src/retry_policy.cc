#include "retry_policy.h"

#include <algorithm>

#include "absl/random/distributions.h"

namespace switchboard::client::internal {

bool IsRetryableStreamEnd(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

ExponentialBackoff::ExponentialBackoff(absl::Duration initial, absl::Duration max,
                                       double multiplier)
    : initial_(initial), max_(max), multiplier_(multiplier), step_(initial) {}

absl::Duration ExponentialBackoff::NextDelay(absl::BitGenRef random) {
  const absl::Duration step = step_;
  step_ = std::min(step_ * multiplier_, max_);
  return step / 2 + absl::Uniform(random, 0.0, 0.5) * step;
}

void ExponentialBackoff::Reset() { step_ = initial_; }

}  // namespace switchboard::client::internal
