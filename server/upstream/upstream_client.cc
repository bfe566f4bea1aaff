#include "server/upstream/upstream_client.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::upstream {
namespace {

// What a call keeps for its request after admission besides the upstream's
// response time: the answer's way back to the caller (whose deadline comes
// before the one the server sees, by the request's transit time), the
// dispatcher's timer granularity, and scheduling delays on a busy host.
constexpr absl::Duration kRequestReserveFloor = absl::Milliseconds(20);

std::string CoalescingKey(const UpstreamCall& call) {
  // Method names never contain '\0'.
  return absl::StrCat(call.method, absl::string_view("\0", 1), call.params_json);
}

absl::string_view RejectionName(ratelimit::RejectionReason reason) {
  switch (reason) {
    case ratelimit::RejectionReason::kQueueFull:
      return "queue_full";
    case ratelimit::RejectionReason::kDeadline:
      return "deadline";
    case ratelimit::RejectionReason::kDeadlinePassed:
      return "deadline_passed";
  }
  return "unknown";
}

// A coalescer waiter that answers `done`, marking an answer it shares with
// the call that made the request (every waiter but the first) coalesced.
CallCoalescer<absl::StatusOr<Answer>>::Waiter CoalescingWaiter(AnswerCallback done) {
  return [done = std::move(done)](const absl::StatusOr<Answer>& result, bool shared) mutable {
    absl::StatusOr<Answer> answer = result;
    if (answer.ok() && shared) answer->coalesced = true;
    done(std::move(answer));
  };
}

// The method label of a call: its method, or "raw".
absl::string_view MethodLabel(const UpstreamCall& call) {
  return call.raw_body.empty() ? absl::string_view(call.method) : "raw";
}

}  // namespace

// Tells the upstream observer what the admission and the pool do, with the
// upstream's name.
class UpstreamClient::Observers final : public ratelimit::AdmissionObserver,
                                        public http::HttpPoolObserver {
 public:
  Observers(absl::string_view upstream, UpstreamObserver& observer)
      : upstream_(upstream), observer_(observer) {}

  void OnAdmitted(absl::string_view, absl::Duration queue_wait) override {
    observer_.OnAdmitted(upstream_, queue_wait);
  }
  void OnRejected(absl::string_view, ratelimit::RejectionReason reason) override {
    observer_.OnRejected(upstream_, RejectionName(reason));
  }
  void OnRateChanged(double rate) override { observer_.OnRateChanged(upstream_, rate); }
  void OnConnectionOpened() override { observer_.OnConnectionsChanged(upstream_, 1); }
  void OnConnectionClosed() override { observer_.OnConnectionsChanged(upstream_, -1); }
  void OnRequestDone(const http::RequestOutcome&) override {}  // Counted by the client.

 private:
  const std::string upstream_;
  UpstreamObserver& observer_;
};

UpstreamClient::UpstreamClient(event::Dispatcher& dispatcher, UpstreamOptions options,
                               PoolFactory make_pool, UpstreamObserver& observer,
                               ratelimit::ClientQuotas* quotas, LimiterFactory make_limiter)
    : dispatcher_(dispatcher),
      options_(std::move(options)),
      observer_(observer),
      quotas_(quotas),
      observers_(std::make_unique<Observers>(options_.name, observer)),
      admission_(dispatcher, options_.admission, *observers_,
                 make_limiter ? make_limiter() : nullptr),
      pool_(make_pool(*observers_)),
      cache_(options_.cache_max_entries, options_.cache_max_bytes) {
  urls_.reserve(options_.urls.size());
  for (size_t i = 0; i < options_.urls.size(); ++i) {
    urls_.push_back(
        Url{CircuitBreaker(options_.breaker_failure_threshold, options_.breaker_open_time), 0, {}});
  }
  // The limiter's gauges exist from the start, not from their first change.
  if (options_.rate_limited) {
    observer_.OnRateChanged(options_.name, admission_.rate());
    observer_.OnQueueDepth(options_.name, 0);
  }
}

