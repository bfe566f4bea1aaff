#include "server/metrics/metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"

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
                        "Requests refused before reaching the broker, per method and code.")),
      consumer_lag_(prometheus::BuildGauge()
                        .Name("switchboard_consumer_lag")
                        .Help("Entries of a durable topic not yet delivered to a consumer group, "
                              "per topic and group (sampled while the group has consumers).")
                        .Register(*registry_)),
      redis_connections_(prometheus::BuildGauge()
                             .Name("switchboard_redis_connections")
                             .Help("Redis connections, per role and state (connecting, ready).")
                             .Register(*registry_)),
      redis_reconnects_(Counter(*registry_, "switchboard_redis_reconnects_total",
                                "Redis connection attempts after a loss or a failed attempt, "
                                "per role.")),
      redis_pipeline_depth_(prometheus::BuildHistogram()
                                .Name("switchboard_redis_pipeline_depth")
                                .Help("Commands carried by one write to a Redis connection "
                                      "(automatic pipelining), per role.")
                                .Register(*registry_)) {
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

void Metrics::OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) {
  prometheus::Gauge* gauge = nullptr;
  {
    absl::MutexLock lock(&mu_);
    const std::string key = absl::StrCat(topic, "/", group);
    auto it = lags_.find(key);
    if (it != lags_.end()) {
      gauge = it->second;
    } else if (lags_.size() < max_topic_labels_) {
      gauge = &consumer_lag_.Add({{"topic", std::string(topic)}, {"group", std::string(group)}});
      lags_.emplace(key, gauge);
    }
  }
  if (gauge != nullptr) gauge->Set(static_cast<double>(lag));
}

void Metrics::OnStateChanged(absl::string_view role, broker::redis::ConnectionState from,
                             broker::redis::ConnectionState to) {
  if (from != broker::redis::ConnectionState::kAbsent) RedisConnections(role, from).Decrement();
  if (to != broker::redis::ConnectionState::kAbsent) RedisConnections(role, to).Increment();
}

void Metrics::OnReconnectAttempt(absl::string_view role) {
  redis_reconnects_.Add({{"role", std::string(role)}}).Increment();
}

void Metrics::OnWrite(absl::string_view role, size_t commands) {
  static const prometheus::Histogram::BucketBoundaries kDepthBuckets = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
  redis_pipeline_depth_.Add({{"role", std::string(role)}}, kDepthBuckets)
      .Observe(static_cast<double>(commands));
}

prometheus::Gauge& Metrics::RedisConnections(absl::string_view role,
                                             broker::redis::ConnectionState state) {
  return redis_connections_.Add(
      {{"role", std::string(role)},
       {"state", state == broker::redis::ConnectionState::kReady ? "ready" : "connecting"}});
}

}  // namespace switchboard::metrics
