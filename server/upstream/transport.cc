#include "server/upstream/transport.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::upstream {
namespace {

// The method label of a call: its method, or "raw".
absl::string_view MethodLabel(const UpstreamCall& call) {
  return call.raw_body.empty() ? absl::string_view(call.method) : "raw";
}

// The calls' requests with their JSON-RPC ids, in the request's order.
using CallsWithIds = std::vector<std::pair<CallLayer::CallId, uint64_t>>;

// Splits a batch's answer by JSON-RPC id: the verdict for each call of
// `calls`, in order.
std::vector<Verdict> SplitBatch(const CallsWithIds& calls, const http::Response& response,
                                const ResponseSource& source) {
  absl::StatusOr<std::vector<absl::string_view>> items = SplitBatchItems(response.body);
  if (!items.ok()) {
    // A provider that does not take batches answers with one error object.
    return std::vector<Verdict>(
        calls.size(),
        MissingFromBatch(absl::StrCat("(HTTP ", response.status,
                                      ") is not a list of responses: ", items.status().message()),
                         source));
  }
  absl::flat_hash_map<uint64_t, absl::string_view> by_id;
  for (absl::string_view item : *items) {
    absl::StatusOr<ResponseParts> parts = SplitResponse(item);
    if (!parts.ok()) continue;
    if (std::optional<uint64_t> id = NumericId(*parts)) by_id.emplace(*id, item);
  }
  std::vector<Verdict> verdicts;
  verdicts.reserve(calls.size());
  for (const auto& [call, rpc_id] : calls) {
    auto item = by_id.find(rpc_id);
    verdicts.push_back(item == by_id.end()
                           ? MissingFromBatch("has no response for the call", source)
                           : ClassifyRpcResponse(response.status, item->second, source));
  }
  return verdicts;
}

}  // namespace

Transport::Transport(const UpstreamOptions& options, event::Dispatcher& dispatcher,
                     std::unique_ptr<http::HttpPool> pool, UpstreamObserver& observer,
                     ResponseTimeEstimate& response_time, Http2Listener on_http2_changed)
    : options_(options),
      dispatcher_(dispatcher),
      pool_(std::move(pool)),
      observer_(observer),
      response_time_(response_time),
      on_http2_changed_(std::move(on_http2_changed)) {
  urls_.reserve(options_.urls.size());
  for (size_t i = 0; i < options_.urls.size(); ++i) {
    urls_.push_back(
        Url{CircuitBreaker(options_.breaker_failure_threshold, options_.breaker_open_time),
            0,
            {},
            false});
  }
}

Transport::~Transport() {
  // Cancelling a batch's request once is enough for all of its calls.
  for (const auto& [id, flight] : flights_) {
    if (flight.request.has_value()) pool_->Cancel(*flight.request);
  }
}

bool Transport::MayBatch(const UpstreamCall& call) const {
  if (!options_.batch.has_value() || !call.raw_body.empty()) return false;
  if (!options_.batch->methods.empty()) return options_.batch->methods.contains(call.method);
  return !options_.batch->except.contains(call.method) && !IsTransactionSubmission(call.method) &&
         !options_.never_coalesce.contains(call.method);
}

std::optional<size_t> Transport::ChooseUrl(std::optional<size_t> avoid, absl::Time now) {
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < urls_.size(); ++i) {
      if (pass == 0 && avoid == i) continue;
      if (urls_[i].breaker.Allow(now)) return i;
    }
  }
  return std::nullopt;
}

void Transport::Start(CallId id, LayerCall call, OutcomeCallback done) {
  const absl::Time now = dispatcher_.clock().Now();
  const std::optional<size_t> chosen = ChooseUrl(call.avoid_url, now);
  if (!chosen.has_value()) {
    done(CallOutcome{absl::UnavailableError(absl::StrCat("every URL of upstream ", options_.name,
                                                         " is failing (circuit breakers open)"))});
    return;
  }
  if (call.call.deadline <= now) {
    done(CallOutcome{absl::DeadlineExceededError("the call's deadline passed before it was sent")});
    return;
  }
  Url& url = urls_[*chosen];
  const bool waits = url.requests_in_flight >= CapacityOf(url) && MayBatch(call.call) &&
                     batch_waiting_ < options_.admission.max_queue_depth;
  Flight flight;
  flight.call = std::move(call);
  flight.done = std::move(done);
  if (waits) flight.waiting_on_url = *chosen;
  flights_.emplace(id, std::move(flight));
  if (waits) {
    url.waiting.push_back(id);
    ++batch_waiting_;
    ReportBatchWaiting();
    return;
  }
  SendRequest(*chosen, {id});
}

