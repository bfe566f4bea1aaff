#include "server/upstream/response_time_estimate.h"

namespace switchboard::upstream {
namespace {

// What a call keeps for its request after admission besides the upstream's
// response time: the answer's way back to the caller (whose deadline comes
// before the one the server sees, by the request's transit time), the
// dispatcher's timer granularity, and scheduling delays on a busy host.
constexpr absl::Duration kRequestReserveFloor = absl::Milliseconds(20);

}  // namespace

void ResponseTimeEstimate::Sample(absl::Duration response_time) {
  if (smoothed_ == absl::ZeroDuration()) {
    smoothed_ = response_time;
    deviation_ = response_time / 2;
    return;
  }
  deviation_ = (3 * deviation_ + absl::AbsDuration(smoothed_ - response_time)) / 4;
  smoothed_ = (7 * smoothed_ + response_time) / 8;
}

absl::Duration ResponseTimeEstimate::RequestReserve() const {
  return kRequestReserveFloor + smoothed_ + 4 * deviation_;
}

}  // namespace switchboard::upstream
