// FleetMetrics: the FleetObserver that reports to Prometheus: the replicas
// alive on the shared Redis, this one included. Thread-safe.
#pragma once

#include <cstdint>

#include "prometheus/gauge.h"
#include "server/fleet/redis_lease_service.h"
#include "server/metrics/metrics.h"

namespace switchboard::fleet {

class FleetMetrics final : public FleetObserver {
 public:
  // Registers the fleet's gauge in `metrics`' registry.
  explicit FleetMetrics(metrics::Metrics& metrics);

  void OnLiveReplicas(uint32_t replicas) override { live_replicas_.Set(replicas); }

 private:
  prometheus::Gauge& live_replicas_;
};

}  // namespace switchboard::fleet
