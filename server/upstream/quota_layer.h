// QuotaLayer: a call that makes its own upstream request first takes one
// request from its client's quota (ClientQuotas, DESIGN.md §4, "A call first
// passes its client's quota"); over it, the call is refused with
// RESOURCE_EXHAUSTED and the wait until the quota allows one.
//
// Owned by UpstreamClient, below the CoalescingLayer (so cache hits and
// coalesced calls use no quota) and above the RetryLayer (so a call takes
// one request however many attempts it makes). The dispatcher's thread only.
// A call waiting for its quota (a global quota whose tokens are on their
// way) can be cancelled; the token it then gets is not given back.
#pragma once

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "server/ratelimit/client_quotas.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/upstream_observer.h"

namespace switchboard::upstream {

class QuotaLayer final : public CallLayer {
 public:
  // Every argument must outlive the layer.
  QuotaLayer(absl::string_view upstream, ratelimit::ClientQuotas& quotas,
             UpstreamObserver& observer, CallLayer& next);

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override;

 private:
  struct WaitingCall {
    LayerCall call;
    OutcomeCallback done;
  };

  void OnQuota(CallId id, ratelimit::AdmissionResult result);
  // Counts a call refused by its client's quota; its status, with the wait.
  absl::Status OverQuota(const ratelimit::AdmissionResult& refusal);

  const absl::string_view upstream_;
  ratelimit::ClientQuotas& quotas_;
  UpstreamObserver& observer_;
  CallLayer& next_;
  absl::flat_hash_map<CallId, WaitingCall> waiting_;
};

}  // namespace switchboard::upstream
