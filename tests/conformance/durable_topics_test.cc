// The broker conformance suite, DESIGN.md §2 stated with exact counts for
// every backend: durable topics: publish and consume, redelivery, dead letters,
// retention, settle failures. See conformance_backend.h for how a backend
// joins.
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance_helpers.h"
#include "tests/conformance/conformance_suite.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using broker::Delivery;
using broker::LeaseUpdate;
using broker::LeaseUpdateResult;
using broker::Message;
using broker::OutgoingMessage;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// ---------------------------------------------------------------------------
// Durable topics: publish and consume.

TEST_P(BrokerConformanceTest, PublishThenConsumeReturnsEveryMessageInOrderWithItsFields) {
  std::vector<OutgoingMessage> batch(3);
  batch[0] = {"alpha", {{"kind", "first"}}};
  batch[1] = {"", {}};
  batch[2] = {std::string("b\0in\xff", 5), {{"a", "x"}, {"b", "y"}}};
  std::vector<OutgoingMessage> expected = batch;
  std::vector<std::string> ids = Publish("orders", std::move(batch));
  std::vector<std::string> more = Publish("orders", {{"delta", {}}});
  ASSERT_EQ(ids.size(), 3u);
  ASSERT_EQ(more.size(), 1u);
  ids.push_back(more[0]);
  expected.push_back({"delta", {}});
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_THAT(ids[i], MatchesRegex("[0-9]+-[0-9]+"));
    if (i > 0) {
      EXPECT_TRUE(IdLess(ids[i - 1], ids[i])) << ids[i - 1] << " then " << ids[i];
    }
  }

  RecordingConsumerSink sink;
  auto session = Consume("orders", "g", sink, 10);
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(sink.WaitForCount(4));
  Quiesce();
  std::vector<Delivery> deliveries = sink.deliveries();
  ASSERT_EQ(deliveries.size(), 4u);
  std::set<std::string> ack_ids;
  for (size_t i = 0; i < deliveries.size(); ++i) {
    const Delivery& delivery = deliveries[i];
    EXPECT_EQ(delivery.message.id, ids[i]);
    EXPECT_EQ(delivery.message.topic, "orders");
    EXPECT_EQ(delivery.message.payload, expected[i].payload);
    EXPECT_EQ(delivery.message.attributes, expected[i].attributes);
    EXPECT_GT(delivery.message.publish_time, absl::UnixEpoch());
    EXPECT_EQ(delivery.delivery_attempt, 1u);
    EXPECT_FALSE(delivery.ack_id.empty());
    ack_ids.insert(delivery.ack_id);
  }
  EXPECT_EQ(ack_ids.size(), 4u) << "ack ids must be unique";
  EXPECT_THAT(sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, EmptyBatchPublishesNothing) {
  EXPECT_THAT(Publish("orders", {}), IsEmpty());
  RecordingConsumerSink sink;
  auto session = Consume("orders", "g", sink, 10);
  Quiesce();
  EXPECT_EQ(sink.count(), 0u);
}

TEST_P(BrokerConformanceTest, ConsumerReceivesMessagesPublishedAfterItJoined) {
  RecordingConsumerSink sink;
  auto session = Consume("orders", "g", sink, 10);
  ASSERT_NE(session, nullptr);
  Quiesce();
  EXPECT_EQ(sink.count(), 0u);
  std::vector<std::string> ids = PublishNumbered("orders", 3);
  ASSERT_TRUE(sink.WaitForCount(3));
  Quiesce();
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAreArray(ids));
  EXPECT_THAT(sink.violations(), IsEmpty());
}

// A group that did not exist yet starts from the beginning of the topic's
// retained history (DESIGN.md §2). RabbitMQ keeps messages only for groups
// whose queue exists: skipped there (keeps_history()); the next test states
// what it does instead.
TEST_P(BrokerConformanceTest, ANewGroupReadsTheRetainedHistory) {
  if (!backend_->keeps_history()) GTEST_SKIP() << "the backend keeps no history for new groups";
  const std::vector<std::string> ids = PublishNumbered("orders", 3);
  RecordingConsumerSink sink;
  auto session = Consume("orders", "late", sink, 10);
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(sink.WaitForCount(3));
  Quiesce();
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAreArray(ids));
}

