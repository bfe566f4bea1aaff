// Whether the Consumer opens a new stream after one ended: which statuses
// are worth another attempt. How soon is common/backoff.h's business.
#pragma once

#include "absl/status/status.h"

namespace switchboard::client::internal {

// True for the ends of a stream that a new attempt may cure: the server went
// away or drained (UNAVAILABLE, or even OK), was overloaded, or the call broke.
// False for verdicts on the request itself (INVALID_ARGUMENT,
// FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, ...), which the
// next attempt would meet again.
bool IsRetryableStreamEnd(const absl::Status& status);

}  // namespace switchboard::client::internal