void Transport::Cancel(CallId id) {
  auto it = flights_.find(id);
  if (it == flights_.end() || !it->second.waiting_on_url.has_value()) return;
  Finish(id, CallOutcome{absl::CancelledError("the call was cancelled")});
}

void Transport::SendRequest(size_t url_index, std::vector<CallId> ids) {
  const absl::Time now = dispatcher_.clock().Now();
  const bool batch = ids.size() > 1;
  Request sent{url_index, now, batch, {}};
  sent.calls.reserve(ids.size());
  http::Request request;
  request.url = options_.urls[url_index];
  // One write instead of two when every call in it may repeat.
  request.may_repeat = true;
  absl::Time latest_deadline = now;
  // A call's request body: a raw call's own, or built with a fresh id.
  const auto body_of = [&](CallId id) -> std::string {
    const LayerCall& layer_call = flights_.at(id).call;
    const UpstreamCall& call = layer_call.call;
    request.may_repeat = request.may_repeat && layer_call.may_repeat;
    latest_deadline = std::max(latest_deadline, call.deadline);
    if (!call.raw_body.empty()) {
      sent.calls.emplace_back(id, 0);
      return call.raw_body;
    }
    const uint64_t rpc_id = next_rpc_id_++;
    sent.calls.emplace_back(id, rpc_id);
    return BuildRequest(rpc_id, call.method, call.params_json);
  };
  if (batch) {
    std::vector<std::string> bodies;
    bodies.reserve(ids.size());
    for (CallId id : ids) bodies.push_back(body_of(id));
    request.body = BuildBatch(std::vector<absl::string_view>(bodies.begin(), bodies.end()));
    observer_.OnBatchSent(options_.name, ids.size());
  } else {
    request.body = body_of(ids.front());
  }
  // A batch waits for its slowest member's deadline: a call whose own
  // deadline passes meanwhile has been given up by its caller anyway.
  request.timeout = std::min(options_.request_timeout, latest_deadline - now);
  ++urls_[url_index].requests_in_flight;
  const http::RequestId request_id =
      pool_->Send(std::move(request),
                  [this, sent = std::move(sent)](absl::StatusOr<http::Response> response) mutable {
                    OnResponse(std::move(sent), std::move(response));
                  });
  for (CallId id : ids) {
    Flight& flight = flights_.at(id);
    flight.request = request_id;
    flight.batched = batch;
  }
}

void Transport::SendWaiting(size_t url_index) {
  Url& url = urls_[url_index];
  while (url.requests_in_flight < CapacityOf(url) && !url.waiting.empty()) {
    const absl::Time now = dispatcher_.clock().Now();
    std::vector<CallId> batch;
    size_t bytes = 2;  // The brackets.
    while (!url.waiting.empty() && batch.size() < options_.batch->max_calls) {
      Flight& flight = flights_.at(url.waiting.front());
      // The request's size but for its id's digits: close enough for a cap.
      const size_t size = flight.call.call.method.size() + flight.call.call.params_json.size() + 48;
      if (!batch.empty() && bytes + size > options_.batch->max_bytes) break;
      const CallId id = url.waiting.front();
      url.waiting.pop_front();
      --batch_waiting_;
      flight.waiting_on_url.reset();
      if (flight.call.call.deadline <= now) {
        Finish(id, CallOutcome{absl::DeadlineExceededError(
                       "the call's deadline passed while it waited for a connection")});
        continue;
      }
      batch.push_back(id);
      bytes += size;
    }
    ReportBatchWaiting();
    if (!batch.empty()) SendRequest(url_index, std::move(batch));
  }
}

