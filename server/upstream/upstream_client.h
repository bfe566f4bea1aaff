// UpstreamClient: every call to one JSON-RPC upstream, from admission to
// answer (DESIGN.md §4).
//
// One per configured upstream, owned by Upstreams (upstreams.h). A call goes:
//   1. to the cache, for a method with a TTL: a fresh answer ends it;
//   2. to the coalescer, for a read method: an identical call in flight
//      shares its answer, and no request of its own is made;
//   3. to its client's quota (ClientQuotas), which refuses it at once with
//      RESOURCE_EXHAUSTED and a retry delay when the client is over it (so
//      cache hits and coalesced calls use no quota);
//   4. to the upstream's admission queue (its Limiter: a GCRA of this
//      process, or tokens leased from the fleet's shared limit; weighted-fair
//      across clients), which admits it or refuses it at once with
//      RESOURCE_EXHAUSTED and a retry delay. A call waits there only while
//      enough of its time is left for its request (the upstream's smoothed
//      response time and then some), so it is not admitted only to time
//      out upstream;
//   5. to the HTTP pool, at the first URL whose circuit breaker is closed
//      (primary first, then fallbacks). With batching on, a batchable call
//      that finds every connection to that URL busy waits for the next free
//      one, and the calls waiting then leave together as one JSON-RPC batch
//      (BatchOptions); the answer is split back by id. At most
//      admission.max_queue_depth calls wait so; more go alone;
//   6. back (for a batch: the HTTP outcome once for the request, then each
//      item for its call): a provider 429 or JSON-RPC rate-limit error throttles the
//      admission (pause, AIMD); a transport failure or 5xx counts against
//      the URL's breaker; a method on the retry list is admitted and sent
//      again (preferring another URL) with backoff while attempts and the
//      deadline allow. A method not on the list is never sent twice. A
//      request that never reached its URL (no connection could be made)
//      goes to the next URL at once, whatever its method, once per URL.
//
// The provider's answer comes back byte for byte: the JSON-RPC `result`, the
// `error` object, or for a raw call the whole body.
//
// Threading: construct, use and destroy on the dispatcher's thread only.
// Callbacks run on that thread, never inline in Start() or Cancel().
// Destroying the client answers every call still open with UNAVAILABLE.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher.h"
#include "server/http/http_pool.h"
#include "server/ratelimit/client_quotas.h"
#include "server/ratelimit/limiter.h"
#include "server/ratelimit/upstream_admission.h"
#include "server/upstream/call_coalescer.h"
#include "server/upstream/circuit_breaker.h"
#include "server/upstream/response_cache.h"
#include "server/upstream/response_classification.h"
#include "server/upstream/upstream_call.h"

namespace switchboard::upstream {

// Auto-batching: calls admitted while every connection to their URL is
// busy wait for the next free one and leave together, as one JSON-RPC
// batch. No timer: a call that finds a free connection goes at once, alone.
struct BatchOptions {
  size_t max_calls = 100;      // Calls per batch at most.
  size_t max_bytes = 1 << 20;  // Request body bytes per batch at most.
  // Not empty: only these methods are batched (transaction submissions and
  // coalescing.never methods too, when listed here).
  absl::flat_hash_set<std::string> methods;
  // With `methods` empty: every method but these, transaction submissions
  // and coalescing.never methods. Slow methods (getProgramAccounts) belong
  // here, so that they do not hold fast calls back.
  absl::flat_hash_set<std::string> except;
};

// One upstream's configuration, resolved.
struct UpstreamOptions {
  std::string name;
  std::vector<std::string> urls;  // Primary first.
  // One upstream request's timeout (also bounded by the call's deadline).
  absl::Duration request_timeout = absl::Seconds(10);
  absl::flat_hash_map<std::string, uint32_t> method_cost;  // Absent: 1.
  uint32_t max_attempts = 1;
  absl::flat_hash_set<std::string> retry_methods;
  absl::Duration retry_backoff = absl::Milliseconds(50);  // Doubles per attempt.
  absl::flat_hash_map<std::string, absl::Duration> cache_ttl;
  bool coalescing = true;
  // Never coalesced, besides kTransactionSubmissions.
  absl::flat_hash_set<std::string> never_coalesce;
  uint32_t breaker_failure_threshold = 5;
  absl::Duration breaker_open_time = absl::Seconds(5);
  size_t cache_max_entries = 10000;
  size_t cache_max_bytes = 64 << 20;
  ratelimit::UpstreamAdmissionOptions admission;
  // False: no rate limit (calls are admitted at once).
  bool rate_limited = true;
  // Requests one URL carries at once: its connections, over HTTP/1.1.
  // Batchable calls beyond wait to leave in a batch.
  size_t max_connections = 2;
  // Requests one connection carries at once over HTTP/2; 0: HTTP/1.1 only.
  // A URL counts as HTTP/2 from a response that came over it (the protocol
  // is negotiated per connection: ALPN may settle on HTTP/1.1) until one
  // comes over HTTP/1.1; while it does, it carries max_connections times
  // this, and admission.max_in_flight (set for HTTP/1.1) scales the same.
  size_t http2_streams_per_connection = 0;
  // Absent: no batching.
  std::optional<BatchOptions> batch;
};

// Metric hooks of every upstream, called on the dispatcher thread. Labels
// come from configuration (upstream names) or are bounded by the observer
// (methods, client ids).
class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;

