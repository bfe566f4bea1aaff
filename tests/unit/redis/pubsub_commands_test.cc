#include "server/broker/redis/pubsub_commands.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "tests/unit/redis/reply_builders.h"

namespace switchboard::broker::redis {
namespace {

using replies::Array;
using replies::Integer;
using replies::String;

TEST(PubSubCommandsTest, PublishSendsTheValueOnTheChannel) {
  EXPECT_EQ(PublishCommand("news", "v\r\n").wire(),
            Command::Of({"PUBLISH", "news", "v\r\n"}).wire());
}

TEST(PubSubCommandsTest, PrefixPatternsSubscribeByPattern) {
  EXPECT_EQ(SubscribeCommand("news").wire(), Command::Of({"SUBSCRIBE", "news"}).wire());
  EXPECT_EQ(SubscribeCommand("news.*").wire(), Command::Of({"PSUBSCRIBE", "news.*"}).wire());
  EXPECT_EQ(UnsubscribeCommand("news").wire(), Command::Of({"UNSUBSCRIBE", "news"}).wire());
  EXPECT_EQ(UnsubscribeCommand("news.*").wire(), Command::Of({"PUNSUBSCRIBE", "news.*"}).wire());
}

TEST(PubSubCommandsTest, MessagesNameTheirSubscriptionAndTopic) {
  std::optional<Push> message =
      ReadPush(Array({String("message"), String("news"), String("value")}));
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->kind, Push::Kind::kMessage);
  EXPECT_EQ(message->pattern, "news");
  EXPECT_EQ(message->topic, "news");
  EXPECT_EQ(message->value, "value");

  std::optional<Push> pmessage =
      ReadPush(Array({String("pmessage"), String("news.*"), String("news.sport"), String("goal")}));
  ASSERT_TRUE(pmessage.has_value());
  EXPECT_EQ(pmessage->kind, Push::Kind::kMessage);
  EXPECT_EQ(pmessage->pattern, "news.*");
  EXPECT_EQ(pmessage->topic, "news.sport");
  EXPECT_EQ(pmessage->value, "goal");
}

TEST(PubSubCommandsTest, ConfirmationsNameTheirSubscription) {
  for (const char* kind : {"subscribe", "psubscribe"}) {
    std::optional<Push> push = ReadPush(Array({String(kind), String("news.*"), Integer(1)}));
    ASSERT_TRUE(push.has_value()) << kind;
    EXPECT_EQ(push->kind, Push::Kind::kSubscribed) << kind;
    EXPECT_EQ(push->pattern, "news.*") << kind;
  }
  for (const char* kind : {"unsubscribe", "punsubscribe"}) {
    std::optional<Push> push = ReadPush(Array({String(kind), String("news"), Integer(0)}));
    ASSERT_TRUE(push.has_value()) << kind;
    EXPECT_EQ(push->kind, Push::Kind::kUnsubscribed) << kind;
    EXPECT_EQ(push->pattern, "news") << kind;
  }
}

TEST(PubSubCommandsTest, OtherRepliesAreNotPushes) {
  EXPECT_FALSE(ReadPush(String("message")).has_value());
  EXPECT_FALSE(ReadPush(Array({String("message"), String("news")})).has_value());
  EXPECT_FALSE(ReadPush(Array({String("pmessage"), String("n.*"), String("n.a")})).has_value());
  EXPECT_FALSE(ReadPush(Array({String("pong"), String(""), String("")})).has_value());
}

}  // namespace
}  // namespace switchboard::broker::redis