// Without history, a group nobody declared exists from its first consumer
// on: it gets what is published from then on, and nothing from before.
TEST_P(BrokerConformanceTest, AGroupWithoutHistoryGetsWhatIsPublishedOnceItExists) {
  if (backend_->keeps_history()) GTEST_SKIP() << "the backend keeps history for new groups";
  PublishNumbered("orders", 3, "before");
  RecordingConsumerSink sink;
  auto session = Consume("orders", "late", sink, 10);
  ASSERT_NE(session, nullptr);
  Quiesce();
  EXPECT_EQ(sink.count(), 0u);
  const std::vector<std::string> ids = PublishNumbered("orders", 2, "after");
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAreArray(ids));
}

// DESIGN.md §7: a group's lag (entries it has not read yet) is reported
// while the group has consumers.
TEST_P(BrokerConformanceTest, ConsumerLagCountsEntriesTheGroupHasNotRead) {
  PublishNumbered("work", 10);
  RecordingConsumerSink sink;
  auto session = Consume("work", "g", sink, 3);
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(sink.WaitForCount(3));
  // Samples are periodic: on the broker's clock (memory) or in real time
  // (Redis), so move both along.
  const absl::Time deadline = absl::Now() + kWaitTimeout;
  while (observer_.lag("work", "g") != std::optional<uint64_t>(7) && absl::Now() < deadline) {
    Advance(absl::Milliseconds(100));
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(observer_.lag("work", "g"), std::optional<uint64_t>(7));
  EXPECT_EQ(sink.count(), 3u);
}

// DESIGN.md §7: a group's leases in flight on this replica are sampled
// with its lag, and reported as 0 once its consumer has left.
TEST_P(BrokerConformanceTest, LeasesInFlightAreSampledPerGroupAndDropToZeroWhenTheConsumerLeaves) {
  PublishNumbered("work", 10);
  RecordingConsumerSink sink;
  auto session = Consume("work", "g", sink, 3);
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(sink.WaitForCount(3));
  const auto sampled = [&](uint64_t leases) {
    const absl::Time deadline = absl::Now() + kWaitTimeout;
    while (observer_.leases_in_flight("work", "g") != std::optional<uint64_t>(leases) &&
           absl::Now() < deadline) {
      Advance(absl::Milliseconds(100));
      absl::SleepFor(absl::Milliseconds(20));
    }
    return observer_.leases_in_flight("work", "g");
  };
  EXPECT_EQ(sampled(3), std::optional<uint64_t>(3));
  session.reset();
  EXPECT_EQ(sampled(0), std::optional<uint64_t>(0));
}

// DESIGN.md §7: subscriber buffer fill is sampled per subscribed topic or
// pattern (the fullest buffer), and a pattern without subscribers reports
// none.
TEST_P(BrokerConformanceTest, SubscriberBufferFillIsSampledPerPatternUntilTheSubscriberLeaves) {
  RecordingSubscriberSink sink(RecordingSubscriberSink::Readiness::kManual);
  auto subscription = Subscribe("slow.oldest", sink);
  ASSERT_NE(subscription, nullptr);
  // m0 is outstanding at the sink; two of the buffer's three places fill.
  PublishNumbered("slow.oldest", 3);
  ASSERT_TRUE(sink.WaitForCount(1));
  const auto sampled =
      [&](absl::FunctionRef<bool(const absl::flat_hash_map<std::string, double>&)> done) {
        const absl::Time deadline = absl::Now() + kWaitTimeout;
        while (!done(observer_.buffer_fill()) && absl::Now() < deadline) {
          Advance(absl::Milliseconds(100));
          absl::SleepFor(absl::Milliseconds(20));
        }
        return observer_.buffer_fill();
      };
  EXPECT_THAT(sampled([](const auto& fill) { return fill.contains("slow.oldest"); }),
              UnorderedElementsAre(Pair("slow.oldest", DoubleEq(2.0 / 3))));
  subscription.reset();
  EXPECT_THAT(sampled([](const auto& fill) { return fill.empty(); }), IsEmpty());
}

TEST_P(BrokerConformanceTest, ConsumersOfOneGroupShareTheWorkEachMessageOnce) {
  const std::vector<std::string> ids = PublishNumbered("work", 20);
  RecordingConsumerSink first_sink;
  RecordingConsumerSink second_sink;
  auto first = Consume("work", "g", first_sink, 5);
  auto second = Consume("work", "g", second_sink, 5);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  // Credits bound each session: 5 each, 10 of the 20 in flight.
  ASSERT_TRUE(first_sink.WaitForCount(5));
  ASSERT_TRUE(second_sink.WaitForCount(5));
  Quiesce();
  EXPECT_EQ(first_sink.count(), 5u);
  EXPECT_EQ(second_sink.count(), 5u);

  // Acks return the credit: each session takes 5 of the remaining 10.
  Ack(*first, first_sink, first_sink.deliveries());
  Ack(*second, second_sink, second_sink.deliveries());
  ASSERT_TRUE(first_sink.WaitForCount(10));
  ASSERT_TRUE(second_sink.WaitForCount(10));
  Ack(*first, first_sink, Slice(first_sink.deliveries(), 5, 10));
  Ack(*second, second_sink, Slice(second_sink.deliveries(), 5, 10));
  Quiesce();
  EXPECT_EQ(first_sink.count(), 10u);
  EXPECT_EQ(second_sink.count(), 10u);

  std::vector<std::string> delivered = MessageIds(first_sink.deliveries());
  for (const std::string& id : MessageIds(second_sink.deliveries())) delivered.push_back(id);
  std::sort(delivered.begin(), delivered.end(), IdLess);
  EXPECT_THAT(delivered, ElementsAreArray(ids));
  for (const Delivery& delivery : first_sink.deliveries()) EXPECT_EQ(delivery.delivery_attempt, 1u);
  for (const Delivery& delivery : second_sink.deliveries()) {
    EXPECT_EQ(delivery.delivery_attempt, 1u);
  }

  // Acked messages are done for the group: a newcomer gets nothing.
  RecordingConsumerSink late_sink;
  auto late = Consume("work", "g", late_sink, 100);
  Quiesce();
  EXPECT_EQ(late_sink.count(), 0u);
  EXPECT_THAT(first_sink.violations(), IsEmpty());
  EXPECT_THAT(second_sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, EveryGroupSeesEveryMessage) {
  RecordingConsumerSink a_sink;
  auto a = Consume("events-log", "a", a_sink, 100);
  const std::vector<std::string> ids = PublishNumbered("events-log", 10);
  ASSERT_TRUE(a_sink.WaitForCount(10));
  Ack(*a, a_sink, a_sink.deliveries());

  // Group b starts after group a acked everything, and still sees it all.
  RecordingConsumerSink b_sink;
  auto b = Consume("events-log", "b", b_sink, 100);
  ASSERT_TRUE(b_sink.WaitForCount(10));
  Quiesce();
  EXPECT_THAT(MessageIds(a_sink.deliveries()), ElementsAreArray(ids));
  EXPECT_THAT(MessageIds(b_sink.deliveries()), ElementsAreArray(ids));
}

TEST_P(BrokerConformanceTest, CreditsBoundLeasesInFlight) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 10);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 3);
  ASSERT_TRUE(sink.WaitForCount(3));
  Quiesce();
  ASSERT_EQ(sink.count(), 3u);

  // One ack, one more delivery.
  Ack(*session, sink, Slice(sink.deliveries(), 0, 1));
  ASSERT_TRUE(sink.WaitForCount(4));
  Quiesce();
  ASSERT_EQ(sink.count(), 4u);

  // Ack everything held, repeatedly: never more than 3 beyond the acked.
  size_t acked = 1;
  while (acked < 10) {
    const std::vector<Delivery> deliveries = sink.deliveries();
    Ack(*session, sink, Slice(deliveries, acked, deliveries.size()));
    acked = deliveries.size();
    const size_t expected = std::min<size_t>(acked + 3, 10);
    ASSERT_TRUE(sink.WaitForCount(expected));
    Quiesce();
    ASSERT_EQ(sink.count(), expected);
  }
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAreArray(ids));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAreArray(std::vector<uint32_t>(10, 1)));
}

