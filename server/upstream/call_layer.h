// CallLayer: one stage of an upstream's call pipeline, and the interface
// every stage offers the stage above it (DESIGN.md §1, "The upstream path is
// a stack of small layers").
//
// UpstreamClient (upstream_client.h) stacks them, as google-cloud-cpp
// decorates its stubs, top first: CacheLayer → CoalescingLayer → QuotaLayer
// (with client quotas) → RetryLayer → AdmissionLayer (when rate limited) →
// Transport. Each layer holds the next one below it and calls it through
// this interface, so each is tested alone against a fake next layer.
//
// Calls are named by the caller's CallId, unique among the calls open in a
// layer. A layer passes a call down under the same id (RetryLayer sends its
// attempts one after another, each under the call's id), so Cancel() reaches
// whichever layer holds the call.
//
// The cancel contract, the same in every layer and in UpstreamProxy
// (upstream_proxy.h):
//   - `done` runs exactly once per Start(), cancelled or not;
//   - Cancel() withdraws a call that is still waiting (for its client's
//     quota, for admission, or for a connection to batch on): its `done` then
//     runs with CANCELLED. A call already sent, in its retry backoff, or
//     whose request other calls share, runs to its end;
//   - cancelling a call that has ended, or cancelling twice, does nothing.
//
// Threading: the dispatcher's thread only. Inside a layer, `done` may run
// inside Start() (a cache hit, a refusal) or Cancel() (CANCELLED); a layer
// ends its own record of a call before it runs the call's `done`, so `done`
// may start the call again under the same id. UpstreamClient, at the top,
// defers those answers so that its own callers never see a callback inline.
// Destroying a layer drops the callbacks of its open calls without running
// them: UpstreamClient answers its callers itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/upstream/upstream_call.h"

namespace switchboard::upstream {

// A call on its way down the stack.
struct LayerCall {
  UpstreamCall call;
  // Its cost in rate-limit units (UpstreamOptions::method_cost).
  uint32_t cost = 1;
  // A hint to the transport: the URL (by index) the call's last attempt
  // failed on, to be avoided while another URL can take the call.
  std::optional<size_t> avoid_url;
  // The provider may see the call twice (the retry layer would try it
  // again): its HTTP request may repeat (http::Request::may_repeat).
  bool may_repeat = false;
};

// How a call ended, as the layers below tell the layers above. Everything
// but `result` describes the call's last upstream attempt, as the transport
// classified it (Verdict, response_classification.h); a call that ended
// before reaching the transport carries only its `result`.
struct CallOutcome {
  // An outcome that carries only its result.
  explicit CallOutcome(absl::StatusOr<Answer> result) : result(std::move(result)) {}

  absl::StatusOr<Answer> result;
  // Another attempt may cure the failure (for a method on retry.methods).
  bool retryable = false;
  // The request never reached its URL: the next URL may take it, whatever
  // the method.
  bool never_sent = false;
  // The provider served the call (the rate control counts a success).
  bool served = false;
  // The provider pushed back (HTTP 429 or a JSON-RPC rate-limit error). Set
  // on one call of the request that carried the pushback, so that a batch
  // throttles the limiter once.
  bool throttled = false;
  std::optional<absl::Duration> retry_after;  // With `throttled`.
  // The URL (by index) the attempt failed on, when the URL is to blame.
  std::optional<size_t> failed_url;
};

using OutcomeCallback = absl::AnyInvocable<void(CallOutcome outcome)>;

class CallLayer {
 public:
  using CallId = uint64_t;

  virtual ~CallLayer() = default;

  // Starts `call` under `id`; `done` runs exactly once (see the contract).
  virtual void Start(CallId id, LayerCall call, OutcomeCallback done) = 0;

  // Withdraws call `id` if it is still waiting (see the contract).
  virtual void Cancel(CallId id) = 0;
};

}  // namespace switchboard::upstream
