#include "server/upstream/upstream_client.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "server/common/log.h"
#include "server/http/url_mask.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::upstream {
namespace {

constexpr char kRetryAfterPayload[] = "type.switchboard.dev/retry-after-ms";

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

absl::string_view TransportOutcome(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kDeadlineExceeded:
      return "timeout";
    case absl::StatusCode::kResourceExhausted:
      return "too_large";
    case absl::StatusCode::kInvalidArgument:
      return "invalid";
    default:
      return "unavailable";
  }
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

absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after) {
  status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(
                                            std::max(retry_after, absl::Milliseconds(1))))));
  return status;
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayload);
  int64_t milliseconds = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &milliseconds)) {
    return std::nullopt;
  }
  return absl::Milliseconds(milliseconds);
}

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
  breakers_.reserve(options_.urls.size());
  for (size_t i = 0; i < options_.urls.size(); ++i) {
    breakers_.emplace_back(options_.breaker_failure_threshold, options_.breaker_open_time);
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
  if (it == flights_.end() || !it->second.ticket.has_value()) return;
  // Others wait for this call's answer.
  if (it->second.coalescing_key.has_value() && coalescer_.waiters(*it->second.coalescing_key) > 1) {
    return;
  }
  admission_.Cancel(*it->second.ticket);
  it->second.ticket.reset();
  observer_.OnQueueDepth(options_.name, admission_.queue_depth());
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
  for (const char* submission : kTransactionSubmissions) {
    if (call.method == submission) return false;
  }
  return !options_.never_coalesce.contains(call.method);
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
    for (size_t i = 0; i < options_.urls.size(); ++i) {
      if (pass == 0 && flight.last_failed_url == i) continue;
      if (breakers_[i].Allow(now)) {
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
  const absl::Duration timeout = std::min(options_.request_timeout, flight.call.deadline - now);
  if (timeout <= absl::ZeroDuration()) {
    Finish(id, absl::DeadlineExceededError("the call's deadline passed before it was sent"));
    return;
  }
  ++flight.attempts;
  http::Request request;
  request.url = options_.urls[*chosen];
  request.body = flight.call.raw_body.empty()
                     ? BuildRequest(next_rpc_id_++, flight.call.method, flight.call.params_json)
                     : flight.call.raw_body;
  request.timeout = timeout;
  flight.request = pool_->Send(std::move(request), [this, id, url_index = *chosen, sent_at = now](
                                                       absl::StatusOr<http::Response> response) {
    OnResponse(id, url_index, sent_at, std::move(response));
  });
}

void UpstreamClient::OnResponse(CallId id, size_t url_index, absl::Time sent_at,
                                absl::StatusOr<http::Response> response) {
  auto it = flights_.find(id);
  if (it == flights_.end()) return;
  Flight& flight = it->second;
  flight.request.reset();
  EndInFlight(flight);
  const absl::Time now = dispatcher_.clock().Now();
  const absl::string_view method = MethodLabel(flight.call);
  const auto count = [&](absl::string_view outcome) {
    observer_.OnUpstreamRequest(options_.name, method, outcome, now - sent_at);
  };
  CircuitBreaker& breaker = breakers_[url_index];
  // For error messages only: masking costs a parse of the URL.
  const auto url_name = [&] { return http::MaskUrl(options_.urls[url_index]); };
  if (response.ok()) SampleResponseTime(now - sent_at);

  if (!response.ok()) {
    count(TransportOutcome(response.status().code()));
    if (response.status().code() == absl::StatusCode::kResourceExhausted) {
      Finish(id, response.status());
      return;
    }
    breaker.OnFailure(now);
    flight.last_failed_url = url_index;
    if (http::RequestNeverSent(response.status()) && FailOver(id)) return;
    RetryOrFinish(id, response.status());
    return;
  }
  if (response->status == 429) {
    count("http_429");
    breaker.OnSuccess();  // The host is up; it asks us to slow down.
    Throttle(response->retry_after);
    RetryOrFinish(id, WithRetryAfter(absl::ResourceExhaustedError(
                                         absl::StrCat("upstream ", options_.name, " (", url_name(),
                                                      ") is rate limiting: HTTP 429")),
                                     response->retry_after.value_or(absl::Seconds(1))));
    return;
  }
  if (response->status >= 500) {
    count("http_5xx");
    breaker.OnFailure(now);
    flight.last_failed_url = url_index;
    RetryOrFinish(id,
                  absl::UnavailableError(absl::StrCat("upstream ", options_.name, " (", url_name(),
                                                      ") answered HTTP ", response->status)));
    return;
  }
  breaker.OnSuccess();
  const bool http_ok = response->status >= 200 && response->status < 300;
  if (!flight.call.raw_body.empty() && http_ok) {
    count("ok");
    Succeeded(flight.cost);
    Finish(id, Answer{Answer::Kind::kRawBody, std::move(response->body)});
    return;
  }
  absl::StatusOr<ResponseParts> parts = SplitResponse(response->body);
  if (!parts.ok()) {
    count(http_ok ? "invalid" : "http_4xx");
    Finish(id, absl::UnavailableError(absl::StrCat(
                   "upstream ", options_.name, " (", url_name(), ") answered HTTP ",
                   response->status, " without a JSON-RPC response: ", parts.status().message())));
    return;
  }
  if (parts->error.has_value()) {
    const bool throttled = IsRateLimitError(*parts->error);
    count(throttled ? "rpc_throttled" : "rpc_error");
    if (throttled) {
      Throttle(std::nullopt);
      if (MayRetry(flight)) {
        RetryOrFinish(id, absl::ResourceExhaustedError("provider rate limit"));
        return;
      }
    } else {
      Succeeded(flight.cost);
    }
    Finish(id, Answer{Answer::Kind::kError, std::string(*parts->error)});
    return;
  }
  count("ok");
  Succeeded(flight.cost);
  std::string result(*parts->result);
  auto ttl = options_.cache_ttl.find(flight.call.method);
  if (ttl != options_.cache_ttl.end()) {
    cache_.Insert(flight.call.method, flight.call.params_json, result, now, ttl->second);
  }
  Finish(id, Answer{Answer::Kind::kResult, std::move(result)});
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

void UpstreamClient::RetryOrFinish(CallId id, absl::Status error) {
  Flight& flight = flights_.at(id);
  if (!MayRetry(flight)) {
    Finish(id, std::move(error));
    return;
  }
  // Full jitter under a ceiling that doubles per attempt.
  static thread_local std::mt19937_64 random(std::random_device{}());
  const absl::Duration ceiling = options_.retry_backoff * (1 << std::min(flight.attempts - 1, 10u));
  const absl::Duration delay = absl::Nanoseconds(std::uniform_int_distribution<int64_t>(
      absl::ToInt64Nanoseconds(ceiling) / 2, absl::ToInt64Nanoseconds(ceiling))(random));
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
  EndInFlight(flight);
  if (result.ok()) result->upstream_attempts = flight.attempts;
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
