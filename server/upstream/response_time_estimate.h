// ResponseTimeEstimate: an upstream's response time, smoothed as TCP smooths
// round-trip times (RFC 6298), and the time a call keeps for its request
// after admission.
//
// One per UpstreamClient: the Transport samples every response, the
// AdmissionLayer reads RequestReserve() to decide how long a call may wait.
// The dispatcher's thread only.
#pragma once

#include "absl/time/time.h"

namespace switchboard::upstream {

class ResponseTimeEstimate {
 public:
  // Folds one upstream response time into the estimate.
  void Sample(absl::Duration response_time);

  // The time a call keeps for its request after admission: the smoothed
  // response time, four mean deviations, and a floor for the answer's way
  // back and scheduling delays.
  absl::Duration RequestReserve() const;

 private:
  // Zero until the first response.
  absl::Duration smoothed_ = absl::ZeroDuration();
  absl::Duration deviation_ = absl::ZeroDuration();
};

}  // namespace switchboard::upstream
