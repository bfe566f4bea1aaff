#include "server/metrics/metrics.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"

namespace switchboard::metrics {
namespace {

using ::switchboard::broker::redis::ConnectionState;

// The collected metrics of `family`, each as its label set.
std::vector<prometheus::ClientMetric> Collect(const Metrics& metrics, const std::string& family) {
  for (const prometheus::MetricFamily& collected : metrics.registry()->Collect()) {
    if (collected.name == family) return collected.metric;
  }
  return {};
}

std::map<std::string, std::string> Labels(const prometheus::ClientMetric& metric) {
  std::map<std::string, std::string> labels;
  for (const prometheus::ClientMetric::Label& label : metric.label)
    labels[label.name] = label.value;
  return labels;
}

// The gauge of `family` with exactly `labels`, if exported.
std::optional<double> Gauge(const Metrics& metrics, const std::string& family,
                            const std::map<std::string, std::string>& labels) {
  for (const prometheus::ClientMetric& metric : Collect(metrics, family)) {
    if (Labels(metric) == labels) return metric.gauge.value;
  }
  return std::nullopt;
}

TEST(MetricsTest, TopicsBeyondTheCapShareTheOverflowLabel) {
  Metrics metrics(/*max_topic_labels=*/2);
  metrics.ForTopic("a").published.Increment();
  metrics.ForTopic("b").published.Increment();
  metrics.ForTopic("c").published.Increment(2);
  metrics.ForTopic("d").published.Increment(3);
  std::map<std::string, double> published;
  for (const prometheus::ClientMetric& metric :
       Collect(metrics, "switchboard_messages_published_total")) {
    published[Labels(metric)["topic"]] = metric.counter.value;
  }
  EXPECT_EQ(published, (std::map<std::string, double>{{"a", 1}, {"b", 1}, {kOverflowLabel, 5}}));
}

TEST(MetricsTest, UpstreamRequestsCountPerLabelsWithMethodsPastTheCapAsOverflow) {
  Metrics metrics(/*max_topic_labels=*/1);
  for (int i = 0; i < 3; ++i)
    metrics.OnUpstreamRequest("chain", "getSlot", "ok", absl::Milliseconds(1));
  metrics.OnUpstreamRequest("chain", "getSlot", "http_5xx", absl::Milliseconds(1));
  for (const char* method : {"getBlock", "getBalance", "getBlock"}) {
    metrics.OnUpstreamRequest("chain", method, "ok", absl::Milliseconds(1));
  }
  std::map<std::pair<std::string, std::string>, double> requests;
  for (const prometheus::ClientMetric& metric :
       Collect(metrics, "switchboard_upstream_requests_total")) {
    std::map<std::string, std::string> labels = Labels(metric);
    EXPECT_EQ(labels["upstream"], "chain");
    requests[{labels["method"], labels["outcome"]}] = metric.counter.value;
  }
  EXPECT_EQ(
      requests,
      (std::map<std::pair<std::string, std::string>, double>{
          {{"getSlot", "ok"}, 3}, {{"getSlot", "http_5xx"}, 1}, {{kOverflowLabel, "ok"}, 3}}));
  const std::vector<prometheus::ClientMetric> latency =
      Collect(metrics, "switchboard_upstream_request_duration_seconds");
  ASSERT_EQ(latency.size(), 1u);
  EXPECT_EQ(latency[0].histogram.sample_count, 7u);
}

TEST(MetricsTest, ConsumerLagKeepsTheLastSampleForAtMostTheCapOfPairs) {
  Metrics metrics(/*max_topic_labels=*/2);
  metrics.OnConsumerLag("jobs", "a", 10);
  metrics.OnConsumerLag("jobs", "a", 7);
  metrics.OnConsumerLag("jobs", "b", 3);
  metrics.OnConsumerLag("jobs", "c", 1);  // Past the cap: not reported.
  EXPECT_EQ(Gauge(metrics, "switchboard_consumer_lag", {{"topic", "jobs"}, {"group", "a"}}), 7);
  EXPECT_EQ(Gauge(metrics, "switchboard_consumer_lag", {{"topic", "jobs"}, {"group", "b"}}), 3);
  EXPECT_EQ(Collect(metrics, "switchboard_consumer_lag").size(), 2u);
}

TEST(MetricsTest, LeasesInFlightShareTheConsumerLagsCapOfPairs) {
  Metrics metrics(/*max_topic_labels=*/2);
  metrics.OnLeasesInFlight("jobs", "a", 4);
  metrics.OnConsumerLag("jobs", "b", 3);
  metrics.OnLeasesInFlight("jobs", "a", 2);
  metrics.OnLeasesInFlight("jobs", "c", 1);  // A third pair: past the cap.
  EXPECT_EQ(Gauge(metrics, "switchboard_leases_in_flight", {{"topic", "jobs"}, {"group", "a"}}), 2);
  EXPECT_EQ(Gauge(metrics, "switchboard_leases_in_flight", {{"topic", "jobs"}, {"group", "b"}}), 0);
  EXPECT_EQ(Collect(metrics, "switchboard_leases_in_flight").size(), 2u);
}

TEST(MetricsTest, SubscriberBufferFillFollowsTheSamplesAndZeroesPatternsThatLeft) {
  Metrics metrics(/*max_topic_labels=*/2);
  const auto fill = [&](const std::string& pattern) {
    return Gauge(metrics, "switchboard_subscriber_buffer_fill", {{"topic", pattern}});
  };
  metrics.OnSubscriberBufferFill({{"prices", 0.5}, {"events.*", 0.25}});
  EXPECT_EQ(fill("prices"), 0.5);
  EXPECT_EQ(fill("events.*"), 0.25);
  // "prices" lost its subscribers; "third" is past the cap of 2 patterns.
  metrics.OnSubscriberBufferFill({{"events.*", 0.75}, {"third", 1}});
  EXPECT_EQ(fill("prices"), 0);
  EXPECT_EQ(fill("events.*"), 0.75);
  EXPECT_EQ(fill("third"), std::nullopt);
  metrics.OnSubscriberBufferFill({});
  EXPECT_EQ(fill("events.*"), 0);
}

TEST(MetricsTest, RedisConnectionsFollowTheirStates) {
  Metrics metrics;
  const auto connections = [&](const std::string& state) {
    return Gauge(metrics, "switchboard_redis_connections", {{"role", "reader"}, {"state", state}})
        .value_or(-1);
  };
  metrics.OnStateChanged("reader", ConnectionState::kAbsent, ConnectionState::kConnecting);
  metrics.OnStateChanged("reader", ConnectionState::kAbsent, ConnectionState::kConnecting);
  EXPECT_EQ(connections("connecting"), 2);
  metrics.OnStateChanged("reader", ConnectionState::kConnecting, ConnectionState::kReady);
  EXPECT_EQ(connections("connecting"), 1);
  EXPECT_EQ(connections("ready"), 1);
  metrics.OnStateChanged("reader", ConnectionState::kReady, ConnectionState::kConnecting);
  metrics.OnStateChanged("reader", ConnectionState::kConnecting, ConnectionState::kAbsent);
  EXPECT_EQ(connections("connecting"), 1);
  EXPECT_EQ(connections("ready"), 0);
}

TEST(MetricsTest, PipelineDepthAndReconnectsAreCountedPerRole) {
  Metrics metrics;
  metrics.OnWrite("command", 1);
  metrics.OnWrite("command", 40);
  metrics.OnReconnectAttempt("command");
  const std::vector<prometheus::ClientMetric> depth =
      Collect(metrics, "switchboard_redis_pipeline_depth");
  ASSERT_EQ(depth.size(), 1u);
  EXPECT_EQ(depth[0].histogram.sample_count, 2u);
  EXPECT_EQ(depth[0].histogram.sample_sum, 41);
  const std::vector<prometheus::ClientMetric> reconnects =
      Collect(metrics, "switchboard_redis_reconnects_total");
  ASSERT_EQ(reconnects.size(), 1u);
  EXPECT_EQ(reconnects[0].counter.value, 1);
}

}  // namespace
}  // namespace switchboard::metrics
