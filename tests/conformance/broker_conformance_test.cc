// The broker conformance suite: DESIGN.md §2, stated with exact counts, for
// every backend. See conformance_backend.h for how a backend joins.
#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/conformance/conformance_suite.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {

using broker::Delivery;
using broker::LeaseUpdate;
using broker::LeaseUpdateResult;
using broker::Message;
using broker::OutgoingMessage;
using broker::OverflowPolicy;
using broker::TopicDeclaration;
using broker::TopicKind;
using ::testing::AllOf;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

std::vector<TopicDeclaration> ConformanceTopics() {
  auto ephemeral = [](std::string pattern, uint32_t buffer, OverflowPolicy overflow) {
    TopicDeclaration declaration{std::move(pattern), {}};
    declaration.policy.kind = TopicKind::kEphemeral;
    declaration.policy.subscriber_buffer = buffer;
    declaration.policy.overflow = overflow;
    return declaration;
  };
  auto durable = [](std::string pattern, uint64_t max_len, absl::Duration ack_deadline,
                    uint32_t max_delivery_attempts) {
    TopicDeclaration declaration{std::move(pattern), {}};
    declaration.policy.kind = TopicKind::kDurable;
    declaration.policy.max_len = max_len;
    declaration.policy.ack_deadline = ack_deadline;
    declaration.policy.max_delivery_attempts = max_delivery_attempts;
    return declaration;
  };
  return {
      ephemeral("events.*", 100, OverflowPolicy::kDropOldest),
      ephemeral("alerts", 100, OverflowPolicy::kDropOldest),
      ephemeral("slow.oldest", 3, OverflowPolicy::kDropOldest),
      ephemeral("slow.newest", 3, OverflowPolicy::kDropNewest),
      ephemeral("slow.disconnect", 3, OverflowPolicy::kDisconnect),
      durable("jobs", 1000, absl::Seconds(10), 5),
      durable("short", 5, absl::Seconds(30), 5),
      durable("fragile", 1000, absl::Seconds(10), 3),
  };
}

BrokerConformanceTest::BrokerConformanceTest() : dispatcher_("conformance", clock_) {}

void BrokerConformanceTest::SetUp() {
  dispatcher_.Start();
  backend_ = GetParam().make();
  broker_ =
      backend_->CreateBroker(broker::TopicPolicies(ConformanceTopics()), dispatcher_, observer_);
  ASSERT_NE(broker_, nullptr);
}

void BrokerConformanceTest::TearDown() {
  if (broker_ != nullptr) broker_->Shutdown();
  broker_.reset();
}

