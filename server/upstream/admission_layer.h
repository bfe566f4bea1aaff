// AdmissionLayer: each attempt of a call waits in the upstream's admission
// queue (ratelimit::UpstreamAdmission: the Limiter and the weighted-fair
// queue, DESIGN.md §4) until it is admitted, or is refused at once with
// RESOURCE_EXHAUSTED and a retry delay.
//
// Owned by UpstreamClient, below the RetryLayer, and present only when the
// upstream is rate limited. A call waits only while enough of its time is
// left for its request (ResponseTimeEstimate::RequestReserve(), but it may
// always wait half its time), so it is not admitted only to time out
// upstream. When the attempt ends, the layer tells the admission that its
// request is done (max_in_flight), and feeds the provider's signals back to
// the rate control: pushback (429, JSON-RPC rate-limit error) pauses and
// lowers the rate, a served call raises it. The dispatcher's thread only.
#pragma once

#include "absl/container/flat_hash_map.h"
#include "server/common/clock.h"
#include "server/ratelimit/upstream_admission.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/response_time_estimate.h"
#include "server/upstream/upstream_observer.h"

namespace switchboard::upstream {

class AdmissionLayer final : public CallLayer {
 public:
  // Every argument must outlive the layer.
  AdmissionLayer(absl::string_view upstream, ratelimit::UpstreamAdmission& admission,
                 const ResponseTimeEstimate& response_time, common::Clock& clock,
                 UpstreamObserver& observer, CallLayer& next);
  // Withdraws the calls still queued; their callbacks never run.
  ~AdmissionLayer() override;

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override;

 private:
  struct QueuedCall {
    LayerCall call;
    OutcomeCallback done;
    ratelimit::UpstreamAdmission::Ticket ticket = 0;
  };

  // The time by which a call with `deadline`, queued at `now`, must leave
  // the queue: early enough to keep RequestReserve() for its request, but
  // with at least half its time left to wait.
  absl::Time AdmissionDeadline(absl::Time deadline, absl::Time now) const;
  void OnAdmission(CallId id, ratelimit::AdmissionResult result);
  void ReportQueueDepth();

  const absl::string_view upstream_;
  ratelimit::UpstreamAdmission& admission_;
  const ResponseTimeEstimate& response_time_;
  common::Clock& clock_;
  UpstreamObserver& observer_;
  CallLayer& next_;
  absl::flat_hash_map<CallId, QueuedCall> queued_;
};

}  // namespace switchboard::upstream
