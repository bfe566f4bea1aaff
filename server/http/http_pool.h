// HttpPool: HTTP POSTs to one upstream's hosts over a small, capped set of
// kept-alive connections (DESIGN.md §3 "Upstreams", §4).
//
// The JSON-RPC proxy holds one pool per upstream and sends every call for it
// through that pool, whatever the number of callers, so the provider sees a
// few long-lived connections. This layer moves bytes only: an HTTP status
// (a 429, a 5xx) is a Response, not an error; failing to get a response at
// all is a status (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED).
// Retries, failover and rate limiting belong to the layer above.
//
// HttpPoolImpl (http_pool_impl.h) is the libcurl implementation; only the
// wiring code names it, so the layer above can be tested against a fake.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace switchboard::http {

// One POST of a JSON body.
struct Request {
  std::string url;  // http:// or https://; may carry an API key (never logged).
  std::string body;
  // Covers the whole request from Send(): waiting for a free connection,
  // connecting, sending and receiving the whole response.
  absl::Duration timeout = absl::Seconds(10);
  // Whether the server may see the request twice. By default it reaches the
  // server at most once: its body goes through a read callback that cannot
  // rewind, so libcurl fails the request rather than send it again on a new
  // connection when a kept-alive one dies before any byte of the answer, at
  // the cost of a second write per request (headers, then body). A request
  // that may repeat (a call its caller would retry anyway) leaves in one
  // write, and libcurl may send it again on a new connection in that case.
  bool may_repeat = false;
};

// Whatever HTTP status the server answered with.
struct Response {
  int status = 0;
  std::string body;
  // From a Retry-After header, in delay-seconds or HTTP-date form (a date in
  // the past is zero); absent when the header is missing or unparseable.
  std::optional<absl::Duration> retry_after;
  // The HTTP major version the response came over: 1 (HTTP/1.x) or 2.
  int http_version = 1;
};

// Names a request for Cancel(). Unique within a pool; never 0.
using RequestId = uint64_t;

// A request's result: a Response, or UNAVAILABLE (connection refused or
// reset, DNS or TLS failure, pool destroyed), DEADLINE_EXCEEDED (the
// request's timeout passed), RESOURCE_EXHAUSTED (response over the size
// limit, too many requests in flight) or INVALID_ARGUMENT (malformed URL,
// scheme other than http and https). An UNAVAILABLE for a request that
// never reached the server (no connection could be made: refused, DNS, TLS
// handshake) is marked so: RequestNeverSent() tells.
using ResponseCallback = absl::AnyInvocable<void(absl::StatusOr<Response> response)>;

// The mark of a failure whose request never reached the server.
inline constexpr char kRequestNeverSentPayload[] = "type.switchboard.dev/http-request-never-sent";

// True when `status` failed a request that never reached the server, so
// that sending it elsewhere cannot make the server act on it twice.
inline bool RequestNeverSent(const absl::Status& status) {
  return status.GetPayload(kRequestNeverSentPayload).has_value();
}

// What became of one request, for metrics.
struct RequestOutcome {
  // kOk when a response came back (whatever its HTTP status); kCancelled
  // after Cancel(); otherwise the code the callback got.
  absl::StatusCode code = absl::StatusCode::kOk;
  int http_status = 0;     // The response's status; 0 without a response.
  absl::Duration latency;  // From Send() to the outcome.
};

// Metric hooks of a pool, called on its dispatcher thread, possibly from
// inside a pool method or a libcurl call: they must not call the pool. One
// observer per pool, or one shared by pools that need not be told apart.
class HttpPoolObserver {
 public:
  virtual ~HttpPoolObserver() = default;

  // A TCP connection was opened or closed (every socket the pool opens,
  // including failed connect attempts, is reported once each way), so
  // opened minus closed is exactly the number of open connections.
  virtual void OnConnectionOpened() = 0;
  virtual void OnConnectionClosed() = 0;

  // A request finished, failed, was cancelled or was cut short by the
  // pool's destruction. Once per request.
  virtual void OnRequestDone(const RequestOutcome& outcome) = 0;
};

// Threading: an HttpPool belongs to one dispatcher. Construct, use and
// destroy it on that dispatcher's thread only. Callbacks run on that thread,
// never inline in the call that caused them; they may call Send() and
// Cancel() but must not destroy the pool.
class HttpPool {
 public:
  // Destroying the pool runs the callbacks of the requests still in flight
  // with UNAVAILABLE, from the destructor (they must not use the pool), and
  // closes its connections.
  virtual ~HttpPool() = default;

  // Sends `request`; `done` runs exactly once with its result, unless the
  // request is cancelled first.
  virtual RequestId Send(Request request, ResponseCallback done) = 0;

  // Abandons request `id`: its callback never runs. Returns false when the
  // request already finished (its callback ran) or is unknown. An HTTP/1.1
  // connection in the middle of the request is closed.
  virtual bool Cancel(RequestId id) = 0;

  // TCP connections open right now.
  virtual int open_connections() const = 0;
};

}  // namespace switchboard::http
