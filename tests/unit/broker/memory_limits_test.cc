// The memory broker's process-wide limits (MemoryLimits): retained bytes
// across topics and the number of durable topics, with exact statuses.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/broker/memory/memory_broker.h"
#include "server/broker/memory/stream.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/recording_sinks.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker {
namespace {

using ::switchboard::testing::RecordingConsumerSink;
using ::switchboard::testing::RecordingObserver;
using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;

// A message of these tests: a 1,000-byte payload and an id of the simulated
// clock's one millisecond, "1700000000000-<seq>": 15 characters for the
// first ten, 16 from the eleventh.
constexpr uint64_t kMessageBytes = memory::kMessageOverheadBytes + 1000 + 15;
constexpr uint64_t kLaterMessageBytes = kMessageBytes + 1;

class MemoryLimitsTest : public ::testing::Test {
 protected:
  void Start(MemoryLimits limits, std::vector<TopicDeclaration> topics = {}) {
    dispatcher_.Start();
    broker_ = std::make_unique<MemoryBroker>(dispatcher_, TopicPolicies(std::move(topics)),
                                             observer_, limits);
  }

  ~MemoryLimitsTest() override {
    if (broker_ != nullptr) broker_->Shutdown();
    dispatcher_.Shutdown();
  }

  absl::StatusOr<std::vector<std::string>> Publish(const std::string& topic, int count) {
    std::vector<OutgoingMessage> messages(count);
    for (OutgoingMessage& message : messages) message.payload = std::string(1000, 'x');
    absl::Notification done;
    absl::StatusOr<std::vector<std::string>> result;
    broker_->Publish(topic, std::move(messages), [&](absl::StatusOr<std::vector<std::string>> ids) {
      result = std::move(ids);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  common::SimulatedClock clock_{absl::FromUnixMillis(1700000000000)};
  event::DispatcherImpl dispatcher_{"limits-test", clock_};
  RecordingObserver observer_;
  std::unique_ptr<MemoryBroker> broker_;
};

TEST_F(MemoryLimitsTest, APublishBeyondMaxMemoryBytesIsRefusedNamingTheLimit) {
  Start(MemoryLimits{10 * kMessageBytes, 100});
  ASSERT_THAT(Publish("a", 6), ::switchboard::testing::IsOk());
  ASSERT_THAT(Publish("b", 4), ::switchboard::testing::IsOk());
  EXPECT_THAT(Publish("a", 1),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr(absl::StrCat("limits.max_memory_bytes: the memory broker retains ",
                                              10 * kMessageBytes, " bytes of its limit of ",
                                              10 * kMessageBytes))));
  // Nothing of a refused batch is stored.
  EXPECT_THAT(Publish("b", 2), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_TRUE(observer_.retained().has_value());
  EXPECT_EQ(observer_.retained()->bytes, 10 * kMessageBytes);
  EXPECT_EQ(observer_.retained()->topics, 2u);
}

TEST_F(MemoryLimitsTest, ATopicsOwnRetentionMakesRoomBeforeTheLimitIsChecked) {
  TopicDeclaration short_topic{"short", {}};
  short_topic.policy.max_len = 3;
  Start(MemoryLimits{6000, 100}, {short_topic});
  ASSERT_THAT(Publish("other", 2), ::switchboard::testing::IsOk());
  // "short" keeps its last 3 whatever is published: always within 6,000.
  for (int i = 0; i < 10; ++i) ASSERT_THAT(Publish("short", 2), ::switchboard::testing::IsOk());
  EXPECT_EQ(observer_.retained()->bytes, 2 * kMessageBytes + 3 * kLaterMessageBytes);
  EXPECT_THAT(Publish("other", 1), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(MemoryLimitsTest, RememberedDedupIdsAreReportedWithTheRetainedBytes) {
  Start(MemoryLimits{uint64_t{1} << 30, 1});
  std::vector<OutgoingMessage> messages(3);
  for (size_t i = 0; i < messages.size(); ++i) {
    messages[i].payload = "p";
    messages[i].dedup_id = absl::StrCat("order-", i);
  }
  absl::Notification published;
  broker_->Publish("a", std::move(messages), [&](absl::StatusOr<std::vector<std::string>> ids) {
    EXPECT_THAT(ids, ::switchboard::testing::IsOk());
    published.Notify();
  });
  published.WaitForNotification();
  // A refused publish (a second topic, beyond max_topics) takes a sample.
  EXPECT_THAT(Publish("b", 1), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_TRUE(observer_.retained().has_value());
  EXPECT_EQ(observer_.retained()->topics, 1u);
  EXPECT_EQ(observer_.retained()->dedup_ids, 3u);
}

TEST_F(MemoryLimitsTest, TopicsBeyondMaxTopicsAreNotCreated) {
  Start(MemoryLimits{uint64_t{1} << 30, 2});
  ASSERT_THAT(Publish("a", 1), ::switchboard::testing::IsOk());
  ASSERT_THAT(Publish("b", 1), ::switchboard::testing::IsOk());
  EXPECT_THAT(Publish("c", 1),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("limits.max_topics: the memory broker holds 2 durable topics, "
                                 "its limit; topic 'c' is not created")));
  // Existing topics take more.
  EXPECT_THAT(Publish("a", 1), ::switchboard::testing::IsOk());
  // A consumer of a new topic is refused the same way.
  RecordingConsumerSink sink;
  absl::StatusOr<std::unique_ptr<ConsumerSession>> session =
      broker_->Consume(ConsumeOptions{"d", "g", 10, absl::ZeroDuration()}, sink);
  ASSERT_THAT(session, ::switchboard::testing::IsOk());
  ASSERT_TRUE(sink.WaitForClosed());
  EXPECT_THAT(*sink.closed(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limits.max_topics")));
}

}  // namespace
}  // namespace switchboard::broker
