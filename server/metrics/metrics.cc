#include "server/metrics/metrics.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::metrics {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return kBuckets;
}

prometheus::Family<prometheus::Gauge>& AddGauge(prometheus::Registry& registry,
                                                const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Histogram>& AddHistogram(prometheus::Registry& registry,
                                                        const std::string& name,
                                                        const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& AddCounter(prometheus::Registry& registry,
                                                    const std::string& name,
                                                    const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

std::string LabelCap::Label(absl::string_view value) {
  absl::MutexLock lock(&mu_);
  if (seen_.contains(value)) return std::string(value);
  if (seen_.size() >= max_) return kOverflowLabel;
  seen_.emplace(value);
  return std::string(value);
}

absl::string_view StreamMethodName(StreamMethod method) {
  switch (method) {
    case StreamMethod::kPublishStream:
      return "PublishStream";
    case StreamMethod::kSubscribe:
      return "Subscribe";
    case StreamMethod::kConsume:
      return "Consume";
    case StreamMethod::kCallStream:
      return "CallStream";
    case StreamMethod::kRpcSubscribe:
      return "RpcSubscribe";
  }
  return "unknown";
}

Metrics::Metrics(size_t max_topic_labels)
    : registry_(std::make_shared<prometheus::Registry>()),
      max_topic_labels_(max_topic_labels),
      published_(AddCounter(*registry_, "switchboard_messages_published_total",
                            "Messages accepted by Publish and PublishStream, per topic.")),
      delivered_(AddCounter(*registry_, "switchboard_messages_delivered_total",
                            "Messages written to Subscribe and Consume streams, per topic.")),
      acks_(AddCounter(*registry_, "switchboard_acks_total", "Leases acknowledged, per topic.")),
      nacks_(AddCounter(*registry_, "switchboard_nacks_total",
                        "Leases negatively acknowledged (nack or zero extension), per topic.")),
      redeliveries_(AddCounter(*registry_, "switchboard_redeliveries_total",
                               "Messages delivered again after a nack, an expired lease or a "
                               "closed stream, per topic.")),
      dead_letters_(AddCounter(*registry_, "switchboard_dead_letters_total",
                               "Messages moved to the dead-letter topic, per source topic.")),
      lease_expirations_(AddCounter(*registry_, "switchboard_lease_expirations_total",
                                    "Leases that ran past their ack deadline, per topic.")),
      subscriber_drops_(AddCounter(*registry_, "switchboard_subscriber_dropped_total",
                                   "Messages lost to a full subscriber buffer, per topic.")),
      open_streams_(AddGauge(*registry_, "switchboard_grpc_streams_open",
                             "Open gRPC streams, per method and client id.")),
      rejected_(AddCounter(*registry_, "switchboard_requests_rejected_total",
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

}  // namespace switchboard::metrics
