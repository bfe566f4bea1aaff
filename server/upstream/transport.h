// Transport: the bottom of an upstream's call pipeline (call_layer.h). It
// sends each call over the HTTP pool to one of the upstream's URLs, alone or
// with others in one JSON-RPC batch, and classifies the answer
// (response_classification.h).
//
// Owned by UpstreamClient; the dispatcher's thread only. A call goes to the
// first URL whose circuit breaker lets it through, primary first, avoiding
// LayerCall::avoid_url while another URL can take it; with every breaker
// open it fails with UNAVAILABLE. With batching on (BatchOptions), a
// batchable call that finds every connection to its URL busy waits for the
// next free one, and the calls waiting then leave together as one JSON-RPC
// batch, split back by id; at most admission.max_queue_depth calls wait so,
// more go alone. Only a call waiting so can be cancelled.
//
// What a response tells of the URL (its breaker) and of the provider's
// limit (UpstreamObserver::OnThrottled, CallOutcome::throttled) counts once
// per request, however many calls it carried. Every attempt is reported to
// the observer (OnUpstreamRequest) and sampled for the response time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "server/event/dispatcher.h"
#include "server/http/http_pool.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/circuit_breaker.h"
#include "server/upstream/response_classification.h"
#include "server/upstream/response_time_estimate.h"
#include "server/upstream/upstream_observer.h"
#include "server/upstream/upstream_options.h"

namespace switchboard::upstream {

class Transport final : public CallLayer {
 public:
  // Runs when whether any URL answers over HTTP/2 changes: what the
  // connections carry at once changed with it.
  using Http2Listener = absl::AnyInvocable<void(bool any_http2)>;

  // `options`, `dispatcher`, `observer` and `response_time` must outlive the
  // transport.
  Transport(const UpstreamOptions& options, event::Dispatcher& dispatcher,
            std::unique_ptr<http::HttpPool> pool, UpstreamObserver& observer,
            ResponseTimeEstimate& response_time, Http2Listener on_http2_changed);
  // Abandons the requests in flight; their calls' callbacks never run.
  ~Transport() override;

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override;

 private:
  struct Flight {
    LayerCall call;
    OutcomeCallback done;
    // Waiting for a free connection to this URL, to leave in a batch.
    std::optional<size_t> waiting_on_url;
    std::optional<http::RequestId> request;
    // The request carries this call in a batch.
    bool batched = false;
  };

  // One URL: its breaker, and its requests sent or waiting to be.
  struct Url {
    CircuitBreaker breaker;
    size_t requests_in_flight = 0;
    std::deque<CallId> waiting;  // Batchable calls, in arrival order.
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

  bool MayBatch(const UpstreamCall& call) const;
  // The first URL whose breaker lets a call through, preferring one other
  // than `avoid`.
  std::optional<size_t> ChooseUrl(std::optional<size_t> avoid, absl::Time now);
  // Sends the calls `ids` to URL `url_index` as one request: alone, or as a
  // JSON-RPC batch when there are several.
  void SendRequest(size_t url_index, std::vector<CallId> ids);
  // Sends the calls waiting on URL `url_index`, in batches, while it has
  // room for requests.
  void SendWaiting(size_t url_index);
  void ReportBatchWaiting();
  // Requests URL `url` carries at once, by the protocol it last answered in.
  size_t CapacityOf(const Url& url) const;
  // Notes the protocol a response from URL `url_index` came over.
  void NoteProtocol(size_t url_index, int http_version);
  void OnResponse(Request request, absl::StatusOr<http::Response> response);
  // Answers call `id` with the verdict on its attempt; `verdict.throttled`
  // is set on the one call that carries its request's pushback.
  void Conclude(CallId id, const Request& request, absl::Time now, Verdict verdict);
  void Finish(CallId id, CallOutcome outcome);

  const UpstreamOptions& options_;
  event::Dispatcher& dispatcher_;
  std::unique_ptr<http::HttpPool> pool_;
  UpstreamObserver& observer_;
  ResponseTimeEstimate& response_time_;
  Http2Listener on_http2_changed_;
  std::vector<Url> urls_;     // By URL index.
  size_t batch_waiting_ = 0;  // Calls waiting on every URL.
  absl::flat_hash_map<CallId, Flight> flights_;
  uint64_t next_rpc_id_ = 1;
};

}  // namespace switchboard::upstream
