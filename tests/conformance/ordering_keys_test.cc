// The broker conformance suite, DESIGN.md §2 stated with exact counts for
// every backend: ordering keys. Within a group, the messages of one key go
// out one at a time, in publish order; keys go in parallel. A backend that
// keeps keys only on topics with ordering partitions refuses them elsewhere.
// See conformance_backend.h for how a backend joins.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
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
using broker::OutgoingMessage;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::UnorderedElementsAreArray;

OutgoingMessage Keyed(std::string key, std::string payload) {
  OutgoingMessage message;
  message.payload = std::move(payload);
  message.ordering_key = std::move(key);
  return message;
}

// "payload@attempt" of each delivery, in order.
std::vector<std::string> Received(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> received;
  for (const Delivery& delivery : deliveries) {
    received.push_back(absl::StrCat(delivery.message.payload, "@", delivery.delivery_attempt));
  }
  return received;
}

TEST_P(BrokerConformanceTest, KeysOnATopicWithoutPartitionsAreRefusedWhereTheyNeedThem) {
  if (!backend_->keys_need_partitions()) GTEST_SKIP() << "the backend orders keys on any topic";
  std::vector<OutgoingMessage> batch = {Keyed("", "plain"), Keyed("k", "keyed")};
  EXPECT_THAT(TryPublish("short", std::move(batch)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::HasSubstr("messages[1].ordering_key")));
  // Nothing of the batch was stored.
  RecordingConsumerSink sink;
  auto session = Consume("short", "g", sink, 10);
  Quiesce();
  EXPECT_EQ(sink.count(), 0u);
}

TEST_P(BrokerConformanceTest, MessagesOfOneKeyGoOneAtATimeInPublishOrderAcrossConsumers) {
  // Three keys of four messages each, interleaved, and two without a key.
  std::vector<OutgoingMessage> batch;
  std::map<std::string, std::vector<std::string>> published;  // Key -> payloads.
  for (int n = 0; n < 4; ++n) {
    for (const std::string key : {"a", "b", "c"}) {
      const std::string payload = absl::StrCat(key, n);
      batch.push_back(Keyed(key, payload));
      published[key].push_back(payload);
    }
    if (n % 2 == 0) batch.push_back(Keyed("", absl::StrCat("free", n)));
  }
  Publish("jobs", batch);
  RecordingConsumerSink first;
  RecordingConsumerSink second;
  auto first_session = Consume("jobs", "g", first, 3);
  auto second_session = Consume("jobs", "g", second, 3);

  // Ack one delivery at a time, alternating consumers, oldest first; after
  // each step no key has two messages out.
  std::map<std::string, std::vector<std::string>> delivered;  // Key -> payloads, in order.
  size_t first_acked = 0;
  size_t second_acked = 0;
  for (int step = 0; first_acked + second_acked < batch.size(); ++step) {
    ASSERT_LT(step, 100) << "stuck: a key's next message never came";
    Quiesce();
    const std::vector<Delivery> of_first = first.deliveries();
    const std::vector<Delivery> of_second = second.deliveries();
    std::map<std::string, int> out;  // Key -> messages held unacked.
    for (size_t i = first_acked; i < of_first.size(); ++i) ++out[of_first[i].message.ordering_key];
    for (size_t i = second_acked; i < of_second.size(); ++i) {
      ++out[of_second[i].message.ordering_key];
    }
    for (const auto& [key, count] : out) {
      if (!key.empty()) {
        EXPECT_LE(count, 1) << "key " << key << " at step " << step;
      }
    }
    const bool first_turn =
        (step % 2 == 0 && first_acked < of_first.size()) || second_acked == of_second.size();
    RecordingConsumerSink& sink = first_turn ? first : second;
    broker::ConsumerSession& session = first_turn ? *first_session : *second_session;
    size_t& acked = first_turn ? first_acked : second_acked;
    const std::vector<Delivery>& held = first_turn ? of_first : of_second;
    ASSERT_LT(acked, held.size()) << "nothing to ack at step " << step;
    const Delivery& next = held[acked];
    EXPECT_EQ(next.delivery_attempt, 1u);
    if (!next.message.ordering_key.empty()) {
      delivered[next.message.ordering_key].push_back(next.message.payload);
    }
    Ack(session, sink, {next});
    ++acked;
  }
  for (const std::string key : {"a", "b", "c"}) {
    EXPECT_THAT(delivered[key], ElementsAreArray(published[key])) << "key " << key;
  }
  Quiesce();
  EXPECT_EQ(first.count() + second.count(), batch.size());
  // Both consumers had work: keys went in parallel.
  EXPECT_GT(first.count(), 0u);
  EXPECT_GT(second.count(), 0u);
}

TEST_P(BrokerConformanceTest, ANackedOrExpiredMessageComesBackBeforeTheRestOfItsKey) {
  Publish("jobs", {Keyed("a", "a1"), Keyed("a", "a2"), Keyed("b", "b1")});  // ack_deadline 10 s.
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 3);
  ASSERT_TRUE(sink.WaitForCount(2));
  Quiesce();
  EXPECT_THAT(Received(sink.deliveries()), ElementsAre("a1@1", "b1@1"));

  Nack(*session, sink, sink.deliveries()[0]);
  ASSERT_TRUE(sink.WaitForCount(3));
  Advance(absl::Seconds(10));  // a1's second lease (and b1's) expire.
  ASSERT_TRUE(sink.WaitForCount(5));
  Quiesce();
  const std::vector<Delivery> deliveries = sink.deliveries();
  EXPECT_THAT(Received(Slice(deliveries, 0, 3)), ElementsAre("a1@1", "b1@1", "a1@2"));
  EXPECT_THAT(Received(Slice(deliveries, 3, 5)), UnorderedElementsAreArray({"a1@3", "b1@2"}));

  // Only the ack of a1 lets a2 go.
  std::vector<Delivery> a1_and_b1 = Slice(deliveries, 3, 5);
  Ack(*session, sink, a1_and_b1);
  ASSERT_TRUE(sink.WaitForCount(6));
  Quiesce();
  EXPECT_THAT(Received(Slice(sink.deliveries(), 5, 6)), ElementsAre("a2@1"));
  EXPECT_EQ(sink.count(), 6u);
}

TEST_P(BrokerConformanceTest, ADeadLetteredMessageLetsTheNextOfItsKeyGo) {
  Publish("fragile", {Keyed("a", "a1"), Keyed("a", "a2")});  // 3 attempts.
  RecordingConsumerSink sink;
  auto session = Consume("fragile", "g", sink, 2);
  for (size_t attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(sink.WaitForCount(attempt));
    Quiesce();
    ASSERT_EQ(sink.count(), attempt) << "a2 went out while a1 was in progress";
    Nack(*session, sink, sink.deliveries().back());
  }
  ASSERT_TRUE(sink.WaitForCount(4));
  EXPECT_THAT(Received(sink.deliveries()), ElementsAre("a1@1", "a1@2", "a1@3", "a2@1"));
}

}  // namespace
}  // namespace switchboard::testing