  // One upstream request ended with `outcome` ("ok", "rpc_error",
  // "rpc_throttled", "http_429", "http_4xx", "http_5xx", "unavailable",
  // "timeout", "too_large", "invalid").
  virtual void OnUpstreamRequest(absl::string_view upstream, absl::string_view method,
                                 absl::string_view outcome, absl::Duration latency) = 0;
  // The provider throttled a call (HTTP 429 or a JSON-RPC rate-limit error).
  virtual void OnThrottled(absl::string_view upstream) = 0;
  virtual void OnCacheHit(absl::string_view upstream, absl::string_view method) = 0;
  virtual void OnCoalesced(absl::string_view upstream, absl::string_view method) = 0;
  // Admission: a call waited `queue_wait`; a call was refused; the rate moved.
  virtual void OnAdmitted(absl::string_view upstream, absl::Duration queue_wait) = 0;
  virtual void OnRejected(absl::string_view upstream, absl::string_view reason) = 0;
  virtual void OnRateChanged(absl::string_view upstream, double rate) = 0;
  virtual void OnQueueDepth(absl::string_view upstream, size_t depth) = 0;
  // Open TCP connections to the upstream went up or down by one.
  virtual void OnConnectionsChanged(absl::string_view upstream, int delta) = 0;
  // A JSON-RPC batch of `calls` calls (two or more) went out as one request.
  virtual void OnBatchSent(absl::string_view upstream, size_t calls) = 0;
  // Calls waiting for a free connection to leave in a batch, all URLs.
  virtual void OnBatchWaiting(absl::string_view upstream, size_t calls) = 0;
};

class UpstreamClient {
 public:
  // Makes the client's HTTP pool, reporting to `observer`.
  using PoolFactory =
      absl::AnyInvocable<std::unique_ptr<http::HttpPool>(http::HttpPoolObserver& observer)>;
  // Makes the limiter of the client's admission (on the dispatcher thread).
  using LimiterFactory = absl::AnyInvocable<std::unique_ptr<ratelimit::Limiter>()>;
  using CallId = uint64_t;

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

  // Withdraws a call still waiting for admission or for a connection to
  // batch on: its `done` runs with CANCELLED. A call already sent, or whose
  // request others share, runs to its end.
  void Cancel(CallId id);

  const UpstreamOptions& options() const { return options_; }
  const ratelimit::UpstreamAdmission& admission() const { return admission_; }

 private:
  class Observers;

  // A call that makes its own upstream requests (not a coalesced follower).
  struct Flight {
    UpstreamCall call;
    uint32_t cost = 1;
    std::optional<std::string> coalescing_key;  // Set when others may join.
    AnswerCallback done;                        // Unset when coalescing.
    uint32_t attempts = 0;
    std::optional<size_t> last_failed_url;
    // Requests that never reached their URL and went to the next at once.
    size_t never_sent_failovers = 0;
    std::optional<ratelimit::UpstreamAdmission::Ticket> ticket;
    // Admitted, and the request admission let through is not done: it holds
    // a place among the admission's max_in_flight.
    bool in_flight = false;
    // Waiting for a free connection to this URL, to leave in a batch.
    std::optional<size_t> waiting_on_url;
    std::optional<http::RequestId> request;
    // The last request carried this call in a batch.
    bool batched = false;
    std::unique_ptr<event::Timer> backoff;
  };

  // One URL: its breaker, and its requests sent or waiting to be.
  struct Url {
    CircuitBreaker breaker;
    size_t requests_in_flight = 0;
    std::deque<CallId> waiting;  // Batchable calls, in admission order.
    bool http2 = false;          // Its last response came over HTTP/2.
  };

