// The broker conformance suite, DESIGN.md §2 stated with exact counts for
// every backend: the order in which a group's messages are handed out
// (redeliveries before new messages), and when a nacked message comes back
// (a nack's delay, a topic's retry_backoff). See conformance_backend.h for
// how a backend joins.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance_helpers.h"
#include "tests/conformance/conformance_suite.h"

namespace switchboard::testing {
namespace {

using broker::Delivery;
using broker::LeaseUpdate;
using ::testing::ElementsAre;

TEST_P(BrokerConformanceTest, RedeliveriesAreHandedOutBeforeNewMessages) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 6);
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 3);
  ASSERT_TRUE(sink.WaitForCount(3));
  Quiesce();
  const std::vector<Delivery> first = sink.deliveries();
  ASSERT_THAT(MessageIds(first), ElementsAre(ids[0], ids[1], ids[2]));

  // Three credits come free at once, while three new messages wait: the two
  // redeliveries go first, in nack order, then one new message.
  LeaseUpdate update;
  update.acks = {first[1].ack_id};
  update.nacks = {{first[2].ack_id}, {first[0].ack_id}};
  Settle(*session, sink, update);
  ASSERT_TRUE(sink.WaitForCount(6));
  Quiesce();
  const std::vector<Delivery> next = Slice(sink.deliveries(), 3, 6);
  EXPECT_THAT(MessageIds(next), ElementsAre(ids[2], ids[0], ids[3]));
  EXPECT_THAT(Attempts(next), ElementsAre(2, 2, 1));
  EXPECT_EQ(sink.count(), 6u);
}

TEST_P(BrokerConformanceTest, ADelayedNackIsNotRedeliveredBeforeItsDelay) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 3);  // ack_deadline 10 s.
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 2);
  ASSERT_TRUE(sink.WaitForCount(2));
  Nack(*session, sink, sink.deliveries()[0], absl::Seconds(5));
  // The waiting message holds no credit: the next one goes out at once.
  ASSERT_TRUE(sink.WaitForCount(3));
  Ack(*session, sink, Slice(sink.deliveries(), 1, 3));

  Advance(absl::Milliseconds(4999));
  Quiesce();
  EXPECT_EQ(sink.count(), 3u);
  Advance(absl::Milliseconds(1));
  ASSERT_TRUE(sink.WaitForCount(4));
  Quiesce();
  EXPECT_EQ(sink.count(), 4u);
  EXPECT_THAT(MessageIds(sink.deliveries()), ElementsAre(ids[0], ids[1], ids[2], ids[0]));
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 1, 1, 2));
  EXPECT_EQ(observer_.redelivered("jobs", "g"), 1u);
}

TEST_P(BrokerConformanceTest, RetryBackoffDelaysANackWithoutADelayByAttempt) {
  // retry_backoff 1 s doubling to at most 2 s; 4 attempts; ack_deadline 60 s.
  const std::vector<std::string> ids = PublishNumbered("backoff", 1);
  RecordingConsumerSink sink;
  auto session = Consume("backoff", "g", sink, 1);
  ASSERT_TRUE(sink.WaitForCount(1));
  const std::vector<absl::Duration> delays = {absl::Seconds(1), absl::Seconds(2), absl::Seconds(2)};
  for (size_t attempt = 1; attempt <= delays.size(); ++attempt) {
    Nack(*session, sink, sink.deliveries().back());
    Advance(delays[attempt - 1] - absl::Milliseconds(1));
    Quiesce();
    ASSERT_EQ(sink.count(), attempt) << "attempt " << attempt << " came back early";
    Advance(absl::Milliseconds(1));
    ASSERT_TRUE(sink.WaitForCount(attempt + 1)) << "attempt " << attempt;
  }
  EXPECT_THAT(Attempts(sink.deliveries()), ElementsAre(1, 2, 3, 4));

  // An explicit delay wins over the backoff; on the last attempt a nack
  // dead-letters at once, whatever the delay.
  Nack(*session, sink, sink.deliveries().back(), absl::Minutes(10));
  RecordingConsumerSink dead_letters;
  auto dead_letter_session = Consume("backoff:dlq", "d", dead_letters, 1);
  ASSERT_TRUE(dead_letters.WaitForCount(1));
  EXPECT_EQ(
      dead_letters.deliveries()[0].message.attributes.at(broker::kDeadLetterOriginalIdAttribute),
      ids[0]);
  EXPECT_EQ(
      dead_letters.deliveries()[0].message.attributes.at(broker::kDeadLetterAttemptsAttribute),
      "4");
  Quiesce();
  EXPECT_EQ(sink.count(), 4u);
}

TEST_P(BrokerConformanceTest, ANackedMessageWaitingOutItsDelayGoesToAnotherConsumerAfterIt) {
  const std::vector<std::string> ids = PublishNumbered("jobs", 1);
  RecordingConsumerSink first;
  auto first_session = Consume("jobs", "g", first, 1);
  ASSERT_TRUE(first.WaitForCount(1));
  Nack(*first_session, first, first.deliveries()[0], absl::Seconds(3));
  RecordingConsumerSink second;
  auto second_session = Consume("jobs", "g", second, 1);
  first_session.reset();  // The first consumer leaves during the delay.

  Advance(absl::Milliseconds(2999));
  Quiesce();
  EXPECT_EQ(second.count(), 0u);
  Advance(absl::Milliseconds(1));
  ASSERT_TRUE(second.WaitForCount(1));
  EXPECT_EQ(second.deliveries()[0].message.id, ids[0]);
  EXPECT_EQ(second.deliveries()[0].delivery_attempt, 2u);
}

}  // namespace
}  // namespace switchboard::testing
