#include "server/broker/redis/redis_metrics.h"

#include <string>

namespace switchboard::broker::redis {

RedisMetrics::RedisMetrics(metrics::Metrics& metrics)
    : connections_(metrics::AddGauge(*metrics.registry(), "switchboard_redis_connections",
                                     "Redis connections, per role and state (connecting, ready).")),
      reconnects_(metrics::AddCounter(
          *metrics.registry(), "switchboard_redis_reconnects_total",
          "Redis connection attempts after a loss or a failed attempt, per role.")),
      pipeline_depth_(metrics::AddHistogram(
          *metrics.registry(), "switchboard_redis_pipeline_depth",
          "Commands carried by one write to a Redis connection (automatic pipelining), per "
          "role.")) {}

void RedisMetrics::OnStateChanged(absl::string_view role, ConnectionState from,
                                  ConnectionState to) {
  if (from != ConnectionState::kAbsent) Connections(role, from).Decrement();
  if (to != ConnectionState::kAbsent) Connections(role, to).Increment();
}

void RedisMetrics::OnReconnectAttempt(absl::string_view role) {
  reconnects_.Add({{"role", std::string(role)}}).Increment();
}

void RedisMetrics::OnWrite(absl::string_view role, size_t commands) {
  static const prometheus::Histogram::BucketBoundaries kDepthBuckets = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
  pipeline_depth_.Add({{"role", std::string(role)}}, kDepthBuckets)
      .Observe(static_cast<double>(commands));
}

prometheus::Gauge& RedisMetrics::Connections(absl::string_view role, ConnectionState state) {
  return connections_.Add({{"role", std::string(role)},
                           {"state", state == ConnectionState::kReady ? "ready" : "connecting"}});
}

}  // namespace switchboard::broker::redis
