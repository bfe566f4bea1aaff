// What one upstream attempt's outcome means for a call: a pure function of
// the HTTP result and the JSON-RPC body, with no state and no I/O.
//
// The upstream client's Transport (transport.h) classifies every response
// it gets, tells the URL's circuit breaker and counts the outcome; the layers
// above act on the rest of the verdict (CallOutcome, call_layer.h): the
// AdmissionLayer tells the rate control, the RetryLayer sends the call to the
// next URL or retries it. For a JSON-RPC batch the HTTP-level part
// (transport failure, 429, 5xx) is classified once for the whole request
// and each item of the answer on its own. Thread-safe.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/http/http_pool.h"
#include "server/upstream/upstream_call.h"

namespace switchboard::upstream {

struct Verdict {
  // What the URL's circuit breaker learns.
  enum class UrlHealth {
    kUnknown,  // Nothing (the request failed on our side: response too large).
    kUp,       // The host answered (even an error, even a 429).
    kDown,     // A transport failure or an HTTP 5xx.
  };

  // The metric label of the attempt: "ok", "rpc_error", "rpc_throttled",
  // "http_429", "http_4xx", "http_5xx", "unavailable", "timeout",
  // "too_large", "invalid".
  absl::string_view outcome;
  UrlHealth url_health = UrlHealth::kUnknown;
  // The provider asked to slow down (HTTP 429 or a JSON-RPC rate-limit
  // error): the admission pauses, and AIMD lowers the rate.
  bool throttled = false;
  // From the provider's Retry-After header.
  std::optional<absl::Duration> retry_after;
  // The provider served the call (AIMD counts it as a success).
  bool served = false;
  // Another attempt may cure the failure, for a call whose method may be
  // sent again (retry.methods) and attempts are left.
  bool retryable = false;
  // The request never reached its URL (no connection could be made): it may
  // go to the next URL at once, whatever its method.
  bool never_sent = false;
  // The call's end if it ends with this attempt: the answer or the error.
  absl::StatusOr<Answer> result = absl::UnknownError("unclassified");
};

// Names the upstream and URL in error messages; `url` may carry an API key
// and is masked (http::MaskUrl) whenever it is shown.
struct ResponseSource {
  absl::string_view upstream;
  absl::string_view url;
};

// The verdict on an HTTP result that carries no body to read for the call:
// a transport failure, an HTTP 429 or an HTTP 5xx. nullopt for any other
// response, whose body then holds the answer(s).
std::optional<Verdict> ClassifyHttpFailure(const absl::StatusOr<http::Response>& response,
                                           const ResponseSource& source);

// The verdict on one JSON-RPC response object `body` (a whole response, or
// one item of a batch answer) that came with HTTP status `http_status`.
Verdict ClassifyRpcResponse(int http_status, absl::string_view body, const ResponseSource& source);

// The verdict on a whole HTTP result for one call: ClassifyHttpFailure,
// then, for a raw call answered 2xx, the whole body, else
// ClassifyRpcResponse.
Verdict ClassifyResponse(const absl::StatusOr<http::Response>& response, bool raw,
                         const ResponseSource& source);

// The verdict for a batched call that the provider's batch answer left out
// (no item with its id), or all of a batch whose answer `why` is not a
// list of responses.
Verdict MissingFromBatch(absl::string_view why, const ResponseSource& source);

}  // namespace switchboard::upstream
