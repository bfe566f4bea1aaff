// RedisMetrics: the ConnectionObserver that reports to Prometheus.
//
// The adapter between the Redis connections' observer interface
// (connection.h) and the metrics library: connections per role and state,
// reconnect attempts and pipeline depth per role. Roles are a fixed set, so
// the label sets are bounded. Shared by the broker's connections and the
// fleet's. Thread-safe.
#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "server/broker/redis/connection.h"
#include "server/metrics/metrics.h"

namespace switchboard::broker::redis {

class RedisMetrics final : public ConnectionObserver {
 public:
  // Registers the Redis families in `metrics`' registry.
  explicit RedisMetrics(metrics::Metrics& metrics);

  void OnStateChanged(absl::string_view role, ConnectionState from, ConnectionState to) override;
  void OnReconnectAttempt(absl::string_view role) override;
  void OnWrite(absl::string_view role, size_t commands) override;

 private:
  prometheus::Gauge& Connections(absl::string_view role, ConnectionState state);

  prometheus::Family<prometheus::Gauge>& connections_;
  prometheus::Family<prometheus::Counter>& reconnects_;
  prometheus::Family<prometheus::Histogram>& pipeline_depth_;
};

}  // namespace switchboard::broker::redis
