#include "server/broker/redis/redis_metrics.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/unit/metrics/collected.h"

namespace switchboard::broker::redis {
namespace {

using metrics::testing::Collect;
using metrics::testing::Gauge;

TEST(RedisMetricsTest, RedisConnectionsFollowTheirStates) {
  metrics::Metrics metrics;
  RedisMetrics observer(metrics);
  const auto connections = [&](const std::string& state) {
    return Gauge(*metrics.registry(), "switchboard_redis_connections",
                 {{"role", "reader"}, {"state", state}})
        .value_or(-1);
  };
  observer.OnStateChanged("reader", ConnectionState::kAbsent, ConnectionState::kConnecting);
  observer.OnStateChanged("reader", ConnectionState::kAbsent, ConnectionState::kConnecting);
  EXPECT_EQ(connections("connecting"), 2);
  observer.OnStateChanged("reader", ConnectionState::kConnecting, ConnectionState::kReady);
  EXPECT_EQ(connections("connecting"), 1);
  EXPECT_EQ(connections("ready"), 1);
  observer.OnStateChanged("reader", ConnectionState::kReady, ConnectionState::kConnecting);
  observer.OnStateChanged("reader", ConnectionState::kConnecting, ConnectionState::kAbsent);
  EXPECT_EQ(connections("connecting"), 1);
  EXPECT_EQ(connections("ready"), 0);
}

TEST(RedisMetricsTest, PipelineDepthAndReconnectsAreCountedPerRole) {
  metrics::Metrics metrics;
  RedisMetrics observer(metrics);
  observer.OnWrite("command", 1);
  observer.OnWrite("command", 40);
  observer.OnReconnectAttempt("command");
  const std::vector<prometheus::ClientMetric> depth =
      Collect(*metrics.registry(), "switchboard_redis_pipeline_depth");
  ASSERT_EQ(depth.size(), 1u);
  EXPECT_EQ(depth[0].histogram.sample_count, 2u);
  EXPECT_EQ(depth[0].histogram.sample_sum, 41);
  const std::vector<prometheus::ClientMetric> reconnects =
      Collect(*metrics.registry(), "switchboard_redis_reconnects_total");
  ASSERT_EQ(reconnects.size(), 1u);
  EXPECT_EQ(reconnects[0].counter.value, 1);
}

}  // namespace
}  // namespace switchboard::broker::redis