// ---------------------------------------------------------------------------
// Durable topics: redelivery.

TEST_P(BrokerConformanceTest, NackRedeliversAtOnceWithTheNextAttempt) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 1);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));
  Nack(*session, sink, sink.deliveries()[0]);
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();

  std::vector<Delivery> deliveries = sink.deliveries();
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_THAT(MessageIds(deliveries), ElementsAre(ids[0], ids[0]));
  EXPECT_THAT(Attempts(deliveries), ElementsAre(1, 2));
  EXPECT_EQ(deliveries[1].message.payload, "m0");
  EXPECT_NE(deliveries[1].ack_id, deliveries[0].ack_id);
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 1u);
  EXPECT_EQ(observer_.expired("jobs", "g"), 0u);
}

TEST_P(BrokerConformanceTest, ExpiredLeaseIsRedeliveredWithTheNextAttempt) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 1);  // ack_deadline 10 s.
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));

  Advance(absl::Seconds(9));
  Quiesce();
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_EQ(observer_.expired("jobs", "g"), 0u);

  Advance(absl::Seconds(1));
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();
  EXPECT_EQ(sink.count(), 2u);
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAre(ids[0], ids[0]));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2));
  EXPECT_EQ(observer_.expired("jobs", "g"), 1u);
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 1u);
}