UpstreamClient::~UpstreamClient() {
  const absl::Status closing =
      absl::UnavailableError(absl::StrCat("upstream ", options_.name, " is shutting down"));
  while (!flights_.empty()) {
    const CallId id = flights_.begin()->first;
    Flight& flight = flights_.begin()->second;
    if (flight.ticket.has_value()) admission_.Cancel(*flight.ticket);
    // Cancelling a batch's request once is enough for all of its calls.
    if (flight.request.has_value()) pool_->Cancel(*flight.request);
    Finish(id, closing);
  }
}

void UpstreamClient::Start(CallId id, UpstreamCall call, AnswerCallback done) {
  absl::Status invalid;
  const uint32_t cost = CostOf(call, &invalid);
  if (!invalid.ok()) {
    AnswerSoon(std::move(done), std::move(invalid));
    return;
  }
  const absl::Time now = dispatcher_.clock().Now();
  if (call.raw_body.empty() && options_.cache_ttl.contains(call.method)) {
    std::optional<std::string> cached = cache_.Find(call.method, call.params_json, now);
    if (cached.has_value()) {
      observer_.OnCacheHit(options_.name, call.method);
      AnswerSoon(std::move(done), Answer{Answer::Kind::kResult, *std::move(cached), true});
      return;
    }
  }
  std::optional<std::string> coalescing_key;
  if (MayCoalesce(call)) {
    coalescing_key = CoalescingKey(call);
    if (coalescer_.waiters(*coalescing_key) > 0) {  // An identical call is in flight.
      coalescer_.Join(*coalescing_key, CoalescingWaiter(std::move(done)));
      observer_.OnCoalesced(options_.name, call.method);
      return;
    }
  }
  // This call makes the upstream request: it takes from its client's quota.
  bool quota_pending = false;
  if (quotas_ != nullptr) {
    std::optional<ratelimit::AdmissionResult> quota = quotas_->TryAcquire(
        call.client_id,
        [this, id](ratelimit::AdmissionResult result) { OnQuota(id, std::move(result)); });
    if (quota.has_value() && !quota->status.ok()) {
      AnswerSoon(std::move(done), OverQuota(*quota));
      return;
    }
    quota_pending = !quota.has_value();
  }
  Flight flight;
  flight.cost = cost;
  if (coalescing_key.has_value()) {
    coalescer_.Join(*coalescing_key, CoalescingWaiter(std::move(done)));
    flight.coalescing_key = std::move(coalescing_key);
  } else {
    flight.done = std::move(done);
  }
  flight.call = std::move(call);
  flights_.emplace(id, std::move(flight));
  if (!quota_pending) Admit(id);
}

void UpstreamClient::OnQuota(CallId id, ratelimit::AdmissionResult result) {
  if (flights_.find(id) == flights_.end()) return;
  if (!result.status.ok()) {
    Finish(id, OverQuota(result));
    return;
  }
  Admit(id);
}

absl::Status UpstreamClient::OverQuota(const ratelimit::AdmissionResult& refusal) {
  observer_.OnRejected(options_.name, "client_quota");
  return WithRetryAfter(refusal.status, refusal.retry_after);
}

void UpstreamClient::Cancel(CallId id) {
  auto it = flights_.find(id);
  if (it == flights_.end()) return;
  Flight& flight = it->second;
  if (!flight.ticket.has_value() && !flight.waiting_on_url.has_value()) return;
  // Others wait for this call's answer.
  if (flight.coalescing_key.has_value() && coalescer_.waiters(*flight.coalescing_key) > 1) return;
  if (flight.ticket.has_value()) {
    admission_.Cancel(*flight.ticket);
    flight.ticket.reset();
    observer_.OnQueueDepth(options_.name, admission_.queue_depth());
  }
  Finish(id, absl::CancelledError("the call was cancelled"));
}

uint32_t UpstreamClient::CostOf(const UpstreamCall& call, absl::Status* error) const {
  const auto cost_of = [&](const std::string& method) {
    auto it = options_.method_cost.find(method);
    return it == options_.method_cost.end() ? 1u : it->second;
  };
  if (call.raw_body.empty()) return cost_of(call.method);
  absl::StatusOr<std::vector<std::string>> methods = RequestMethods(call.raw_body);
  if (!methods.ok()) {
    *error = absl::InvalidArgumentError(absl::StrCat("raw_body: ", methods.status().message()));
    return 0;
  }
  uint32_t cost = 0;
  for (const std::string& method : *methods) cost += cost_of(method);
  return cost;
}

