// UpstreamAdmission: where calls to one JSON-RPC upstream wait for its rate
// limit (DESIGN.md §4, "Admission is queueing, not only rejection").
//
// One per upstream, owned by the upstream pool. Construct it on any thread;
// use and destroy it on its dispatcher's thread only (not thread-safe). Time
// comes from the dispatcher's clock, so under a SimulatedClock calls are
// admitted when the test advances time.
//
// A call is queued with its client, the client's weight, its cost (the
// method's cost), a priority and a deadline. The queue is weighted-fair across
// clients (WeightedFairQueue) and the Limiter decides when: a GCRA of this
// process steered by the provider's pushback (LocalLimiter), or tokens leased
// from the fleet's shared limit (GlobalLimiter). The head of the fair order
// leaves the queue the moment the limiter lets its cost through: one
// dispatcher timer is armed at that time, nothing polls (a global limiter
// that is waiting for tokens says when they came).
//
// Admission paces what reaches the provider, so it counts the requests it
// let through until UpstreamClient reports each one done (OnRequestDone):
// with max_in_flight set to what the connections can carry at once, a call
// leaves the queue only when a connection is free for it. Admitted calls
// never pile up behind a slow or stalled provider to reach it back to back
// when it recovers (its limiter would count that as a burst); they wait
// here, where the limiter spaces them.
//
// Enqueue decides at once whether the call can make it: when it estimates, from
// the cost the fair order serves before it and the limiter's state (pause
// included), that the call would be admitted after its deadline, or when the
// queue is full, the call is refused with RESOURCE_EXHAUSTED and a retry
// delay, without waiting. A call that is queued may still see its deadline
// pass (the provider pushed back, higher-priority calls of its client came
// in): it is then never admitted, and ends with DEADLINE_EXCEEDED when its
// turn comes, using no capacity.
//
// Callbacks: each queued call's callback runs exactly once, on the dispatcher
// thread, unless the call is cancelled first. Callbacks never run inside
// Enqueue, Cancel, OnThrottled, OnSucceeded or
// OnRequestDone: they run from the admission's
// own timer. An outcome decided inside Enqueue (a refusal) is delivered on the
// dispatcher's next loop iteration, at the same clock time. So a caller may
// keep the ticket Enqueue returns without fearing that its callback already
// ran, and callbacks may call any method here (but must not destroy the
// UpstreamAdmission). Destroying the UpstreamAdmission drops every pending
// callback without running it: cancel or drain calls first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher.h"
#include "server/ratelimit/admission_result.h"
#include "server/ratelimit/aimd_rate_control.h"
#include "server/ratelimit/limiter.h"
#include "server/ratelimit/weighted_fair_queue.h"

namespace switchboard::ratelimit {

// Why a call was not admitted.
enum class RejectionReason {
  // RESOURCE_EXHAUSTED: max_queue_depth calls were already waiting.
  kQueueFull,
  // RESOURCE_EXHAUSTED: the call could not be admitted before its deadline.
  kDeadline,
  // DEADLINE_EXCEEDED: the deadline passed while the call waited.
  kDeadlinePassed,
};

// Learns what an UpstreamAdmission does, for metrics. Called on the
// dispatcher thread, inline; implementations must be cheap and must not call
// back into the UpstreamAdmission.
class AdmissionObserver {
 public:
  virtual ~AdmissionObserver() = default;

  // A call left the queue for the upstream after waiting `queue_wait`.
  virtual void OnAdmitted(absl::string_view client_id, absl::Duration queue_wait) = 0;

  // A call was refused (at Enqueue), or dropped when its deadline passed.
  virtual void OnRejected(absl::string_view client_id, RejectionReason reason) = 0;

  // The limiter's rate changed (AIMD), in cost units per second.
  virtual void OnRateChanged(double rate) = 0;
};

struct UpstreamAdmissionOptions {
  // The provider's limit: cost units per second (> 0), and the cost units
  // that may go at one instant after a quiet spell (>= 1). For the
  // LocalLimiter the first constructor builds.
  double rate = 1;
  double burst = 1;
  // Calls waiting at most; more are refused at once.
  size_t max_queue_depth = 10000;
  // Admitted calls whose request is not done yet, at most; 0: no cap.
  size_t max_in_flight = 0;
  AimdOptions aimd;  // Of that LocalLimiter.
};

// One call asking for admission.
struct AdmissionRequest {
  std::string client_id;
  // The client's share relative to other clients (>= 1).
  uint32_t weight = 1;
  // The method's cost in limiter units (>= 1).
  uint32_t cost = 1;
  // Higher goes first among the same client's calls.
  uint32_t priority = 0;
  // The call must be admitted by then.
  absl::Time deadline = absl::InfiniteFuture();
};

class UpstreamAdmission {
 public:
  // Names a call for Cancel(). Never reused by one UpstreamAdmission.
  using Ticket = uint64_t;
  using Callback = absl::AnyInvocable<void(AdmissionResult)>;

