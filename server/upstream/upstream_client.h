// UpstreamClient: every call to one JSON-RPC upstream, from the cache to
// the provider's answer (DESIGN.md §4).
//
// One per configured upstream, owned by Upstreams (upstreams.h). The client
// checks a call (a raw body must name its methods; its cost is the sum of
// theirs) and hands it to a stack of layers, each one small class behind
// the CallLayer interface (call_layer.h, which states the cancel contract
// they all keep). A call goes down:
//   1. CacheLayer: for a method with a TTL, a fresh answer ends it;
//   2. CoalescingLayer: for a read method, an identical call in flight
//      shares its answer, and no request of its own is made;
//   3. QuotaLayer (with client quotas): its client's quota refuses it at
//      once with RESOURCE_EXHAUSTED and a retry delay when the client is
//      over it (so cache hits and coalesced calls use no quota);
//   4. RetryLayer: sends its attempts, one after another: a method on the
//      retry list is sent again (preferring another URL) with backoff while
//      attempts and the deadline allow, a method not on it never twice; a
//      request that never reached its URL goes to the next URL at once,
//      whatever its method, once per URL;
//   5. AdmissionLayer (when rate limited): each attempt waits in the
//      upstream's admission queue (its Limiter, weighted-fair across
//      clients) only while enough of its time is left for its request, or
//      is refused at once with RESOURCE_EXHAUSTED and a retry delay; a
//      provider 429 or JSON-RPC rate-limit error throttles the admission
//      (pause, AIMD), a served call raises its rate;
//   6. Transport: the HTTP pool, at the first URL whose circuit breaker is
//      closed (primary first, then fallbacks). With batching on, a batchable
//      call that finds every connection to that URL busy waits for the next
//      free one, and the calls waiting then leave together as one JSON-RPC
//      batch (BatchOptions), split back by id; a transport failure or 5xx
//      counts against the URL's breaker.
//
// The provider's answer comes back byte for byte: the JSON-RPC `result`, the
// `error` object, or for a raw call the whole body.
//
// Threading: construct, use and destroy on the dispatcher's thread only.
// Callbacks run on that thread, never inline in Start() or Cancel() (an
// answer a layer gives at once is delivered on the next loop iteration).
// Destroying the client answers every call still open with UNAVAILABLE.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/event/dispatcher.h"
#include "server/http/http_pool.h"
#include "server/ratelimit/client_quotas.h"
#include "server/ratelimit/limiter.h"
#include "server/ratelimit/upstream_admission.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/response_time_estimate.h"
#include "server/upstream/upstream_call.h"
#include "server/upstream/upstream_observer.h"
#include "server/upstream/upstream_options.h"

namespace switchboard::upstream {

class UpstreamClient {
 public:
  // Makes the client's HTTP pool, reporting to `observer`.
  using PoolFactory =
      absl::AnyInvocable<std::unique_ptr<http::HttpPool>(http::HttpPoolObserver& observer)>;
  // Makes the limiter of the client's admission (on the dispatcher thread).
  using LimiterFactory = absl::AnyInvocable<std::unique_ptr<ratelimit::Limiter>()>;
  using CallId = CallLayer::CallId;

  // `dispatcher`, `observer` and `quotas` must outlive the client. Without
  // `quotas` no client quota applies; without `make_limiter` the admission
  // limits at options.admission's rate in this process alone.
  UpstreamClient(event::Dispatcher& dispatcher, UpstreamOptions options, PoolFactory make_pool,
                 UpstreamObserver& observer, ratelimit::ClientQuotas* quotas = nullptr,
                 LimiterFactory make_limiter = nullptr);
  ~UpstreamClient();

  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  // Starts `call` under `id`, which the caller keeps unique; `done` runs
  // exactly once. INVALID_ARGUMENT (through `done`) for a raw body that
  // names no method.
  void Start(CallId id, UpstreamCall call, AnswerCallback done);

  // Withdraws a call still waiting for its client's quota, for admission or
  // for a connection to batch on: its `done` runs with CANCELLED. A call
  // already sent, in its retry backoff, or whose request others share, runs
  // to its end (the cancel contract of call_layer.h).
  void Cancel(CallId id);

  // Paces one request that is not a call (a provider subscribe over
  // WebSocket, server/subscriptions) through this upstream's admission, at
  // `method`'s cost, as client `client_id`. `done` runs once on the
  // dispatcher, never inline: OK when it may go, or the admission's
  // refusal; never after CancelAdmit(ticket). Such a request holds no HTTP
  // connection: it leaves admission's in-flight count once admitted.
  ratelimit::UpstreamAdmission::Ticket Admit(std::string client_id, absl::string_view method,
                                             absl::Time deadline,
                                             ratelimit::UpstreamAdmission::Callback done);
  void CancelAdmit(ratelimit::UpstreamAdmission::Ticket ticket) { admission_.Cancel(ticket); }

  const UpstreamOptions& options() const { return options_; }
  const ratelimit::UpstreamAdmission& admission() const { return admission_; }

 private:
  class Observers;

  uint32_t CostOf(const UpstreamCall& call, absl::Status* error) const;
  // Builds the layers, bottom first.
  void BuildLayers(PoolFactory make_pool, ratelimit::ClientQuotas* quotas);
  // Answers call `id`'s caller: at once, or on the next loop iteration when
  // the answer comes inside Start() or Cancel().
  void Deliver(CallId id, absl::StatusOr<Answer> result);
  // Runs `done` with `result` on a later loop iteration.
  void AnswerSoon(AnswerCallback done, absl::StatusOr<Answer> result);

  event::Dispatcher& dispatcher_;
  const UpstreamOptions options_;
  UpstreamObserver& observer_;
  std::unique_ptr<Observers> observers_;
  ratelimit::UpstreamAdmission admission_;
  ResponseTimeEstimate response_time_;
  // Bottom (the Transport) first; layers_.back() is the top, the CacheLayer.
  std::vector<std::unique_ptr<CallLayer>> layers_;
  // The callers' callbacks of the calls open, by id.
  std::map<CallId, AnswerCallback> open_;
  // Start() or Cancel() calls under way: answers given meanwhile wait.
  int calls_under_way_ = 0;
};

}  // namespace switchboard::upstream