absl::StatusOr<std::vector<std::string>> BrokerConformanceTest::TryPublish(
    const std::string& topic, std::vector<OutgoingMessage> messages) {
  absl::Notification done;
  absl::StatusOr<std::vector<std::string>> result = absl::UnknownError("never completed");
  bool inline_call = false;
  const std::thread::id caller = std::this_thread::get_id();
  broker_->Publish(topic, std::move(messages), [&](absl::StatusOr<std::vector<std::string>> ids) {
    inline_call = std::this_thread::get_id() == caller;
    result = std::move(ids);
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(kWaitTimeout)) {
    return absl::DeadlineExceededError("publish never completed");
  }
  EXPECT_FALSE(inline_call) << "Publish completed inline";
  return result;
}

std::vector<std::string> BrokerConformanceTest::Publish(const std::string& topic,
                                                        std::vector<OutgoingMessage> messages) {
  const size_t count = messages.size();
  absl::StatusOr<std::vector<std::string>> ids = TryPublish(topic, std::move(messages));
  EXPECT_THAT(ids, IsOk()) << "publishing to " << topic;
  if (!ids.ok()) return {};
  EXPECT_EQ(ids->size(), count);
  return *std::move(ids);
}

std::vector<std::string> BrokerConformanceTest::PublishNumbered(const std::string& topic, int count,
                                                                const std::string& prefix) {
  std::vector<OutgoingMessage> messages(count);
  for (int i = 0; i < count; ++i) messages[i].payload = absl::StrCat(prefix, i);
  return Publish(topic, std::move(messages));
}

std::unique_ptr<broker::Subscription> BrokerConformanceTest::Subscribe(
    absl::string_view topic, RecordingSubscriberSink& sink) {
  absl::StatusOr<std::unique_ptr<broker::Subscription>> subscription =
      broker_->Subscribe(topic, sink);
  EXPECT_THAT(subscription, IsOk()) << "subscribing to " << topic;
  if (!subscription.ok()) return nullptr;
  sink.Attach(subscription->get());
  EXPECT_TRUE(sink.WaitForSubscribed()) << "no OnSubscribed for " << topic;
  return *std::move(subscription);
}

std::unique_ptr<broker::ConsumerSession> BrokerConformanceTest::Consume(
    const std::string& topic, const std::string& group, RecordingConsumerSink& sink,
    uint32_t max_in_flight, absl::Duration ack_deadline) {
  absl::StatusOr<std::unique_ptr<broker::ConsumerSession>> session =
      broker_->Consume({topic, group, max_in_flight, ack_deadline}, sink);
  EXPECT_THAT(session, IsOk()) << "consuming " << topic;
  if (!session.ok()) return nullptr;
  return *std::move(session);
}

LeaseUpdateResult BrokerConformanceTest::Settle(broker::ConsumerSession& session,
                                                RecordingConsumerSink& sink, LeaseUpdate update) {
  const size_t settled_before = sink.settled().size();
  session.Settle(std::move(update),
                 [&sink](LeaseUpdateResult result) { sink.RecordSettled(std::move(result)); });
  EXPECT_TRUE(sink.WaitForSettled(settled_before + 1)) << "Settle never completed";
  std::vector<LeaseUpdateResult> settled = sink.settled();
  return settled.size() > settled_before ? settled.back() : LeaseUpdateResult{};
}

void BrokerConformanceTest::Ack(broker::ConsumerSession& session, RecordingConsumerSink& sink,
                                const std::vector<Delivery>& deliveries) {
  LeaseUpdate update;
  for (const Delivery& delivery : deliveries) update.acks.push_back(delivery.ack_id);
  LeaseUpdateResult result = Settle(session, sink, std::move(update));
  ASSERT_EQ(result.acks.size(), deliveries.size());
  for (const absl::Status& status : result.acks) EXPECT_THAT(status, IsOk());
}

void BrokerConformanceTest::Nack(broker::ConsumerSession& session, RecordingConsumerSink& sink,
                                 const Delivery& delivery) {
  LeaseUpdate update;
  update.nacks.push_back(delivery.ack_id);
  LeaseUpdateResult result = Settle(session, sink, std::move(update));
  ASSERT_EQ(result.nacks.size(), 1u);
  EXPECT_THAT(result.nacks[0], IsOk());
}

namespace {

std::vector<std::string> MessageIds(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> ids;
  for (const Delivery& delivery : deliveries) ids.push_back(delivery.message.id);
  return ids;
}

std::vector<std::string> MessageIds(const std::vector<Message>& messages) {
  std::vector<std::string> ids;
  for (const Message& message : messages) ids.push_back(message.id);
  return ids;
}

std::vector<uint32_t> Attempts(const std::vector<Delivery>& deliveries) {
  std::vector<uint32_t> attempts;
  for (const Delivery& delivery : deliveries) attempts.push_back(delivery.delivery_attempt);
  return attempts;
}

std::vector<std::string> Topics(const std::vector<Message>& messages) {
  std::vector<std::string> topics;
  for (const Message& message : messages) topics.push_back(message.topic);
  return topics;
}

std::vector<Delivery> Slice(const std::vector<Delivery>& deliveries, size_t from, size_t to) {
  return std::vector<Delivery>(deliveries.begin() + from, deliveries.begin() + to);
}

// Orders Redis-style ids "<ms>-<seq>" numerically.
bool IdLess(const std::string& a, const std::string& b) {
  auto parse = [](const std::string& id) {
    std::pair<std::string, std::string> parts = absl::StrSplit(id, '-');
    std::pair<uint64_t, uint64_t> value{0, 0};
    EXPECT_TRUE(absl::SimpleAtoi(parts.first, &value.first) &&
                absl::SimpleAtoi(parts.second, &value.second))
        << id;
    return value;
  };
  return parse(a) < parse(b);
}

LeaseUpdate::Extension Extend(const Delivery& delivery, absl::Duration deadline) {
  return LeaseUpdate::Extension{delivery.ack_id, deadline};
}

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
  update.nacks = {their[1].ack_id, "garbage", my[0].ack_id};
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

// ---------------------------------------------------------------------------
// Ephemeral topics.

TEST_P(BrokerConformanceTest, EverySubscriberGetsEveryMessage) {
  RecordingSubscriberSink sinks[3];
  std::unique_ptr<broker::Subscription> subscriptions[3];
  for (int i = 0; i < 3; ++i) {
    subscriptions[i] = Subscribe("alerts", sinks[i]);
    ASSERT_NE(subscriptions[i], nullptr);
  }
  const std::vector<std::string> ids = PublishNumbered("alerts", 10);
  for (RecordingSubscriberSink& sink : sinks) ASSERT_TRUE(sink.WaitForCount(10));
  Quiesce();
  for (RecordingSubscriberSink& sink : sinks) {
    EXPECT_EQ(sink.count(), 10u);
    EXPECT_THAT(MessageIds(sink.messages()), ElementsAreArray(ids));
    EXPECT_THAT(sink.payloads(),
                ElementsAre("m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"));
    EXPECT_THAT(Topics(sink.messages()), ElementsAreArray(std::vector<std::string>(10, "alerts")));
    EXPECT_THAT(sink.dropped(), ElementsAreArray(std::vector<uint64_t>(10, 0)));
    EXPECT_THAT(sink.violations(), IsEmpty());
  }
  EXPECT_EQ(observer_.dropped("alerts"), 0u);
}

TEST_P(BrokerConformanceTest, MessagesCarryIdsAttributesAndPublishTime) {
  RecordingSubscriberSink sink;
  auto subscription = Subscribe("alerts", sink);
  std::vector<std::string> ids = Publish("alerts", {{"fire", {{"severity", "high"}}}});
  ASSERT_TRUE(sink.WaitForCount(1));
  ASSERT_EQ(ids.size(), 1u);
  const Message message = sink.messages()[0];
  EXPECT_EQ(message.id, ids[0]);
  EXPECT_THAT(message.id, MatchesRegex("[0-9]+-[0-9]+"));
  EXPECT_EQ(message.payload, "fire");
  EXPECT_EQ(message.attributes, (broker::Attributes{{"severity", "high"}}));
  EXPECT_GT(message.publish_time, absl::UnixEpoch());
}

TEST_P(BrokerConformanceTest, PrefixSubscriptionReceivesEveryMatchingTopic) {
  RecordingSubscriberSink prefix_sink;
  RecordingSubscriberSink exact_sink;
  auto prefix = Subscribe("events.*", prefix_sink);
  auto exact = Subscribe("events.a", exact_sink);
  ASSERT_NE(prefix, nullptr);
  ASSERT_NE(exact, nullptr);
  PublishNumbered("events.a", 2, "a");
  PublishNumbered("events.b", 3, "b");
  ASSERT_TRUE(prefix_sink.WaitForCount(5));
  ASSERT_TRUE(exact_sink.WaitForCount(2));
  Quiesce();
  EXPECT_THAT(prefix_sink.payloads(), ElementsAre("a0", "a1", "b0", "b1", "b2"));
  EXPECT_THAT(Topics(prefix_sink.messages()),
              ElementsAre("events.a", "events.a", "events.b", "events.b", "events.b"));
  EXPECT_THAT(exact_sink.payloads(), ElementsAre("a0", "a1"));
}

TEST_P(BrokerConformanceTest, PublishWithoutSubscribersSucceedsAndTheMessagesVanish) {
  const std::vector<std::string> unheard = PublishNumbered("alerts", 3);
  EXPECT_EQ(unheard.size(), 3u);
  RecordingSubscriberSink sink;
  auto subscription = Subscribe("alerts", sink);
  const std::vector<std::string> heard = PublishNumbered("alerts", 1, "late");
  ASSERT_TRUE(sink.WaitForCount(1));
  Quiesce();
  EXPECT_THAT(sink.payloads(), ElementsAre("late0"));
}

// A manual-ready subscriber on a 3-message buffer, sent 10 messages: it holds
// m0, 3 more fit, and 6 overflow.
TEST_P(BrokerConformanceTest, DropOldestKeepsTheNewestAndCountsTheDrops) {
  RecordingSubscriberSink sink(RecordingSubscriberSink::Readiness::kManual);
  auto subscription = Subscribe("slow.oldest", sink);
  PublishNumbered("slow.oldest", 10);
  ASSERT_TRUE(sink.WaitForCount(1));
  Quiesce();
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_EQ(observer_.dropped("slow.oldest"), 6u);
  for (size_t n = 2; n <= 4; ++n) {
    sink.Ready();
    ASSERT_TRUE(sink.WaitForCount(n));
  }
  sink.Ready();
  Quiesce();
  EXPECT_THAT(sink.payloads(), ElementsAre("m0", "m7", "m8", "m9"));
  EXPECT_THAT(sink.dropped(), ElementsAre(0, 6, 0, 0));
  EXPECT_FALSE(sink.closed().has_value());
  EXPECT_THAT(sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, DropNewestKeepsTheOldestAndCountsTheDrops) {
  RecordingSubscriberSink sink(RecordingSubscriberSink::Readiness::kManual);
  auto subscription = Subscribe("slow.newest", sink);
  PublishNumbered("slow.newest", 10);
  ASSERT_TRUE(sink.WaitForCount(1));
  Quiesce();
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_EQ(observer_.dropped("slow.newest"), 6u);
  for (size_t n = 2; n <= 4; ++n) {
    sink.Ready();
    ASSERT_TRUE(sink.WaitForCount(n));
  }
  sink.Ready();
  Quiesce();
  EXPECT_THAT(sink.payloads(), ElementsAre("m0", "m1", "m2", "m3"));
  EXPECT_THAT(sink.dropped(), ElementsAre(0, 6, 0, 0));
  EXPECT_FALSE(sink.closed().has_value());
  EXPECT_THAT(sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, DisconnectEndsTheSubscriptionWithResourceExhausted) {
  RecordingSubscriberSink sink(RecordingSubscriberSink::Readiness::kManual);
  auto subscription = Subscribe("slow.disconnect", sink);
  PublishNumbered("slow.disconnect", 10);
  ASSERT_TRUE(sink.WaitForClosed());
  Quiesce();
  EXPECT_THAT(*sink.closed(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(sink.payloads(), ElementsAre("m0"));
  // m1..m3 were buffered and m4 overflowed; m5..m9 found no subscriber.
  EXPECT_EQ(observer_.dropped("slow.disconnect"), 4u);
  sink.Ready();  // Harmless after the end.
  PublishNumbered("slow.disconnect", 1, "after");
  Quiesce();
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_THAT(sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, SlowSubscriberDoesNotHoldBackAFastOne) {
  RecordingSubscriberSink slow_sink(RecordingSubscriberSink::Readiness::kManual);
  RecordingSubscriberSink fast_sink;
  auto slow = Subscribe("slow.oldest", slow_sink);
  auto fast = Subscribe("slow.oldest", fast_sink);
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    std::vector<std::string> one = PublishNumbered("slow.oldest", 1, absl::StrCat("m", i, "-"));
    ids.insert(ids.end(), one.begin(), one.end());
  }
  ASSERT_TRUE(fast_sink.WaitForCount(50));
  Quiesce();
  EXPECT_THAT(MessageIds(fast_sink.messages()), ElementsAreArray(ids));
  EXPECT_THAT(fast_sink.dropped(), ElementsAreArray(std::vector<uint64_t>(50, 0)));
  EXPECT_EQ(slow_sink.count(), 1u);
  EXPECT_EQ(observer_.dropped("slow.oldest"), 46u);  // 50 - 1 held - 3 buffered.
}

TEST_P(BrokerConformanceTest, NoMessageReachesADestroyedSubscription) {
  RecordingSubscriberSink gone_sink;
  RecordingSubscriberSink staying_sink;
  auto gone = Subscribe("alerts", gone_sink);
  auto staying = Subscribe("alerts", staying_sink);
  gone.reset();
  gone_sink.Seal();
  PublishNumbered("alerts", 5);
  ASSERT_TRUE(staying_sink.WaitForCount(5));
  Quiesce();
  EXPECT_EQ(gone_sink.count(), 0u);
  EXPECT_EQ(staying_sink.count(), 5u);
  EXPECT_THAT(gone_sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, DestroyingASubscriptionWhileMessagesFlowStopsItsCallbacks) {
  RecordingSubscriberSink sink;
  auto subscription = Subscribe("alerts", sink);
  std::thread publisher([this] {
    for (int i = 0; i < 200; ++i) PublishNumbered("alerts", 1);
  });
  ASSERT_TRUE(sink.WaitForCount(10));
  subscription.reset();  // Off the dispatcher thread, mid-stream.
  sink.Seal();
  publisher.join();
  Quiesce();
  EXPECT_LT(sink.count(), 200u);
  EXPECT_THAT(sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, DestroyingASessionWhileMessagesFlowStopsItsCallbacks) {
  RecordingConsumerSink sink;
  auto session = Consume("jobs", "g", sink, 1000);
  std::thread publisher([this] {
    for (int i = 0; i < 200; ++i) PublishNumbered("jobs", 1);
  });
  ASSERT_TRUE(sink.WaitForCount(10));
  session.reset();
  sink.Seal();
  publisher.join();
  Quiesce();
  EXPECT_LT(sink.count(), 200u);
  EXPECT_THAT(sink.violations(), IsEmpty());

  // Everything it did not ack goes to the next consumer of the group.
  RecordingConsumerSink next_sink;
  auto next = Consume("jobs", "g", next_sink, 1000);
  ASSERT_TRUE(next_sink.WaitForCount(200));
  Quiesce();
  EXPECT_EQ(next_sink.count(), 200u);
}

// ---------------------------------------------------------------------------
// Kinds, health and shutdown.

TEST_P(BrokerConformanceTest, UsingATopicAsTheOtherKindFailsNamingTheKind) {
  RecordingSubscriberSink subscriber_sink;
  RecordingConsumerSink consumer_sink;
  using Code = absl::StatusCode;
  EXPECT_THAT(
      broker_->Subscribe("jobs", subscriber_sink),
      StatusIs(Code::kFailedPrecondition, AllOf(HasSubstr("'jobs'"), HasSubstr("durable"))));
  EXPECT_THAT(broker_->Subscribe("undeclared", subscriber_sink),
              StatusIs(Code::kFailedPrecondition, HasSubstr("durable")));
  EXPECT_THAT(broker_->Subscribe("orders.*", subscriber_sink),
              StatusIs(Code::kFailedPrecondition, HasSubstr("durable")));
  EXPECT_THAT(
      broker_->Consume({"alerts", "g", 1, absl::ZeroDuration()}, consumer_sink),
      StatusIs(Code::kFailedPrecondition, AllOf(HasSubstr("'alerts'"), HasSubstr("ephemeral"))));
  EXPECT_THAT(broker_->Consume({"events.x", "g", 1, absl::ZeroDuration()}, consumer_sink),
              StatusIs(Code::kFailedPrecondition, HasSubstr("ephemeral")));
  Quiesce();
  EXPECT_THAT(subscriber_sink.violations(), IsEmpty());
  EXPECT_THAT(consumer_sink.violations(), IsEmpty());
}

TEST_P(BrokerConformanceTest, HealthReportsServing) {
  absl::Notification reported;
  bool serving = false;
  bool inline_call = false;
  const std::thread::id caller = std::this_thread::get_id();
  broker_->WatchHealth([&](bool now_serving) {
    if (reported.HasBeenNotified()) return;
    inline_call = std::this_thread::get_id() == caller;
    serving = now_serving;
    reported.Notify();
  });
  ASSERT_TRUE(reported.WaitForNotificationWithTimeout(kWaitTimeout));
  EXPECT_TRUE(serving);
  EXPECT_FALSE(inline_call);
}

TEST_P(BrokerConformanceTest, ShutdownIsIdempotentAndLaterCallsFailUnavailable) {
  broker_->Shutdown();
  broker_->Shutdown();
  EXPECT_THAT(TryPublish("jobs", {{"late", {}}}), StatusIs(absl::StatusCode::kUnavailable));
  RecordingSubscriberSink subscriber_sink;
  RecordingConsumerSink consumer_sink;
  EXPECT_THAT(broker_->Subscribe("alerts", subscriber_sink),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(broker_->Consume({"jobs", "g", 1, absl::ZeroDuration()}, consumer_sink),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace switchboard::testing