  // `dispatcher` and `observer` must outlive this object. Admits at
  // `limiter`'s pace; without one (the first form, or null) at a
  // LocalLimiter's built from `options`.
  UpstreamAdmission(event::Dispatcher& dispatcher, UpstreamAdmissionOptions options,
                    AdmissionObserver& observer);
  UpstreamAdmission(event::Dispatcher& dispatcher, UpstreamAdmissionOptions options,
                    AdmissionObserver& observer, std::unique_ptr<Limiter> limiter);

  UpstreamAdmission(const UpstreamAdmission&) = delete;
  UpstreamAdmission& operator=(const UpstreamAdmission&) = delete;

  // Queues `request`, or refuses it at once (see the file comment). `done`
  // runs once with OK when the call is admitted; with RESOURCE_EXHAUSTED and
  // a retry delay when it is refused here; with DEADLINE_EXCEEDED when its
  // deadline passes in the queue.
  Ticket Enqueue(AdmissionRequest request, Callback done);

  // Withdraws a call whose callback has not run: it leaves the queue and its
  // callback never runs. Returns false when `ticket` has nothing pending (its
  // callback ran, or it was cancelled before).
  bool Cancel(Ticket ticket);

  // The provider throttled a call (HTTP 429, or a JSON-RPC rate-limit error),
  // asking to wait `retry_after` (absent when it did not say). Pauses
  // admission and lowers the rate; see AimdRateControl.
  void OnThrottled(std::optional<absl::Duration> retry_after);

  // A call of `cost` got its answer from the provider. Raises the rate back
  // towards the configured rate; see AimdRateControl.
  void OnSucceeded(uint32_t cost);

  // The request of an admitted call is done (answered, failed or abandoned):
  // its place among max_in_flight is free. Once per admitted call.
  void OnRequestDone();

  // Changes max_in_flight (what the connections carry at once changed: an
  // upstream's URL began or stopped answering over HTTP/2). 0: no cap.
  void SetMaxInFlight(size_t max_in_flight);

  // Calls waiting in the queue.
  size_t queue_depth() const { return queue_.size(); }

  // Admitted calls whose request is not done.
  size_t in_flight() const { return in_flight_; }

  // The limiter's current rate, in cost units per second.
  double rate() const { return limiter_->rate(); }

  const Limiter& limiter() const { return *limiter_; }

 private:
  // A call whose callback has not run yet: queued, or refused and awaiting
  // delivery.
  struct PendingCall {
    Callback done;
    absl::Time deadline;
    absl::Time enqueued_at;
    uint32_t cost = 0;
    bool queued = false;  // False: refused, awaiting delivery.
  };

  // Refuses `ticket` now; its callback runs on the next loop iteration.
  void Refuse(Ticket ticket, absl::string_view client_id, RejectionReason reason,
              AdmissionResult result);
  // Runs `ticket`'s callback with `result`, unless it was cancelled.
  void Complete(Ticket ticket, AdmissionResult result);
  // The timer: delivers refusals, admits every call the limiter lets through
  // now, and re-arms.
  void OnTimer();
  void AdmitConforming();
  bool InFlightFull() const { return max_in_flight_ > 0 && in_flight_ >= max_in_flight_; }
  // Points the timer at the next moment something is due.
  void ArmTimer();

  event::Dispatcher& dispatcher_;
  AdmissionObserver& observer_;
  const size_t max_queue_depth_;
  size_t max_in_flight_;
  size_t in_flight_ = 0;
  // When a call last became able to leave as far as max_in_flight goes:
  // a queued call is due from the later of this and its enqueue time.
  absl::Time unblocked_at_ = absl::InfinitePast();
  // The cost of the calls in queue_.
  uint64_t queued_cost_ = 0;
  std::unique_ptr<Limiter> limiter_;
  WeightedFairQueue queue_;
  Ticket next_ticket_ = 1;
  absl::flat_hash_map<Ticket, PendingCall> pending_;
  // Refusals decided in Enqueue, in order, for the next timer run.
  std::deque<std::pair<Ticket, AdmissionResult>> refused_;
  // Created on first use, so the object may be constructed off the
  // dispatcher thread.
  std::unique_ptr<event::Timer> timer_;
  absl::Time armed_at_ = absl::InfiniteFuture();
};

}  // namespace switchboard::ratelimit
