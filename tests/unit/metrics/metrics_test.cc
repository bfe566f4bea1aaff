#include "server/metrics/metrics.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/collected.h"

namespace switchboard::metrics {
namespace {

using testing::Collect;
using testing::Labels;

TEST(MetricsTest, TopicsBeyondTheCapShareTheOverflowLabel) {
  Metrics metrics(/*max_topic_labels=*/2);
  metrics.ForTopic("a").published.Increment();
  metrics.ForTopic("b").published.Increment();
  metrics.ForTopic("c").published.Increment(2);
  metrics.ForTopic("d").published.Increment(3);
  std::map<std::string, double> published;
  for (const prometheus::ClientMetric& metric :
       Collect(*metrics.registry(), "switchboard_messages_published_total")) {
    published[Labels(metric)["topic"]] = metric.counter.value;
  }
  EXPECT_EQ(published, (std::map<std::string, double>{{"a", 1}, {"b", 1}, {kOverflowLabel, 5}}));
}

TEST(LabelCapTest, KeepsTheFirstValuesAndCountsTheRestAsOverflow) {
  LabelCap cap(2);
  EXPECT_EQ(cap.Label("a"), "a");
  EXPECT_EQ(cap.Label("b"), "b");
  EXPECT_EQ(cap.Label("c"), kOverflowLabel);
  EXPECT_EQ(cap.Label("a"), "a");
}

}  // namespace
}  // namespace switchboard::metrics