bool UpstreamClient::MayCoalesce(const UpstreamCall& call) const {
  if (!options_.coalescing || !call.raw_body.empty()) return false;
  return !IsTransactionSubmission(call.method) && !options_.never_coalesce.contains(call.method);
}

bool UpstreamClient::MayBatch(const UpstreamCall& call) const {
  if (!options_.batch.has_value() || !call.raw_body.empty()) return false;
  if (!options_.batch->methods.empty()) return options_.batch->methods.contains(call.method);
  return !options_.batch->except.contains(call.method) && !IsTransactionSubmission(call.method) &&
         !options_.never_coalesce.contains(call.method);
}

bool UpstreamClient::MayRetry(const Flight& flight) const {
  return flight.call.raw_body.empty() && flight.attempts < options_.max_attempts &&
         options_.retry_methods.contains(flight.call.method);
}

void UpstreamClient::Admit(CallId id) {
  Flight& flight = flights_.at(id);
  if (!options_.rate_limited) {
    Send(id);
    return;
  }
  flight.ticket = admission_.Enqueue(
      ratelimit::AdmissionRequest{
          flight.call.client_id, flight.call.client_weight, flight.cost, flight.call.priority,
          AdmissionDeadline(flight.call.deadline, dispatcher_.clock().Now())},
      [this, id](ratelimit::AdmissionResult result) { OnAdmission(id, std::move(result)); });
  observer_.OnQueueDepth(options_.name, admission_.queue_depth());
}

absl::Time UpstreamClient::AdmissionDeadline(absl::Time deadline, absl::Time now) const {
  if (deadline <= now) return deadline;
  // At most half the time left, so that a slow spell of the upstream does
  // not leave every call that must wait refused.
  return deadline - std::min(RequestReserve(), (deadline - now) / 2);
}

absl::Duration UpstreamClient::RequestReserve() const {
  return kRequestReserveFloor + smoothed_response_time_ + 4 * response_time_deviation_;
}

void UpstreamClient::SampleResponseTime(absl::Duration response_time) {
  if (smoothed_response_time_ == absl::ZeroDuration()) {
    smoothed_response_time_ = response_time;
    response_time_deviation_ = response_time / 2;
    return;
  }
  response_time_deviation_ =
      (3 * response_time_deviation_ + absl::AbsDuration(smoothed_response_time_ - response_time)) /
      4;
  smoothed_response_time_ = (7 * smoothed_response_time_ + response_time) / 8;
}

void UpstreamClient::OnAdmission(CallId id, ratelimit::AdmissionResult result) {
  auto it = flights_.find(id);
  if (it == flights_.end()) return;
  it->second.ticket.reset();
  observer_.OnQueueDepth(options_.name, admission_.queue_depth());
  if (!result.status.ok()) {
    Finish(id, result.status.code() == absl::StatusCode::kResourceExhausted
                   ? WithRetryAfter(result.status, result.retry_after)
                   : result.status);
    return;
  }
  it->second.in_flight = true;
  Send(id);
}

void UpstreamClient::EndInFlight(Flight& flight) {
  if (!std::exchange(flight.in_flight, false)) return;
  admission_.OnRequestDone();
}

void UpstreamClient::Send(CallId id) {
  Flight& flight = flights_.at(id);
  const absl::Time now = dispatcher_.clock().Now();
  // The first URL whose breaker lets a call through, preferring one other
  // than the URL this call last failed on.
  std::optional<size_t> chosen;
  for (int pass = 0; pass < 2 && !chosen.has_value(); ++pass) {
    for (size_t i = 0; i < urls_.size(); ++i) {
      if (pass == 0 && flight.last_failed_url == i) continue;
      if (urls_[i].breaker.Allow(now)) {
        chosen = i;
        break;
      }
    }
  }
  if (!chosen.has_value()) {
    Finish(id, absl::UnavailableError(absl::StrCat("every URL of upstream ", options_.name,
                                                   " is failing (circuit breakers open)")));
    return;
  }
  if (flight.call.deadline <= now) {
    Finish(id, absl::DeadlineExceededError("the call's deadline passed before it was sent"));
    return;
  }
  ++flight.attempts;
  Url& url = urls_[*chosen];
  if (url.requests_in_flight >= CapacityOf(url) && MayBatch(flight.call) &&
      batch_waiting_ < options_.admission.max_queue_depth) {
    flight.waiting_on_url = *chosen;
    url.waiting.push_back(id);
    ++batch_waiting_;
    ReportBatchWaiting();
    return;
  }
  SendRequest(*chosen, {id});
}

