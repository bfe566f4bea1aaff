// UpstreamObserver: the metric hooks of every upstream (DESIGN.md §7),
// implemented by server/metrics and called by the layers of each
// UpstreamClient.
#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::upstream {

// Metric hooks of every upstream, called on the dispatcher thread. Labels
// come from configuration (upstream names) or are bounded by the observer
// (methods, client ids).
class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;

  // One upstream request ended with `outcome` ("ok", "rpc_error",
  // "rpc_throttled", "http_429", "http_4xx", "http_5xx", "unavailable",
  // "timeout", "too_large", "invalid").
  virtual void OnUpstreamRequest(absl::string_view upstream, absl::string_view method,
                                 absl::string_view outcome, absl::Duration latency) = 0;
  // The provider throttled a call (HTTP 429 or a JSON-RPC rate-limit error).
  virtual void OnThrottled(absl::string_view upstream) = 0;
  virtual void OnCacheHit(absl::string_view upstream, absl::string_view method) = 0;
  virtual void OnCoalesced(absl::string_view upstream, absl::string_view method) = 0;
  // Admission: a call waited `queue_wait`; a call was refused; the rate moved.
  virtual void OnAdmitted(absl::string_view upstream, absl::Duration queue_wait) = 0;
  virtual void OnRejected(absl::string_view upstream, absl::string_view reason) = 0;
  virtual void OnRateChanged(absl::string_view upstream, double rate) = 0;
  virtual void OnQueueDepth(absl::string_view upstream, size_t depth) = 0;
  // Open TCP connections to the upstream went up or down by one.
  virtual void OnConnectionsChanged(absl::string_view upstream, int delta) = 0;
  // A JSON-RPC batch of `calls` calls (two or more) went out as one request.
  virtual void OnBatchSent(absl::string_view upstream, size_t calls) = 0;
  // Calls waiting for a free connection to leave in a batch, all URLs.
  virtual void OnBatchWaiting(absl::string_view upstream, size_t calls) = 0;
};

}  // namespace switchboard::upstream
