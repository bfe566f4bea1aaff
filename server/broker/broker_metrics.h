// BrokerMetrics: the BrokerObserver that reports to Prometheus.
//
// The adapter between the broker's observer interface (broker.h) and the
// metrics library: redeliveries, dead letters, lease expirations and drops
// count on the per-topic counters; consumer lag and leases in flight are
// gauges per (topic, group), and subscriber buffer fill per pattern, each for
// at most Metrics::max_topic_labels() label sets (later ones are not
// reported). Thread-safe, as BrokerObserver requires.
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "server/broker/broker.h"
#include "server/metrics/metrics.h"

namespace switchboard::broker {

class BrokerMetrics final : public BrokerObserver {
 public:
  // Registers the broker's gauge families; `metrics` must outlive this.
  explicit BrokerMetrics(metrics::Metrics& metrics);

  void OnRedelivered(absl::string_view topic, absl::string_view group) override;
  void OnDeadLettered(absl::string_view topic, absl::string_view group) override;
  void OnSubscriberDropped(absl::string_view topic, uint64_t count) override;
  void OnLeaseExpired(absl::string_view topic, absl::string_view group) override;
  void OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) override;
  void OnLeasesInFlight(absl::string_view topic, absl::string_view group, uint64_t leases) override;
  void OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) override;
  void OnRetained(uint64_t bytes, uint64_t topics, uint64_t dedup_ids) override;

 private:
  // The gauges of one consumer group.
  struct GroupGauges {
    prometheus::Gauge* lag;
    prometheus::Gauge* leases_in_flight;
  };
  // The gauges of `group` of `topic`; nullptr past the cap of groups.
  GroupGauges* ForGroup(absl::string_view topic, absl::string_view group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  metrics::Metrics& metrics_;
  prometheus::Family<prometheus::Gauge>& consumer_lag_;
  prometheus::Family<prometheus::Gauge>& leases_in_flight_;
  prometheus::Family<prometheus::Gauge>& subscriber_buffer_fill_;
  prometheus::Gauge& retained_bytes_;
  prometheus::Gauge& dedup_ids_;
  prometheus::Gauge& topics_;

  absl::Mutex mu_;
  // By "topic/group".
  absl::flat_hash_map<std::string, GroupGauges> groups_ ABSL_GUARDED_BY(mu_);
  // By subscribed topic or pattern: the last sample's, set to 0 when a
  // sample no longer has the pattern.
  absl::flat_hash_map<std::string, prometheus::Gauge*> buffer_fill_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::broker
