#include "server/upstream/upstream_metrics.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/unit/metrics/collected.h"

namespace switchboard::upstream {
namespace {

using metrics::kOverflowLabel;
using metrics::testing::Collect;
using metrics::testing::Labels;

TEST(UpstreamMetricsTest, UpstreamRequestsCountPerLabelsWithMethodsPastTheCapAsOverflow) {
  metrics::Metrics metrics(/*max_topic_labels=*/1);
  UpstreamMetrics observer(metrics);
  for (int i = 0; i < 3; ++i)
    observer.OnUpstreamRequest("chain", "getSlot", "ok", absl::Milliseconds(1));
  observer.OnUpstreamRequest("chain", "getSlot", "http_5xx", absl::Milliseconds(1));
  for (const char* method : {"getBlock", "getBalance", "getBlock"}) {
    observer.OnUpstreamRequest("chain", method, "ok", absl::Milliseconds(1));
  }
  std::map<std::pair<std::string, std::string>, double> requests;
  for (const prometheus::ClientMetric& metric :
       Collect(*metrics.registry(), "switchboard_upstream_requests_total")) {
    std::map<std::string, std::string> labels = Labels(metric);
    EXPECT_EQ(labels["upstream"], "chain");
    requests[{labels["method"], labels["outcome"]}] = metric.counter.value;
  }
  EXPECT_EQ(
      requests,
      (std::map<std::pair<std::string, std::string>, double>{
          {{"getSlot", "ok"}, 3}, {{"getSlot", "http_5xx"}, 1}, {{kOverflowLabel, "ok"}, 3}}));
  const std::vector<prometheus::ClientMetric> latency =
      Collect(*metrics.registry(), "switchboard_upstream_request_duration_seconds");
  ASSERT_EQ(latency.size(), 1u);
  EXPECT_EQ(latency[0].histogram.sample_count, 7u);
}

}  // namespace
}  // namespace switchboard::upstream
