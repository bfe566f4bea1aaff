// AdmissionResult: the answer a rate-limit check gives a call.
//
// Produced by ClientQuotas (a client's own quota) and UpstreamAdmission (an
// upstream's queue); the service layer turns it into the call's gRPC status
// and, on RESOURCE_EXHAUSTED, a `retry-after-ms` trailer. A plain value.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace switchboard::ratelimit {

struct AdmissionResult {
  // OK: the call may go to the upstream now. RESOURCE_EXHAUSTED: refused at
  // once; try again after `retry_after`. DEADLINE_EXCEEDED: the deadline
  // passed while the call waited (UpstreamAdmission only).
  absl::Status status;
  // With RESOURCE_EXHAUSTED: how long until the limiter could have admitted
  // the call, as things stand. Zero otherwise.
  absl::Duration retry_after = absl::ZeroDuration();
};

}  // namespace switchboard::ratelimit
