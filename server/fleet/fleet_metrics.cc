#include "server/fleet/fleet_metrics.h"

namespace switchboard::fleet {

FleetMetrics::FleetMetrics(metrics::Metrics& metrics)
    : live_replicas_(metrics::AddGauge(*metrics.registry(), "switchboard_fleet_live_replicas",
                                       "Switchboard replicas alive on the shared Redis "
                                       "(heartbeats), this one included; exported when a global "
                                       "limit is configured.")
                         .Add({})) {}

}  // namespace switchboard::fleet