void UpstreamClient::SendRequest(size_t url_index, std::vector<CallId> ids) {
  const absl::Time now = dispatcher_.clock().Now();
  const bool batch = ids.size() > 1;
  Request sent{url_index, now, batch, {}};
  sent.calls.reserve(ids.size());
  http::Request request;
  request.url = options_.urls[url_index];
  absl::Time latest_deadline = now;
  // A call's request body: a raw call's own, or built with a fresh id.
  const auto body_of = [&](CallId id) -> std::string {
    const Flight& flight = flights_.at(id);
    latest_deadline = std::max(latest_deadline, flight.call.deadline);
    if (!flight.call.raw_body.empty()) {
      sent.calls.emplace_back(id, 0);
      return flight.call.raw_body;
    }
    const uint64_t rpc_id = next_rpc_id_++;
    sent.calls.emplace_back(id, rpc_id);
    return BuildRequest(rpc_id, flight.call.method, flight.call.params_json);
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

void UpstreamClient::SendWaiting(size_t url_index) {
  Url& url = urls_[url_index];
  while (url.requests_in_flight < CapacityOf(url) && !url.waiting.empty()) {
    const absl::Time now = dispatcher_.clock().Now();
    std::vector<CallId> batch;
    size_t bytes = 2;  // The brackets.
    while (!url.waiting.empty() && batch.size() < options_.batch->max_calls) {
      Flight& flight = flights_.at(url.waiting.front());
      // The request's size but for its id's digits: close enough for a cap.
      const size_t size = flight.call.method.size() + flight.call.params_json.size() + 48;
      if (!batch.empty() && bytes + size > options_.batch->max_bytes) break;
      const CallId id = url.waiting.front();
      url.waiting.pop_front();
      --batch_waiting_;
      flight.waiting_on_url.reset();
      if (flight.call.deadline <= now) {
        Finish(id, absl::DeadlineExceededError(
                       "the call's deadline passed while it waited for a connection"));
        continue;
      }
      batch.push_back(id);
      bytes += size;
    }
    ReportBatchWaiting();
    if (!batch.empty()) SendRequest(url_index, std::move(batch));
  }
}

void UpstreamClient::ReportBatchWaiting() {
  observer_.OnBatchWaiting(options_.name, batch_waiting_);
}

size_t UpstreamClient::CapacityOf(const Url& url) const {
  return options_.max_connections * (url.http2 ? options_.http2_streams_per_connection : 1);
}

void UpstreamClient::NoteProtocol(size_t url_index, int http_version) {
  const bool http2 = http_version == 2 && options_.http2_streams_per_connection > 0;
  if (urls_[url_index].http2 == http2) return;
  const auto any_http2 = [&] {
    return std::any_of(urls_.begin(), urls_.end(), [](const Url& url) { return url.http2; });
  };
  const bool before = any_http2();
  urls_[url_index].http2 = http2;
  if (any_http2() == before || options_.admission.max_in_flight == 0) return;
  admission_.SetMaxInFlight(options_.admission.max_in_flight *
                            (http2 ? options_.http2_streams_per_connection : 1));
}

void UpstreamClient::OnResponse(Request request, absl::StatusOr<http::Response> response) {
  Url& url = urls_[request.url_index];
  --url.requests_in_flight;
  const absl::Time now = dispatcher_.clock().Now();
  if (response.ok()) {
    SampleResponseTime(now - request.sent_at);
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
    verdicts = SplitBatch(request, *response, source);
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
  if (throttled) Throttle(retry_after);
  for (size_t i = 0; i < request.calls.size(); ++i) {
    const CallId id = request.calls[i].first;
    if (flights_.find(id) == flights_.end()) continue;
    Conclude(id, request, now, std::move(verdicts[i]));
  }
  SendWaiting(request.url_index);
}

std::vector<Verdict> UpstreamClient::SplitBatch(const Request& request,
                                                const http::Response& response,
                                                const ResponseSource& source) {
  absl::StatusOr<std::vector<absl::string_view>> items = SplitBatchResponse(response.body);
  if (!items.ok()) {
    // A provider that does not take batches answers with one error object.
    return std::vector<Verdict>(
        request.calls.size(),
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
  verdicts.reserve(request.calls.size());
  for (const auto& [call, rpc_id] : request.calls) {
    auto item = by_id.find(rpc_id);
    verdicts.push_back(item == by_id.end()
                           ? MissingFromBatch("has no response for the call", source)
                           : ClassifyRpcResponse(response.status, item->second, source));
  }
  return verdicts;
}

void UpstreamClient::Conclude(CallId id, const Request& request, absl::Time now, Verdict verdict) {
  Flight& flight = flights_.at(id);
  flight.request.reset();
  EndInFlight(flight);
  observer_.OnUpstreamRequest(options_.name, MethodLabel(flight.call), verdict.outcome,
                              now - request.sent_at);
  if (verdict.url_health == Verdict::UrlHealth::kDown) flight.last_failed_url = request.url_index;
  if (verdict.served) Succeeded(flight.cost);
  if (verdict.never_sent && FailOver(id)) return;
  if (verdict.retryable && MayRetry(flight)) {
    RetryOrFinish(id, std::move(verdict.result));
    return;
  }
  if (verdict.result.ok() && verdict.result->kind == Answer::Kind::kResult) {
    auto ttl = options_.cache_ttl.find(flight.call.method);
    if (ttl != options_.cache_ttl.end()) {
      cache_.Insert(flight.call.method, flight.call.params_json, verdict.result->json, now,
                    ttl->second);
    }
  }
  Finish(id, std::move(verdict.result));
}

void UpstreamClient::Throttle(std::optional<absl::Duration> retry_after) {
  observer_.OnThrottled(options_.name);
  if (options_.rate_limited) admission_.OnThrottled(retry_after);
}

void UpstreamClient::Succeeded(uint32_t cost) {
  if (options_.rate_limited) admission_.OnSucceeded(cost);
}

bool UpstreamClient::FailOver(CallId id) {
  Flight& flight = flights_.at(id);
  if (flight.never_sent_failovers + 1 >= options_.urls.size()) return false;
  ++flight.never_sent_failovers;
  Admit(id);
  return true;
}

void UpstreamClient::RetryOrFinish(CallId id, absl::StatusOr<Answer> error) {
  Flight& flight = flights_.at(id);
  if (!MayRetry(flight)) {
    Finish(id, std::move(error));
    return;
  }
  // Equal jitter under a ceiling that doubles per attempt, 1024 times the
  // first at most.
  const common::BackoffOptions backoff{options_.retry_backoff, options_.retry_backoff * 1024, 2.0,
                                       common::Jitter::kEqual};
  const absl::Duration delay =
      common::BackoffDelay(backoff, static_cast<int>(flight.attempts) - 1, random_);
  if (dispatcher_.clock().Now() + delay >= flight.call.deadline) {
    Finish(id, std::move(error));
    return;
  }
  flight.backoff = dispatcher_.CreateTimer([this, id] { Admit(id); });
  flight.backoff->Enable(delay);
}

void UpstreamClient::Finish(CallId id, absl::StatusOr<Answer> result) {
  auto it = flights_.find(id);
  Flight flight = std::move(it->second);
  flights_.erase(it);
  if (flight.waiting_on_url.has_value()) {
    std::deque<CallId>& waiting = urls_[*flight.waiting_on_url].waiting;
    waiting.erase(std::find(waiting.begin(), waiting.end(), id));
    --batch_waiting_;
    ReportBatchWaiting();
  }
  EndInFlight(flight);
  if (result.ok()) {
    result->upstream_attempts = flight.attempts;
    result->batched = flight.batched;
  }
  if (!flight.coalescing_key.has_value()) {
    flight.done(std::move(result));
    return;
  }
  coalescer_.Complete(*flight.coalescing_key, result);
}

void UpstreamClient::AnswerSoon(AnswerCallback done, absl::StatusOr<Answer> result) {
  dispatcher_.Post(
      [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
}

}  // namespace switchboard::upstream
