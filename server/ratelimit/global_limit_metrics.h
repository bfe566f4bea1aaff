// GlobalLimitMetrics: the GlobalLimitObserver that reports to Prometheus.
//
// The adapter between the global limiters' observer interface
// (lease_service.h) and the metrics library: lease round trips by outcome,
// tokens leased and returned, and the fallback gauge, per limit kind and
// name (from configuration, so bounded). Thread-safe.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "server/metrics/metrics.h"
#include "server/ratelimit/lease_service.h"

namespace switchboard::ratelimit {

class GlobalLimitMetrics final : public GlobalLimitObserver {
 public:
  // Registers the global limits' families in `metrics`' registry.
  explicit GlobalLimitMetrics(metrics::Metrics& metrics);

  void OnLeaseRoundTrip(absl::string_view kind, absl::string_view name, bool ok,
                        uint32_t tokens) override;
  void OnTokensReturned(absl::string_view kind, absl::string_view name, uint32_t tokens) override;
  void OnFallback(absl::string_view kind, absl::string_view name, bool fallback) override;

 private:
  prometheus::Family<prometheus::Counter>& round_trips_;
  prometheus::Family<prometheus::Counter>& tokens_leased_;
  prometheus::Family<prometheus::Counter>& tokens_returned_;
  prometheus::Family<prometheus::Gauge>& fallback_;
};

}  // namespace switchboard::ratelimit
