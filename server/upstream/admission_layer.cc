#include "server/upstream/admission_layer.h"

#include <algorithm>
#include <utility>

namespace switchboard::upstream {

AdmissionLayer::AdmissionLayer(absl::string_view upstream, ratelimit::UpstreamAdmission& admission,
                               const ResponseTimeEstimate& response_time, common::Clock& clock,
                               UpstreamObserver& observer, CallLayer& next)
    : upstream_(upstream),
      admission_(admission),
      response_time_(response_time),
      clock_(clock),
      observer_(observer),
      next_(next) {}

AdmissionLayer::~AdmissionLayer() {
  for (const auto& [id, queued] : queued_) admission_.Cancel(queued.ticket);
}

void AdmissionLayer::Start(CallId id, LayerCall call, OutcomeCallback done) {
  const UpstreamCall& upstream_call = call.call;
  const ratelimit::UpstreamAdmission::Ticket ticket = admission_.Enqueue(
      ratelimit::AdmissionRequest{upstream_call.client_id, upstream_call.client_weight, call.cost,
                                  upstream_call.priority,
                                  AdmissionDeadline(upstream_call.deadline, clock_.Now())},
      [this, id](ratelimit::AdmissionResult result) { OnAdmission(id, std::move(result)); });
  queued_.emplace(id, QueuedCall{std::move(call), std::move(done), ticket});
  ReportQueueDepth();
}

absl::Time AdmissionLayer::AdmissionDeadline(absl::Time deadline, absl::Time now) const {
  if (deadline <= now) return deadline;
  // At most half the time left, so that a slow spell of the upstream does
  // not leave every call that must wait refused.
  return deadline - std::min(response_time_.RequestReserve(), (deadline - now) / 2);
}

void AdmissionLayer::OnAdmission(CallId id, ratelimit::AdmissionResult result) {
  auto it = queued_.find(id);
  if (it == queued_.end()) return;
  QueuedCall queued = std::move(it->second);
  queued_.erase(it);
  ReportQueueDepth();
  if (!result.status.ok()) {
    queued.done(CallOutcome{result.status.code() == absl::StatusCode::kResourceExhausted
                                ? WithRetryAfter(result.status, result.retry_after)
                                : result.status});
    return;
  }
  const uint32_t cost = queued.call.cost;
  next_.Start(id, std::move(queued.call),
              [this, cost, done = std::move(queued.done)](CallOutcome outcome) mutable {
                if (outcome.throttled) admission_.OnThrottled(outcome.retry_after);
                admission_.OnRequestDone();
                if (outcome.served) admission_.OnSucceeded(cost);
                done(std::move(outcome));
              });
}

void AdmissionLayer::Cancel(CallId id) {
  auto it = queued_.find(id);
  if (it == queued_.end()) {
    next_.Cancel(id);
    return;
  }
  admission_.Cancel(it->second.ticket);
  OutcomeCallback done = std::move(it->second.done);
  queued_.erase(it);
  ReportQueueDepth();
  done(CallOutcome{absl::CancelledError("the call was cancelled")});
}

void AdmissionLayer::ReportQueueDepth() {
  observer_.OnQueueDepth(upstream_, admission_.queue_depth());
}

}  // namespace switchboard::upstream
