// CacheLayer: the top of an upstream's call pipeline (call_layer.h). A call
// to a method with a TTL (UpstreamOptions::cache_ttl) is answered from the
// ResponseCache while a fresh answer is kept there; the answers the provider
// gives such calls are kept for their TTL.
//
// Owned by UpstreamClient; the dispatcher's thread only. A cache hit is
// answered inside Start(), marked `cached`, and reported to the observer.
#pragma once

#include "server/common/clock.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/response_cache.h"
#include "server/upstream/upstream_observer.h"
#include "server/upstream/upstream_options.h"

namespace switchboard::upstream {

class CacheLayer final : public CallLayer {
 public:
  // Every argument must outlive the layer.
  CacheLayer(const UpstreamOptions& options, common::Clock& clock, UpstreamObserver& observer,
             CallLayer& next);

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override { next_.Cancel(id); }

 private:
  const UpstreamOptions& options_;
  common::Clock& clock_;
  UpstreamObserver& observer_;
  CallLayer& next_;
  ResponseCache cache_;
};

}  // namespace switchboard::upstream
