// The conformance suite's fixture and topic declarations
// (conformance_suite.h).
#include "tests/conformance/conformance_suite.h"

#include <algorithm>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {

using broker::Delivery;
using broker::LeaseUpdate;
using broker::LeaseUpdateResult;
using broker::OutgoingMessage;
using broker::OverflowPolicy;
using broker::TopicDeclaration;
using broker::TopicKind;

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
  // RabbitMQ keeps messages only for groups that exist: every group a test
  // consumes is declared (the other backends ignore the declaration).
  auto WithGroups = [](TopicDeclaration declaration, std::vector<std::string> groups) {
    declaration.policy.groups = std::move(groups);
    return declaration;
  };
  // Keyed messages on Redis need ordering partitions.
  auto WithPartitions = [](TopicDeclaration declaration) {
    declaration.policy.ordering_partitions = 4;
    return declaration;
  };
  return {
      ephemeral("events.*", 100, OverflowPolicy::kDropOldest),
      ephemeral("alerts", 100, OverflowPolicy::kDropOldest),
      ephemeral("slow.oldest", 3, OverflowPolicy::kDropOldest),
      ephemeral("slow.newest", 3, OverflowPolicy::kDropNewest),
      ephemeral("slow.disconnect", 3, OverflowPolicy::kDisconnect),
      WithGroups(WithPartitions(durable("jobs", 1000, absl::Seconds(10), 5)), {"g"}),
      WithGroups(durable("short", 5, absl::Seconds(30), 5), {"g"}),
      WithGroups(WithPartitions(durable("fragile", 1000, absl::Seconds(10), 3)), {"g"}),
      WithGroups(durable("fragile:dlq", 1000000, absl::Seconds(30), 5), {"ops"}),
      [&] {
        TopicDeclaration backoff = durable("backoff", 1000, absl::Seconds(60), 4);
        backoff.policy.retry_backoff = broker::RetryBackoff{absl::Seconds(1), absl::Seconds(2)};
        return WithGroups(backoff, {"g"});
      }(),
      WithGroups(durable("backoff:dlq", 1000000, absl::Seconds(30), 5), {"d"}),
      [&] {
        TopicDeclaration dedup = durable("dedup.short", 1000, absl::Seconds(10), 5);
        dedup.policy.dedup_window = kShortDedupWindow;
        return WithGroups(dedup, {"g"});
      }(),
      // Undeclared otherwise: the defaults, with the groups the tests use.
      WithGroups(durable("orders", 1000000, absl::Seconds(30), 5), {"g"}),
      WithGroups(durable("work", 1000000, absl::Seconds(30), 5), {"g"}),
      WithGroups(durable("events-log", 1000000, absl::Seconds(30), 5), {"a", "b"}),
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
                                 const Delivery& delivery, absl::Duration delay) {
  LeaseUpdate update;
  update.nacks.push_back({delivery.ack_id, delay});
  LeaseUpdateResult result = Settle(session, sink, std::move(update));
  ASSERT_EQ(result.nacks.size(), 1u);
  EXPECT_THAT(result.nacks[0], IsOk());
}

}  // namespace switchboard::testing