void Transport::ReportBatchWaiting() { observer_.OnBatchWaiting(options_.name, batch_waiting_); }

size_t Transport::CapacityOf(const Url& url) const {
  return options_.max_connections * (url.http2 ? options_.http2_streams_per_connection : 1);
}

void Transport::NoteProtocol(size_t url_index, int http_version) {
  const bool http2 = http_version == 2 && options_.http2_streams_per_connection > 0;
  if (urls_[url_index].http2 == http2) return;
  const auto any_http2 = [&] {
    return std::any_of(urls_.begin(), urls_.end(), [](const Url& url) { return url.http2; });
  };
  const bool before = any_http2();
  urls_[url_index].http2 = http2;
  if (any_http2() != before) on_http2_changed_(http2);
}

void Transport::OnResponse(Request request, absl::StatusOr<http::Response> response) {
  Url& url = urls_[request.url_index];
  --url.requests_in_flight;
  const absl::Time now = dispatcher_.clock().Now();
  if (response.ok()) {
    response_time_.Sample(now - request.sent_at);
    NoteProtocol(request.url_index, response->http_version);
  }
  const ResponseSource source{options_.name, options_.urls[request.url_index]};
  std::vector<Verdict> verdicts;
  if (!request.batch) {
    const bool raw = request.calls.front().second == 0;
    verdicts.push_back(ClassifyResponse(response, raw, source));
  } else if (std::optional<Verdict> failure = ClassifyHttpFailure(response, source)) {
    verdicts.assign(request.calls.size(), *failure);
  } else {
    verdicts = SplitBatch(request.calls, *response, source);
  }
  // What the request tells of the URL and of the provider's limit, once per
  // request however many calls it carried.
  bool throttled = false;
  std::optional<absl::Duration> retry_after;
  Verdict::UrlHealth health = Verdict::UrlHealth::kUnknown;
  for (const Verdict& verdict : verdicts) {
    if (verdict.throttled) {
      throttled = true;
      retry_after = verdict.retry_after;
    }
    health = std::max(health, verdict.url_health);
  }
  if (health == Verdict::UrlHealth::kUp) url.breaker.OnSuccess();
  if (health == Verdict::UrlHealth::kDown) url.breaker.OnFailure(now);
  if (throttled) observer_.OnThrottled(options_.name);
  for (size_t i = 0; i < request.calls.size(); ++i) {
    const CallId id = request.calls[i].first;
    if (flights_.find(id) == flights_.end()) continue;
    // The first call carries the request's pushback to the rate control.
    verdicts[i].throttled = std::exchange(throttled, false);
    verdicts[i].retry_after = retry_after;
    Conclude(id, request, now, std::move(verdicts[i]));
  }
  SendWaiting(request.url_index);
}

void Transport::Conclude(CallId id, const Request& request, absl::Time now, Verdict verdict) {
  observer_.OnUpstreamRequest(options_.name, MethodLabel(flights_.at(id).call.call),
                              verdict.outcome, now - request.sent_at);
  CallOutcome outcome(std::move(verdict.result));
  outcome.retryable = verdict.retryable;
  outcome.never_sent = verdict.never_sent;
  outcome.served = verdict.served;
  outcome.throttled = verdict.throttled;
  if (verdict.throttled) outcome.retry_after = verdict.retry_after;
  if (verdict.url_health == Verdict::UrlHealth::kDown) outcome.failed_url = request.url_index;
  Finish(id, std::move(outcome));
}

void Transport::Finish(CallId id, CallOutcome outcome) {
  auto it = flights_.find(id);
  Flight flight = std::move(it->second);
  flights_.erase(it);
  if (flight.waiting_on_url.has_value()) {
    std::deque<CallId>& waiting = urls_[*flight.waiting_on_url].waiting;
    waiting.erase(std::find(waiting.begin(), waiting.end(), id));
    --batch_waiting_;
    ReportBatchWaiting();
  }
  if (outcome.result.ok()) {
    outcome.result->upstream_attempts = 1;
    outcome.result->batched = flight.batched;
  }
  flight.done(std::move(outcome));
}

}  // namespace switchboard::upstream
