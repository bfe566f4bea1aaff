#include "server/upstream/upstream_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/upstream/admission_layer.h"
#include "server/upstream/cache_layer.h"
#include "server/upstream/coalescing_layer.h"
#include "server/upstream/json_rpc.h"
#include "server/upstream/quota_layer.h"
#include "server/upstream/retry_layer.h"
#include "server/upstream/transport.h"

namespace switchboard::upstream {
namespace {

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
  void OnRequestDone(const http::RequestOutcome&) override {}  // Counted by the Transport.

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
      observers_(std::make_unique<Observers>(options_.name, observer)),
      admission_(dispatcher, options_.admission, *observers_,
                 make_limiter ? make_limiter() : nullptr) {
  BuildLayers(std::move(make_pool), quotas);
  // The limiter's gauges exist from the start, not from their first change.
  if (options_.rate_limited) {
    observer_.OnRateChanged(options_.name, admission_.rate());
    observer_.OnQueueDepth(options_.name, 0);
  }
}

void UpstreamClient::BuildLayers(PoolFactory make_pool, ratelimit::ClientQuotas* quotas) {
  const auto push = [this](std::unique_ptr<CallLayer> layer) -> CallLayer& {
    layers_.push_back(std::move(layer));
    return *layers_.back();
  };
  CallLayer* next = &push(std::make_unique<Transport>(
      options_, dispatcher_, make_pool(*observers_), observer_, response_time_,
      [this](bool any_http2) {
        // What the connections carry at once scales admission's cap.
        if (options_.admission.max_in_flight == 0) return;
        admission_.SetMaxInFlight(options_.admission.max_in_flight *
                                  (any_http2 ? options_.http2_streams_per_connection : 1));
      }));
  if (options_.rate_limited) {
    next = &push(std::make_unique<AdmissionLayer>(options_.name, admission_, response_time_,
                                                  dispatcher_.clock(), observer_, *next));
  }
  next = &push(std::make_unique<RetryLayer>(options_, dispatcher_, *next));
  if (quotas != nullptr) {
    next = &push(std::make_unique<QuotaLayer>(options_.name, *quotas, observer_, *next));
  }
  next = &push(std::make_unique<CoalescingLayer>(options_, observer_, *next));
  push(std::make_unique<CacheLayer>(options_, dispatcher_.clock(), observer_, *next));
}

UpstreamClient::~UpstreamClient() {
  // The top goes first; each layer drops its calls' callbacks.
  while (!layers_.empty()) layers_.pop_back();
  const absl::Status closing =
      absl::UnavailableError(absl::StrCat("upstream ", options_.name, " is shutting down"));
  for (auto& [id, done] : open_) done(closing);
}

void UpstreamClient::Start(CallId id, UpstreamCall call, AnswerCallback done) {
  absl::Status invalid;
  const uint32_t cost = CostOf(call, &invalid);
  if (!invalid.ok()) {
    AnswerSoon(std::move(done), std::move(invalid));
    return;
  }
  open_.emplace(id, std::move(done));
  ++calls_under_way_;
  LayerCall layer_call;
  layer_call.call = std::move(call);
  layer_call.cost = cost;
  layers_.back()->Start(id, std::move(layer_call), [this, id](CallOutcome outcome) {
    Deliver(id, std::move(outcome.result));
  });
  --calls_under_way_;
}

void UpstreamClient::Cancel(CallId id) {
  if (open_.find(id) == open_.end()) return;
  ++calls_under_way_;
  layers_.back()->Cancel(id);
  --calls_under_way_;
}

void UpstreamClient::Deliver(CallId id, absl::StatusOr<Answer> result) {
  auto it = open_.find(id);
  AnswerCallback done = std::move(it->second);
  open_.erase(it);
  if (calls_under_way_ > 0) {
    AnswerSoon(std::move(done), std::move(result));
    return;
  }
  done(std::move(result));
}

ratelimit::UpstreamAdmission::Ticket UpstreamClient::Admit(
    std::string client_id, absl::string_view method, absl::Time deadline,
    ratelimit::UpstreamAdmission::Callback done) {
  auto cost = options_.method_cost.find(method);
  ratelimit::AdmissionRequest request;
  request.client_id = std::move(client_id);
  request.cost = cost == options_.method_cost.end() ? 1u : cost->second;
  request.deadline = deadline;
  return admission_.Enqueue(std::move(request), [this, done = std::move(done)](
                                                    ratelimit::AdmissionResult result) mutable {
    if (result.status.ok()) admission_.OnRequestDone();
    done(std::move(result));
  });
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

void UpstreamClient::AnswerSoon(AnswerCallback done, absl::StatusOr<Answer> result) {
  dispatcher_.Post(
      [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
}

}  // namespace switchboard::upstream
