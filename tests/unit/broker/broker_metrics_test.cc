#include "server/broker/broker_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/unit/metrics/collected.h"

namespace switchboard::broker {
namespace {

using metrics::testing::Collect;
using metrics::testing::Gauge;

TEST(BrokerMetricsTest, ConsumerLagKeepsTheLastSampleForAtMostTheCapOfPairs) {
  metrics::Metrics metrics(/*max_topic_labels=*/2);
  BrokerMetrics observer(metrics);
  observer.OnConsumerLag("jobs", "a", 10);
  observer.OnConsumerLag("jobs", "a", 7);
  observer.OnConsumerLag("jobs", "b", 3);
  observer.OnConsumerLag("jobs", "c", 1);  // Past the cap: not reported.
  EXPECT_EQ(
      Gauge(*metrics.registry(), "switchboard_consumer_lag", {{"topic", "jobs"}, {"group", "a"}}),
      7);
  EXPECT_EQ(
      Gauge(*metrics.registry(), "switchboard_consumer_lag", {{"topic", "jobs"}, {"group", "b"}}),
      3);
  EXPECT_EQ(Collect(*metrics.registry(), "switchboard_consumer_lag").size(), 2u);
}

TEST(BrokerMetricsTest, LeasesInFlightShareTheConsumerLagsCapOfPairs) {
  metrics::Metrics metrics(/*max_topic_labels=*/2);
  BrokerMetrics observer(metrics);
  observer.OnLeasesInFlight("jobs", "a", 4);
  observer.OnConsumerLag("jobs", "b", 3);
  observer.OnLeasesInFlight("jobs", "a", 2);
  observer.OnLeasesInFlight("jobs", "c", 1);  // A third pair: past the cap.
  EXPECT_EQ(Gauge(*metrics.registry(), "switchboard_leases_in_flight",
                  {{"topic", "jobs"}, {"group", "a"}}),
            2);
  EXPECT_EQ(Gauge(*metrics.registry(), "switchboard_leases_in_flight",
                  {{"topic", "jobs"}, {"group", "b"}}),
            0);
  EXPECT_EQ(Collect(*metrics.registry(), "switchboard_leases_in_flight").size(), 2u);
}

TEST(BrokerMetricsTest, SubscriberBufferFillFollowsTheSamplesAndZeroesPatternsThatLeft) {
  metrics::Metrics metrics(/*max_topic_labels=*/2);
  BrokerMetrics observer(metrics);
  const auto fill = [&](const std::string& pattern) {
    return Gauge(*metrics.registry(), "switchboard_subscriber_buffer_fill", {{"topic", pattern}});
  };
  observer.OnSubscriberBufferFill({{"prices", 0.5}, {"events.*", 0.25}});
  EXPECT_EQ(fill("prices"), 0.5);
  EXPECT_EQ(fill("events.*"), 0.25);
  // "prices" lost its subscribers; "third" is past the cap of 2 patterns.
  observer.OnSubscriberBufferFill({{"events.*", 0.75}, {"third", 1}});
  EXPECT_EQ(fill("prices"), 0);
  EXPECT_EQ(fill("events.*"), 0.75);
  EXPECT_EQ(fill("third"), std::nullopt);
  observer.OnSubscriberBufferFill({});
  EXPECT_EQ(fill("events.*"), 0);
}

}  // namespace
}  // namespace switchboard::broker
