// CoalescingLayer: identical read calls in flight share one upstream request
// (DESIGN.md §4, "Coalescing and caching"). The first call with a key (its
// method and params text) goes down; calls that come while it is in flight
// wait for its answer, marked `coalesced`, and make no request of their own.
//
// Owned by UpstreamClient, below the CacheLayer; the dispatcher's thread
// only. Never coalesced: raw calls, transaction submissions and
// coalescing.never methods, or everything with coalescing off. Cancel()
// reaches the call below only while no other call shares its answer.
#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "server/upstream/call_coalescer.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/upstream_observer.h"
#include "server/upstream/upstream_options.h"

namespace switchboard::upstream {

class CoalescingLayer final : public CallLayer {
 public:
  // Every argument must outlive the layer.
  CoalescingLayer(const UpstreamOptions& options, UpstreamObserver& observer, CallLayer& next);

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override;

 private:
  bool MayCoalesce(const UpstreamCall& call) const;

  const UpstreamOptions& options_;
  UpstreamObserver& observer_;
  CallLayer& next_;
  CallCoalescer<CallOutcome> coalescer_;
  // The key of each call in flight that others may join, by its id.
  absl::flat_hash_map<CallId, std::string> leaders_;
};

}  // namespace switchboard::upstream