TEST_P(BrokerConformanceTest, ConsumeAckDeadlineOverridesTheTopicDefault) {
  PublishNumbered("jobs", 1);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1, absl::Seconds(3));
  ASSERT_TRUE(sink.WaitForCount(1));
  Advance(absl::Seconds(3));
  ASSERT_TRUE(sink.WaitForCount(2));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2));
  EXPECT_EQ(observer_.expired("jobs", "g"), 1u);
}

TEST_P(BrokerConformanceTest, ExtensionPostponesExpiry) {
  PublishNumbered("jobs", 1);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));

  Advance(absl::Seconds(5));
  LeaseUpdate update;
  update.extensions.push_back(Extend(sink.deliveries()[0], absl::Seconds(20)));  // Until t=25.
  LeaseUpdateResult result = Settle(*session, sink, std::move(update));
  ASSERT_EQ(result.extensions.size(), 1u);
  EXPECT_THAT(result.extensions[0], IsOk());

  Advance(absl::Seconds(15));  // t=20: past the original deadline.
  Quiesce();
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_EQ(observer_.expired("jobs", "g"), 0u);

  Advance(absl::Seconds(5));  // t=25.
  ASSERT_TRUE(sink.WaitForCount(2));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2));
  EXPECT_EQ(observer_.expired("jobs", "g"), 1u);
}

TEST_P(BrokerConformanceTest, ExtensionToZeroActsAsNack) {
  PublishNumbered("jobs", 1);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));
  LeaseUpdate update;
  update.extensions.push_back(Extend(sink.deliveries()[0], absl::ZeroDuration()));
  LeaseUpdateResult result = Settle(*session, sink, std::move(update));
  ASSERT_EQ(result.extensions.size(), 1u);
  EXPECT_THAT(result.extensions[0], IsOk());
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2));
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 1u);
  EXPECT_EQ(observer_.expired("jobs", "g"), 0u);
}

