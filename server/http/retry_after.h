// ParseRetryAfter: the delay a Retry-After header asks for (RFC 9110 §10.2.3).
//
// Used by the HTTP pool on every response, so the rate limiter above can
// pause an upstream for as long as the provider asked. Pure; thread-safe.
#pragma once

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::http {

// The delay in `value`, a Retry-After header's value (surrounding whitespace
// allowed): delay-seconds ("120"), or an HTTP-date in any of the three forms
// HTTP allows ("Wed, 21 Oct 2015 07:28:00 GMT", the obsolete RFC 850 and
// asctime ones), taken relative to `now` and zero when already past.
// nullopt when `value` is neither, or the number does not fit.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

}  // namespace switchboard::http
