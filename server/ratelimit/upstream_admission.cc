#include "server/ratelimit/upstream_admission.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/ratelimit/local_limiter.h"

namespace switchboard::ratelimit {

UpstreamAdmission::UpstreamAdmission(event::Dispatcher& dispatcher,
                                     UpstreamAdmissionOptions options, AdmissionObserver& observer)
    : UpstreamAdmission(dispatcher, options, observer, nullptr) {}

UpstreamAdmission::UpstreamAdmission(event::Dispatcher& dispatcher,
                                     UpstreamAdmissionOptions options, AdmissionObserver& observer,
                                     std::unique_ptr<Limiter> limiter)
    : dispatcher_(dispatcher),
      observer_(observer),
      max_queue_depth_(options.max_queue_depth),
      max_in_flight_(options.max_in_flight),
      limiter_(limiter != nullptr
                   ? std::move(limiter)
                   : std::make_unique<LocalLimiter>(options.rate, options.burst, options.aimd)) {
  // Runs on the dispatcher thread, never inside a call into the limiter.
  limiter_->SetChangeCallback([this] {
    observer_.OnRateChanged(limiter_->rate());
    ArmTimer();
  });
}

UpstreamAdmission::Ticket UpstreamAdmission::Enqueue(AdmissionRequest request, Callback done) {
  const Ticket ticket = next_ticket_++;
  const absl::Time now = dispatcher_.clock().Now();
  const uint64_t cost_ahead =
      queue_.CostAhead(request.client_id, request.weight, request.cost, request.priority);
  const absl::Time admission = limiter_->EstimateConformingTime(cost_ahead, request.cost, now);
  auto [pending, inserted] =
      pending_.emplace(ticket, PendingCall{std::move(done), request.deadline, now, request.cost});
  if (queue_.size() >= max_queue_depth_) {
    Refuse(ticket, request.client_id, RejectionReason::kQueueFull,
           {absl::ResourceExhaustedError(absl::StrCat("the upstream's admission queue is full (",
                                                      max_queue_depth_, " calls waiting)")),
            admission - now});
  } else if (admission > request.deadline) {
    Refuse(ticket, request.client_id, RejectionReason::kDeadline,
           {absl::ResourceExhaustedError(absl::StrCat(
                "the upstream's rate limit cannot admit this call before its deadline (",
                absl::FormatDuration(admission - now), " to wait)")),
            admission - now});
  } else {
    queue_.Push(ticket, request.client_id, request.weight, request.cost, request.priority);
    pending->second.queued = true;
    queued_cost_ += request.cost;
  }
  limiter_->OnDemand(request.cost, queued_cost_, now);
  ArmTimer();
  return ticket;
}

bool UpstreamAdmission::Cancel(Ticket ticket) {
  auto call = pending_.find(ticket);
  if (call == pending_.end()) return false;
  if (call->second.queued) queued_cost_ -= call->second.cost;
  pending_.erase(call);
  if (queue_.Remove(ticket)) {
    limiter_->OnDemand(0, queued_cost_, dispatcher_.clock().Now());
    ArmTimer();
  }
  return true;
}

void UpstreamAdmission::OnThrottled(std::optional<absl::Duration> retry_after) {
  if (limiter_->OnThrottled(retry_after, dispatcher_.clock().Now())) {
    observer_.OnRateChanged(limiter_->rate());
  }
  ArmTimer();
}

void UpstreamAdmission::OnSucceeded(uint32_t cost) {
  if (!limiter_->OnSucceeded(cost, dispatcher_.clock().Now())) return;
  observer_.OnRateChanged(limiter_->rate());
  ArmTimer();
}

void UpstreamAdmission::OnRequestDone() {
  if (InFlightFull()) unblocked_at_ = dispatcher_.clock().Now();
  if (in_flight_ > 0) --in_flight_;
  ArmTimer();
}

void UpstreamAdmission::SetMaxInFlight(size_t max_in_flight) {
  const bool was_full = InFlightFull();
  max_in_flight_ = max_in_flight;
  if (was_full && !InFlightFull()) unblocked_at_ = dispatcher_.clock().Now();
  ArmTimer();
}

void UpstreamAdmission::Refuse(Ticket ticket, absl::string_view client_id, RejectionReason reason,
                               AdmissionResult result) {
  observer_.OnRejected(client_id, reason);
  refused_.emplace_back(ticket, std::move(result));
}

void UpstreamAdmission::Complete(Ticket ticket, AdmissionResult result) {
  auto call = pending_.find(ticket);
  if (call == pending_.end()) return;  // Cancelled.
  Callback done = std::move(call->second.done);
  pending_.erase(call);
  done(std::move(result));
}

void UpstreamAdmission::OnTimer() {
  armed_at_ = absl::InfiniteFuture();
  // Callbacks may enqueue (and so refuse) more: deliver until none is left.
  while (!refused_.empty()) {
    auto [ticket, result] = std::move(refused_.front());
    refused_.pop_front();
    Complete(ticket, std::move(result));
  }
  AdmitConforming();
  ArmTimer();
}

void UpstreamAdmission::AdmitConforming() {
  // Each callback may change the queue and the limiter: look again every time.
  for (std::optional<WeightedFairQueue::Head> head = queue_.Front(); head.has_value();
       head = queue_.Front()) {
    const absl::Time now = dispatcher_.clock().Now();
    const PendingCall& call = pending_.find(head->ticket)->second;
    if (call.deadline < now) {
      observer_.OnRejected(head->client_id, RejectionReason::kDeadlinePassed);
      queue_.Remove(head->ticket);
      queued_cost_ -= call.cost;
      limiter_->OnDemand(0, queued_cost_, now);
      Complete(head->ticket,
               {absl::DeadlineExceededError(
                   "the deadline passed while the call waited for the upstream's rate limit")});
      continue;
    }
    if (InFlightFull() || limiter_->ConformingTime(head->cost, now) > now) return;
    limiter_->Consume(head->cost, std::max(call.enqueued_at, unblocked_at_), now);
    ++in_flight_;
    observer_.OnAdmitted(head->client_id, now - call.enqueued_at);
    queued_cost_ -= call.cost;
    queue_.PopFront();
    Complete(head->ticket, {absl::OkStatus()});
  }
}

void UpstreamAdmission::ArmTimer() {
  if (timer_ == nullptr) timer_ = dispatcher_.CreateTimer([this] { OnTimer(); });
  const absl::Time now = dispatcher_.clock().Now();
  absl::Time wake = absl::InfiniteFuture();
  if (!refused_.empty()) {
    wake = now;
  } else if (std::optional<WeightedFairQueue::Head> head = queue_.Front();
             head.has_value() && !InFlightFull()) {
    wake = limiter_->ConformingTime(head->cost, now);
  }
  if (wake == armed_at_) return;
  armed_at_ = wake;
  if (wake == absl::InfiniteFuture()) {
    timer_->Disable();
  } else {
    timer_->EnableAt(wake);
  }
}

}  // namespace switchboard::ratelimit