TEST_P(BrokerConformanceTest, DestroyedSessionReleasesItsLeasesToTheOtherConsumerAtOnce) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 5);
  RecordingConsumerSink crashed_sink;
  auto crashed = Consume("jobs", "g", crashed_sink, 5);
  ASSERT_TRUE(crashed_sink.WaitForCount(5));
  RecordingConsumerSink survivor_sink;
  auto survivor = Consume("jobs", "g", survivor_sink, 5);
  Quiesce();
  EXPECT_EQ(survivor_sink.count(), 0u);

  // Two acked, three in flight when the stream ends.
  Ack(*crashed, crashed_sink, Slice(crashed_sink.deliveries(), 0, 2));
  crashed.reset();
  crashed_sink.Seal();

  // No clock advance: release does not wait for the ack deadline.
  ASSERT_TRUE(survivor_sink.WaitForCount(3));
  Quiesce();
  EXPECT_EQ(survivor_sink.count(), 3u);
  EXPECT_THAT(MessageIds(survivor_sink.deliveries()), ElementsAre(ids[2], ids[3], ids[4]));
  EXPECT_THAT(Attempts(survivor_sink.deliveries()), ElementsAre(2, 2, 2));
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 3u);
  EXPECT_EQ(observer_.expired("jobs", "g"), 0u);
  EXPECT_THAT(crashed_sink.violations(), IsEmpty());
}

// ---------------------------------------------------------------------------
// Durable topics: dead letters.

TEST_P(BrokerConformanceTest, NackOnTheLastAttemptMovesTheMessageToTheDeadLetterTopic) {
  std::vector<std::string> ids = Publish("fragile", {{"poison", {{"origin", "test"}}}});
  ASSERT_EQ(ids.size(), 1u);
  RecordingConsumerSink sink;
  auto session = Consume("fragile", "g", sink, 1);  // max_delivery_attempts 3.
  for (size_t attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(sink.WaitForCount(attempt));
    Nack(*session, sink, sink.deliveries().back());
  }
  Quiesce();
  EXPECT_EQ(sink.count(), 3u) << "a dead-lettered message is not redelivered";
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2, 3));
  EXPECT_EQ(observer_.dead_lettered("fragile", "g"), 1u);
  EXPECT_EQ(observer_.redelivered("fragile", "g"), 2u);

  RecordingConsumerSink dlq_sink;
  auto dlq = Consume("fragile:dlq", "ops", dlq_sink, 10);
  ASSERT_TRUE(dlq_sink.WaitForCount(1));
  Quiesce();
  ASSERT_EQ(dlq_sink.count(), 1u);
  const Delivery dead = dlq_sink.deliveries()[0];
  EXPECT_EQ(dead.message.topic, "fragile:dlq");
  EXPECT_EQ(dead.message.payload, "poison");
  EXPECT_NE(dead.message.id, ids[0]);
  EXPECT_EQ(dead.delivery_attempt, 1u);
  EXPECT_EQ(dead.message.attributes,
            (broker::Attributes{{"origin", "test"},
                                {broker::kDeadLetterAttemptsAttribute, "3"},
                                {broker::kDeadLetterOriginalIdAttribute, ids[0]},
                                {broker::kDeadLetterOriginalTopicAttribute, "fragile"}}));
  Ack(*dlq, dlq_sink, dlq_sink.deliveries());

  // The original is gone from the group: a newcomer gets nothing.
  session.reset();
  RecordingConsumerSink late_sink;
  auto late = Consume("fragile", "g", late_sink, 10);
  Quiesce();
  EXPECT_EQ(late_sink.count(), 0u);
}

