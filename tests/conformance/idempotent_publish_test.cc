// The broker conformance suite, DESIGN.md §2 stated with exact counts for
// every backend: idempotent publish. A message whose dedup_id was stored
// within the topic's dedup window is answered with the first one's message
// id and not stored again; once the window has passed, it is stored again
// as a new message. See conformance_backend.h for how a backend
// joins.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance_helpers.h"
#include "tests/conformance/conformance_suite.h"

namespace switchboard::testing {
namespace {

using broker::OutgoingMessage;
using ::testing::ElementsAre;

OutgoingMessage WithDedupId(std::string payload, std::string dedup_id,
                            std::string ordering_key = "") {
  OutgoingMessage message;
  message.payload = std::move(payload);
  message.ordering_key = std::move(ordering_key);
  message.dedup_id = std::move(dedup_id);
  return message;
}

TEST_P(BrokerConformanceTest, ARepeatedDedupIdIsStoredOnceAndAnsweredWithTheFirstId) {
  const std::vector<std::string> first =
      Publish("jobs", {WithDedupId("a", "d1"), WithDedupId("b", "d2"),
                       WithDedupId("a, in the same batch", "d1"), WithDedupId("k", "d3", "key")});
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[2], first[0]);
  EXPECT_NE(first[1], first[0]);
  // A retry of the whole batch, and a message without an id.
  const std::vector<std::string> retried =
      Publish("jobs", {WithDedupId("a, retried", "d1"), WithDedupId("b, retried", "d2"),
                       WithDedupId("k, retried", "d3", "key"), WithDedupId("c", "")});
  ASSERT_EQ(retried.size(), 4u);
  EXPECT_EQ(retried[0], first[0]);
  EXPECT_EQ(retried[1], first[1]);
  EXPECT_EQ(retried[2], first[3]);
  // Dedup ids are per topic.
  const std::vector<std::string> elsewhere = Publish("fragile", {WithDedupId("x", "d1")});
  ASSERT_EQ(elsewhere.size(), 1u);

  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 10);
  ASSERT_TRUE(sink.WaitForCount(4));
  Quiesce();
  std::vector<std::string> payloads;
  for (const broker::Delivery& delivery : sink.deliveries()) {
    payloads.push_back(delivery.message.payload);
  }
  std::sort(payloads.begin(), payloads.end());
  EXPECT_THAT(payloads, ElementsAre("a", "b", "c", "k"));
  RecordingConsumerSink other;
  auto other_session = Consume("fragile", "g", other, 10);
  ASSERT_TRUE(other.WaitForCount(1));
  EXPECT_EQ(other.deliveries()[0].message.payload, "x");
}

TEST_P(BrokerConformanceTest, ADedupIdIsStoredAgainAsANewMessageOnceTheDedupWindowHasPassed) {
  const std::vector<std::string> first = Publish("dedup.short", {WithDedupId("a", "d1")});
  ASSERT_EQ(first.size(), 1u);
  // The window started when the broker stored the message, before Publish
  // returned.
  const absl::Time window_over = absl::Now() + kShortDedupWindow;

  // The window runs on the backend's clock: the suite's SimulatedClock for
  // the memory broker, Redis' own for the dedup key's PX on Redis. Both are
  // moved past its end. The sleep is the behaviour under test (time passing),
  // not synchronisation: there is nothing to poll, as a probe publish would
  // itself store the message once the window has passed.
  constexpr absl::Duration kMargin = absl::Milliseconds(100);
  Advance(kShortDedupWindow + kMargin);
  absl::SleepFor(window_over + kMargin - absl::Now());
  const std::vector<std::string> second =
      Publish("dedup.short", {WithDedupId("a, after the window", "d1")});
  ASSERT_EQ(second.size(), 1u);
  EXPECT_NE(second[0], first[0]);

  // Exactly two messages are stored: the first and the one after the window.
  RecordingConsumerSink sink;
  auto session = Consume("dedup.short", "g", sink, 10);
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();
  std::vector<std::string> payloads;
  std::vector<std::string> ids;
  for (const broker::Delivery& delivery : sink.deliveries()) {
    payloads.push_back(delivery.message.payload);
    ids.push_back(delivery.message.id);
  }
  EXPECT_THAT(payloads, ElementsAre("a", "a, after the window"));
  EXPECT_THAT(ids, ElementsAre(first[0], second[0]));
}

TEST_P(BrokerConformanceTest, MessagesWithAndWithoutDedupIdsKeepTheirPublishOrder) {
  const std::vector<std::string> ids =
      Publish("jobs", {WithDedupId("1", "d1"), WithDedupId("2", "d2"), WithDedupId("3", ""),
                       WithDedupId("4", "d4"), WithDedupId("5", ""), WithDedupId("6", "")});
  ASSERT_EQ(ids.size(), 6u);

  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 10);
  ASSERT_TRUE(sink.WaitForCount(6));
  std::vector<std::string> payloads;
  std::vector<std::string> delivered_ids;
  for (const broker::Delivery& delivery : sink.deliveries()) {
    payloads.push_back(delivery.message.payload);
    delivered_ids.push_back(delivery.message.id);
  }
  EXPECT_THAT(payloads, ElementsAre("1", "2", "3", "4", "5", "6"));
  EXPECT_EQ(delivered_ids, ids);
}

}  // namespace
}  // namespace switchboard::testing
