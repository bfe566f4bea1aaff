#include "server/metrics/metrics.h"

#include <utility>

namespace switchboard::metrics {
namespace {

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& registry,
                                                 const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

absl::string_view StreamMethodName(StreamMethod method) {
  switch (method) {
    case StreamMethod::kPublishStream:
      return "PublishStream";
    case StreamMethod::kSubscribe:
      return "Subscribe";
    case StreamMethod::kConsume:
      return "Consume";
  }
  return "unknown";
}

Metrics::Metrics(size_t max_topic_labels)
    : registry_(std::make_shared<prometheus::Registry>()),
      max_topic_labels_(max_topic_labels),
      published_(Counter(*registry_, "switchboard_messages_published_total",
                         "Messages accepted by Publish and PublishStream, per topic.")),
      delivered_(Counter(*registry_, "switchboard_messages_delivered_total",
                         "Messages written to Subscribe and Consume streams, per topic.")),
      acks_(Counter(*registry_, "switchboard_acks_total", "Leases acknowledged, per topic.")),
      nacks_(Counter(*registry_, "switchboard_nacks_total",
                     "Leases negatively acknowledged (nack or zero extension), per topic.")),
      redeliveries_(Counter(*registry_, "switchboard_redeliveries_total",
                            "Messages delivered again after a nack, an expired lease or a "
                            "closed stream, per topic.")),
      dead_letters_(Counter(*registry_, "switchboard_dead_letters_total",
                            "Messages moved to the dead-letter topic, per source topic.")),
      lease_expirations_(Counter(*registry_, "switchboard_lease_expirations_total",
                                 "Leases that ran past their ack deadline, per topic.")),
      subscriber_drops_(Counter(*registry_, "switchboard_subscriber_dropped_total",
                                "Messages lost to a full subscriber buffer, per topic.")),
      open_streams_(prometheus::BuildGauge()
                        .Name("switchboard_grpc_streams_open")
                        .Help("Open gRPC streams, per method and client id.")
                        .Register(*registry_)),
      rejected_(Counter(*registry_, "switchboard_requests_rejected_total",
                        "Requests refused before reaching the broker, per method and code.")) {
  prometheus::BuildGauge()
      .Name("switchboard_metrics_topic_label_limit")
      .Help("Distinct topic label values kept before counting under \"__other__\".")
      .Register(*registry_)
      .Add({})
      .Set(static_cast<double>(max_topic_labels));
}

TopicMetrics& Metrics::ForTopic(absl::string_view topic) {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  if (it != topics_.end()) return *it->second;
  if (topics_.size() >= max_topic_labels_) {
    it = topics_.find(kOverflowLabel);
    if (it != topics_.end()) return *it->second;
    topic = kOverflowLabel;
  }
  const std::map<std::string, std::string> labels = {{"topic", std::string(topic)}};
  auto metrics = std::make_unique<TopicMetrics>(
      TopicMetrics{published_.Add(labels), delivered_.Add(labels), acks_.Add(labels),
                   nacks_.Add(labels), redeliveries_.Add(labels), dead_letters_.Add(labels),
                   lease_expirations_.Add(labels), subscriber_drops_.Add(labels)});
  TopicMetrics& result = *metrics;
  topics_.emplace(std::string(topic), std::move(metrics));
  return result;
}

prometheus::Gauge& Metrics::OpenStreams(StreamMethod method, absl::string_view client_id) {
  return open_streams_.Add(
      {{"method", std::string(StreamMethodName(method))}, {"client", std::string(client_id)}});
}

void Metrics::CountRejected(absl::string_view method, absl::string_view code) {
  rejected_.Add({{"method", std::string(method)}, {"code", std::string(code)}}).Increment();
}

void Metrics::OnRedelivered(absl::string_view topic, absl::string_view) {
  ForTopic(topic).redeliveries.Increment();
}

void Metrics::OnDeadLettered(absl::string_view topic, absl::string_view) {
  ForTopic(topic).dead_letters.Increment();
}

void Metrics::OnSubscriberDropped(absl::string_view topic, uint64_t count) {
  ForTopic(topic).subscriber_drops.Increment(static_cast<double>(count));
}

void Metrics::OnLeaseExpired(absl::string_view topic, absl::string_view) {
  ForTopic(topic).lease_expirations.Increment();
}

}  // namespace switchboard::metrics