TEST_P(BrokerConformanceTest, ExpiryOnTheLastAttemptDeadLetters) {
  std::vector<std::string> ids = PublishNumbered("fragile", 1);  // ack_deadline 10 s.
  RecordingConsumerSink sink;
  auto session = Consume("fragile", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));
  Advance(absl::Seconds(10));
  ASSERT_TRUE(sink.WaitForCount(2));
  Advance(absl::Seconds(10));
  ASSERT_TRUE(sink.WaitForCount(3));
  Advance(absl::Seconds(10));
  RecordingConsumerSink dlq_sink;
  auto dlq = Consume("fragile:dlq", "ops", dlq_sink, 10);
  ASSERT_TRUE(dlq_sink.WaitForCount(1));
  Quiesce();
  EXPECT_EQ(sink.count(), 3u);
  EXPECT_EQ(dlq_sink.count(), 1u);
  EXPECT_EQ(observer_.expired("fragile", "g"), 3u);
  EXPECT_EQ(observer_.dead_lettered("fragile", "g"), 1u);
  const Message dead = dlq_sink.deliveries()[0].message;
  EXPECT_EQ(dead.attributes.at(broker::kDeadLetterAttemptsAttribute), "3");
  EXPECT_EQ(dead.attributes.at(broker::kDeadLetterOriginalIdAttribute), ids[0]);
}

TEST_P(BrokerConformanceTest, ReleaseOnTheLastAttemptDeadLetters) {
  std::vector<std::string> ids = PublishNumbered("fragile", 1);
  RecordingConsumerSink sink;
  auto session = Consume("fragile", "g", sink, 1);
  for (size_t attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_TRUE(sink.WaitForCount(attempt));
    Nack(*session, sink, sink.deliveries().back());
  }
  ASSERT_TRUE(sink.WaitForCount(3));
  RecordingConsumerSink survivor_sink;
  auto survivor = Consume("fragile", "g", survivor_sink, 1);
  session.reset();  // The third attempt ends with the stream.

  RecordingConsumerSink dlq_sink;
  auto dlq = Consume("fragile:dlq", "ops", dlq_sink, 10);
  ASSERT_TRUE(dlq_sink.WaitForCount(1));
  Quiesce();
  EXPECT_EQ(survivor_sink.count(), 0u);
  EXPECT_EQ(dlq_sink.count(), 1u);
  EXPECT_EQ(observer_.dead_lettered("fragile", "g"), 1u);
  EXPECT_EQ(dlq_sink.deliveries()[0].message.attributes.at(broker::kDeadLetterAttemptsAttribute),
            "3");
}

// ---------------------------------------------------------------------------
// Durable topics: retention.

TEST_P(BrokerConformanceTest, RetentionKeepsTheNewestMaxLenMessages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {  // One publish each, like 12 XADDs.
    std::vector<std::string> one = PublishNumbered("short", 1, absl::StrCat("m", i, "-"));
    ASSERT_EQ(one.size(), 1u);
    ids.push_back(one[0]);
  }
  RecordingConsumerSink sink;
  auto session = Consume("short", "g", sink, 100);  // max_len 5.
  ASSERT_TRUE(sink.WaitForCount(5));
  Quiesce();
  const size_t kept = sink.count();
  EXPECT_GE(kept, 5u);
  EXPECT_LE(kept, 5u + backend_->retention_slack());
  EXPECT_THAT(MessageIds(sink.deliveries()),
              ElementsAreArray(std::vector<std::string>(ids.end() - kept, ids.end())));
}

// ---------------------------------------------------------------------------
// Durable topics: settle failures.

