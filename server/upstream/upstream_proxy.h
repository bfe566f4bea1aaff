// UpstreamProxy: what the Rpc service asks of the JSON-RPC proxy (DESIGN.md
// §4): start a call on a named upstream, cancel it, describe a limit.
//
// The service layer (server/service) depends on this interface, not on the
// class behind it (Upstreams, upstreams.h), so its handlers can be tested
// against a fake.
//
// Threading: every method may be called from any thread; callbacks run on
// the proxy's own thread, never inline.
//
// The cancel contract: a call's `done` runs exactly once, cancelled or not.
// Cancel() withdraws a call that is still waiting (for its client's quota,
// for admission, or for a connection to batch on): its `done` then runs with
// CANCELLED. A call already sent, waiting out its retry backoff, or whose
// request other calls share, runs to its end and `done` gets its result.
// Cancelling a call that has ended, or cancelling twice, does nothing. Each
// upstream's pipeline keeps this contract layer by layer (call_layer.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/ratelimit/lease_service.h"
#include "server/upstream/upstream_call.h"

namespace switchboard::upstream {

class UpstreamProxy {
 public:
  // A call in progress, for Cancel().
  struct CallHandle {
    std::string upstream;
    uint64_t id = 0;
  };

  // An upstream's rate limit as this replica sees it, and for a global
  // limit as the fleet shares it.
  struct LimitDescription {
    bool rate_limited = false;
    bool global = false;
    double configured_rate = 0;
    double burst = 0;
    double rate = 0;  // Now, after provider pushback (AIMD).
    size_t queue_depth = 0;
    size_t in_flight = 0;
    bool fallback = false;  // Global: running on this replica's share.
    // Global: the shared state in Redis, or why it could not be read.
    absl::StatusOr<ratelimit::SharedLimitState> shared = absl::UnavailableError("not global");
  };

  virtual ~UpstreamProxy() = default;

  // Whether `name` is a configured upstream.
  virtual bool Contains(absl::string_view name) const = 0;

  // The request timeout of upstream `name`, which must exist: the deadline
  // of a call that brings none.
  virtual absl::Duration request_timeout(absl::string_view name) const = 0;

  // Starts `call` on upstream `name`, which must exist. `done` runs exactly
  // once (see the cancel contract above). Calling Cancel() is optional.
  virtual CallHandle Call(absl::string_view name, UpstreamCall call, AnswerCallback done) = 0;

  // Withdraws the call if it is still waiting (see the cancel contract).
  virtual void Cancel(const CallHandle& handle) = 0;

  // Describes upstream `name`'s rate limit; `name` must exist. `done` runs
  // once.
  virtual void DescribeLimit(absl::string_view name,
                             absl::AnyInvocable<void(absl::StatusOr<LimitDescription>)> done) = 0;
};

}  // namespace switchboard::upstream