  // The calls one request carries, with the JSON-RPC id each went out with.
  struct Request {
    size_t url_index = 0;
    absl::Time sent_at;
    bool batch = false;
    // Each call with its JSON-RPC id (0 for a raw body).
    std::vector<std::pair<CallId, uint64_t>> calls;
  };

  uint32_t CostOf(const UpstreamCall& call, absl::Status* error) const;
  bool MayCoalesce(const UpstreamCall& call) const;
  bool MayBatch(const UpstreamCall& call) const;
  bool MayRetry(const Flight& flight) const;
  // Sends call `id`, whose request never reached its URL, to the next URL
  // (through admission again). False when every URL was tried so.
  bool FailOver(CallId id);

  // The client's quota answered for call `id`: admission, or the end.
  void OnQuota(CallId id, ratelimit::AdmissionResult result);
  // Counts a call refused by its client's quota; its status, with the wait.
  absl::Status OverQuota(const ratelimit::AdmissionResult& refusal);
  void Admit(CallId id);
  // The time by which a call with `deadline`, queued at `now`, must leave
  // the admission queue: early enough to keep RequestReserve() for its
  // request, but with at least half its time left to wait.
  absl::Time AdmissionDeadline(absl::Time deadline, absl::Time now) const;
  // The time a call keeps for its request after admission.
  absl::Duration RequestReserve() const;
  // Folds one upstream response time into the estimate.
  void SampleResponseTime(absl::Duration response_time);
  void OnAdmission(CallId id, ratelimit::AdmissionResult result);
  // Frees the place `flight` holds among the admission's in-flight calls.
  void EndInFlight(Flight& flight);
  // Picks the call's URL and sends it, or queues it there for a batch.
  void Send(CallId id);
  // Sends the calls `ids` to URL `url_index` as one request: alone, or as a
  // JSON-RPC batch when there are several.
  void SendRequest(size_t url_index, std::vector<CallId> ids);
  // Sends the calls waiting on URL `url_index`, in batches, while it has
  // room for requests.
  void SendWaiting(size_t url_index);
  void ReportBatchWaiting();
  // Requests URL `url` carries at once, by the protocol it last answered in.
  size_t CapacityOf(const Url& url) const;
  // Notes the protocol a response from URL `url_index` came over; scales
  // admission's max_in_flight when it changes whether any URL speaks HTTP/2.
  void NoteProtocol(size_t url_index, int http_version);
  void OnResponse(Request request, absl::StatusOr<http::Response> response);
  // Splits a batch's answer by JSON-RPC id: the verdict for each call, in
  // the request's order.
  static std::vector<Verdict> SplitBatch(const Request& request, const http::Response& response,
                                         const ResponseSource& source);
  // Acts on the verdict on call `id`'s attempt: answer, fail over, retry.
  void Conclude(CallId id, const Request& request, absl::Time now, Verdict verdict);
  // Feedback to the admission's rate control (when rate limited).
  void Throttle(std::optional<absl::Duration> retry_after);
  void Succeeded(uint32_t cost);
  // The attempt failed with `error`: try again if allowed, else end.
  void RetryOrFinish(CallId id, absl::StatusOr<Answer> error);
  void Finish(CallId id, absl::StatusOr<Answer> result);
  // Runs `done` with `result` on a later loop iteration.
  void AnswerSoon(AnswerCallback done, absl::StatusOr<Answer> result);

  event::Dispatcher& dispatcher_;
  const UpstreamOptions options_;
  UpstreamObserver& observer_;
  ratelimit::ClientQuotas* const quotas_;
  std::unique_ptr<Observers> observers_;
  ratelimit::UpstreamAdmission admission_;
  std::unique_ptr<http::HttpPool> pool_;
  std::vector<Url> urls_;     // By URL index.
  size_t batch_waiting_ = 0;  // Calls waiting on every URL.
  ResponseCache cache_;
  CallCoalescer<absl::StatusOr<Answer>> coalescer_;
  std::map<CallId, Flight> flights_;
  // The upstream's response time, smoothed as TCP smooths round-trip times
  // (RFC 6298), and its mean deviation; zero until the first response.
  absl::Duration smoothed_response_time_;
  absl::Duration response_time_deviation_;
  uint64_t next_rpc_id_ = 1;
  absl::BitGen random_;  // Retry backoff jitter.
};

}  // namespace switchboard::upstream