TEST_P(BrokerConformanceTest, SettleReportsEachItemsFailureWithAPreciseCode) {
  PublishNumbered("jobs", 5);  // 2 + 2 in flight, 1 waiting for credit.
  RecordingConsumerSink mine_sink;
  RecordingConsumerSink theirs_sink;
  auto mine = Consume("jobs", "g", mine_sink, 2);
  auto theirs = Consume("jobs", "g", theirs_sink, 2);
  ASSERT_TRUE(mine_sink.WaitForCount(2));
  ASSERT_TRUE(theirs_sink.WaitForCount(2));
  const std::vector<Delivery> my = mine_sink.deliveries();
  const std::vector<Delivery> their = theirs_sink.deliveries();

  LeaseUpdate update;
  update.acks = {my[0].ack_id, "not-an-ack-id", "", their[0].ack_id, my[0].ack_id};
  update.nacks = {{their[1].ack_id}, {"garbage"}, {my[0].ack_id}};
  update.extensions = {Extend(my[1], absl::Seconds(30)),
                       Extend(their[1], absl::Seconds(30)),
                       {"x", absl::Seconds(30)}};
  LeaseUpdateResult result = Settle(*mine, mine_sink, std::move(update));
  using Code = absl::StatusCode;
  ASSERT_EQ(result.acks.size(), 5u);
  EXPECT_THAT(result.acks[0], IsOk());
  EXPECT_THAT(result.acks[1], StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(result.acks[2], StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(result.acks[3], StatusIs(Code::kPermissionDenied));
  EXPECT_THAT(result.acks[4], StatusIs(Code::kNotFound)) << "already acked";
  ASSERT_EQ(result.nacks.size(), 3u);
  EXPECT_THAT(result.nacks[0], StatusIs(Code::kPermissionDenied));
  EXPECT_THAT(result.nacks[1], StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(result.nacks[2], StatusIs(Code::kNotFound));
  ASSERT_EQ(result.extensions.size(), 3u);
  EXPECT_THAT(result.extensions[0], IsOk());
  EXPECT_THAT(result.extensions[1], StatusIs(Code::kPermissionDenied));
  EXPECT_THAT(result.extensions[2], StatusIs(Code::kInvalidArgument));

  // The other session's leases were untouched: it acks both.
  Ack(*theirs, theirs_sink, their);
  Quiesce();
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 0u);
  EXPECT_EQ(theirs_sink.count(), 2u);
  EXPECT_EQ(mine_sink.count(), 3u) << "one ack returned one credit";
}

TEST_P(BrokerConformanceTest, StaleAckIdFromAnExpiredLeaseDoesNotSettleItsRedelivery) {
  PublishNumbered("jobs", 1);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));
  Advance(absl::Seconds(10));
  ASSERT_TRUE(sink.WaitForCount(2));
  const std::vector<Delivery> deliveries = sink.deliveries();
  ASSERT_EQ(deliveries[0].message.id, deliveries[1].message.id);

  LeaseUpdate stale;
  stale.acks = {deliveries[0].ack_id};
  stale.extensions = {Extend(deliveries[0], absl::Seconds(60))};
  LeaseUpdateResult result = Settle(*session, sink, std::move(stale));
  ASSERT_EQ(result.acks.size(), 1u);
  EXPECT_THAT(result.acks[0], StatusIs(absl::StatusCode::kNotFound));
  ASSERT_EQ(result.extensions.size(), 1u);
  EXPECT_THAT(result.extensions[0], StatusIs(absl::StatusCode::kNotFound));

  // The redelivery's lease is still live: it expires on its own deadline.
  Advance(absl::Seconds(10));
  ASSERT_TRUE(sink.WaitForCount(3));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2, 3));
  Ack(*session, sink, Slice(sink.deliveries(), 2, 3));
  Advance(absl::Seconds(60));
  Quiesce();
  EXPECT_EQ(sink.count(), 3u);
}

TEST_P(BrokerConformanceTest, SettleCompletionNeverRunsAfterTheSessionIsDestroyed) {
  PublishNumbered("jobs", 100);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 100);
  ASSERT_TRUE(sink.WaitForCount(100));
  for (const Delivery& delivery : sink.deliveries()) {
    LeaseUpdate update;
    update.acks.push_back(delivery.ack_id);
    session->Settle(std::move(update),
                    [&sink](LeaseUpdateResult result) { sink.RecordSettled(std::move(result)); });
  }
  session.reset();
  sink.Seal();
  Quiesce();
  EXPECT_LE(sink.settled().size(), 100u);
  EXPECT_THAT(sink.violations(), IsEmpty());
}

}  // namespace
}  // namespace switchboard::testing
