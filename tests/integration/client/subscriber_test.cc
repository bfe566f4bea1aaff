// Subscriber against an in-process server with an ephemeral `news.*` topic:
// liveness, fan-in from a prefix, the kind check, and stopping.
#include "switchboard/client/subscriber.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/client/collector.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTopicsYaml[] = R"(
topics:
  - name: "news.*"
    kind: ephemeral
    buffer: 100
)";

ClientOptions At(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

class SubscriberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer(kTopicsYaml);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<Client>(At(server_.target));
  }

  void Publish(const std::string& topic, const std::vector<std::string>& payloads) {
    std::vector<v1::OutgoingMessage> messages;
    for (const std::string& payload : payloads) messages.emplace_back().set_payload(payload);
    ASSERT_THAT(client_->Publish(topic, std::move(messages)), IsOk());
  }

  testing::InProcessServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(SubscriberTest, ReceivesEveryMessagePublishedOnceLive) {
  Collector received;
  Subscriber subscriber(*client_, "news.eu", [&received](const v1::SubscribeResponse& response) {
    EXPECT_EQ(response.dropped_since_last(), 0u);
    received.Add(response.message().payload());
  });
  ASSERT_THAT(subscriber.WaitUntilLive(absl::Seconds(10)), IsOk());
  Publish("news.eu", {"a", "b", "c", "d", "e"});
  ASSERT_TRUE(received.AwaitCount(5));
  EXPECT_THAT(received.items(), ElementsAre("a", "b", "c", "d", "e"));
  subscriber.Stop();
  EXPECT_THAT(subscriber.Wait(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(SubscriberTest, APrefixSubscriptionReceivesEveryMatchingTopic) {
  Collector received;
  Subscriber subscriber(*client_, "news.*", [&received](const v1::SubscribeResponse& response) {
    received.Add(absl::StrCat(response.message().topic(), "=", response.message().payload()));
  });
  ASSERT_THAT(subscriber.WaitUntilLive(absl::Seconds(10)), IsOk());
  Publish("news.eu", {"1"});
  Publish("news.us", {"2"});
  ASSERT_TRUE(received.AwaitCount(2));
  EXPECT_THAT(received.items(), ElementsAre("news.eu=1", "news.us=2"));
}

TEST_F(SubscriberTest, ADurableTopicIsRefusedWithFailedPrecondition) {
  Subscriber subscriber(*client_, "orders", [](const v1::SubscribeResponse&) {
    ADD_FAILURE() << "no message expected";
  });
  EXPECT_THAT(subscriber.WaitUntilLive(absl::Seconds(10)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("durable")));
  EXPECT_THAT(subscriber.Wait(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SubscriberTest, TheHandlerCanStopItsSubscriber) {
  std::atomic<int> handled{0};
  Subscriber subscriber(*client_, "news.eu", [&](const v1::SubscribeResponse&) {
    if (++handled == 3) subscriber.Stop();
  });
  ASSERT_THAT(subscriber.WaitUntilLive(absl::Seconds(10)), IsOk());
  Publish("news.eu", {"1", "2", "3", "4", "5"});
  EXPECT_THAT(subscriber.Wait(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(handled.load(), 3);
}

}  // namespace
}  // namespace switchboard::client
