#include "server/broker/broker_metrics.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace switchboard::broker {

BrokerMetrics::BrokerMetrics(metrics::Metrics& metrics)
    : metrics_(metrics),
      consumer_lag_(metrics::AddGauge(
          *metrics.registry(), "switchboard_consumer_lag",
          "Entries of a durable topic not yet delivered to a consumer group, per topic and "
          "group (sampled while the group has consumers).")),
      leases_in_flight_(metrics::AddGauge(
          *metrics.registry(), "switchboard_leases_in_flight",
          "Messages delivered to this replica's consumers and not yet acked, nacked or "
          "expired, per topic and group (sampled).")),
      subscriber_buffer_fill_(metrics::AddGauge(
          *metrics.registry(), "switchboard_subscriber_buffer_fill",
          "Fill (0 to 1) of the fullest subscriber buffer, per subscribed topic or pattern "
          "(sampled).")),
      retained_bytes_(metrics::AddGauge(*metrics.registry(), "switchboard_broker_retained_bytes",
                                        "Bytes the memory broker's durable topics retain, all "
                                        "together (bounded by limits.max_memory_bytes; sampled).")
                          .Add({})),
      dedup_ids_(metrics::AddGauge(*metrics.registry(), "switchboard_broker_dedup_ids",
                                   "Dedup ids the memory broker remembers for idempotent publish "
                                   "(at most 250,000; sampled).")
                     .Add({})),
      topics_(metrics::AddGauge(*metrics.registry(), "switchboard_broker_topics",
                                "Durable topics the memory broker holds (bounded by "
                                "limits.max_topics; sampled).")
                  .Add({})) {}

void BrokerMetrics::OnRedelivered(absl::string_view topic, absl::string_view) {
  metrics_.ForTopic(topic).redeliveries.Increment();
}

void BrokerMetrics::OnDeadLettered(absl::string_view topic, absl::string_view) {
  metrics_.ForTopic(topic).dead_letters.Increment();
}

void BrokerMetrics::OnSubscriberDropped(absl::string_view topic, uint64_t count) {
  metrics_.ForTopic(topic).subscriber_drops.Increment(static_cast<double>(count));
}

void BrokerMetrics::OnLeaseExpired(absl::string_view topic, absl::string_view) {
  metrics_.ForTopic(topic).lease_expirations.Increment();
}

BrokerMetrics::GroupGauges* BrokerMetrics::ForGroup(absl::string_view topic,
                                                    absl::string_view group) {
  const std::string key = absl::StrCat(topic, "/", group);
  auto it = groups_.find(key);
  if (it != groups_.end()) return &it->second;
  if (groups_.size() >= metrics_.max_topic_labels()) return nullptr;
  const std::map<std::string, std::string> labels = {{"topic", std::string(topic)},
                                                     {"group", std::string(group)}};
  return &groups_
              .emplace(key, GroupGauges{&consumer_lag_.Add(labels), &leases_in_flight_.Add(labels)})
              .first->second;
}

void BrokerMetrics::OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) {
  absl::MutexLock lock(&mu_);
  if (GroupGauges* gauges = ForGroup(topic, group)) gauges->lag->Set(static_cast<double>(lag));
}

void BrokerMetrics::OnLeasesInFlight(absl::string_view topic, absl::string_view group,
                                     uint64_t leases) {
  absl::MutexLock lock(&mu_);
  if (GroupGauges* gauges = ForGroup(topic, group)) {
    gauges->leases_in_flight->Set(static_cast<double>(leases));
  }
}

void BrokerMetrics::OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) {
  absl::MutexLock lock(&mu_);
  for (auto& [pattern, gauge] : buffer_fill_) {
    if (!fill.contains(pattern)) gauge->Set(0);
  }
  for (const auto& [pattern, ratio] : fill) {
    auto it = buffer_fill_.find(pattern);
    if (it == buffer_fill_.end()) {
      if (buffer_fill_.size() >= metrics_.max_topic_labels()) continue;
      it = buffer_fill_.emplace(pattern, &subscriber_buffer_fill_.Add({{"topic", pattern}})).first;
    }
    it->second->Set(ratio);
  }
}

void BrokerMetrics::OnRetained(uint64_t bytes, uint64_t topics, uint64_t dedup_ids) {
  retained_bytes_.Set(static_cast<double>(bytes));
  dedup_ids_.Set(static_cast<double>(dedup_ids));
  topics_.Set(static_cast<double>(topics));
}

}  // namespace switchboard::broker
