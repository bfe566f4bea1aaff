#include "server/broker/redis/message_codec.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/redis/reply_builders.h"

namespace switchboard::broker::redis {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using std::string_literals::operator""s;
using replies::Array;
using replies::String;

TEST(MessageCodecTest, EphemeralMessagesRoundTripWithEveryField) {
  Message message{"1700000000123-7",
                  "alerts",
                  "bin\0ary\xff"s,
                  {{"k", "v"}, {"empty", ""}},
                  absl::FromUnixMicros(1700000000123456)};
  absl::StatusOr<Message> decoded = DecodeEphemeral("alerts", EncodeEphemeral(message));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->id, message.id);
  EXPECT_EQ(decoded->topic, "alerts");
  EXPECT_EQ(decoded->payload, message.payload);
  EXPECT_EQ(decoded->attributes, message.attributes);
  EXPECT_EQ(decoded->publish_time, message.publish_time);
}

TEST(MessageCodecTest, ForeignOrDamagedValuesAreRejected) {
  const std::string valid =
      EncodeEphemeral(Message{"1-1", "t", "payload", {{"a", "b"}}, absl::FromUnixMillis(5)});
  EXPECT_THAT(DecodeEphemeral("t", "hello from redis-cli"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodeEphemeral("t", ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodeEphemeral("t", valid.substr(0, valid.size() - 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodeEphemeral("t", valid + "x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MessageCodecTest, StreamAppendWritesPayloadAndAttributeFields) {
  const Command command = StreamAppendCommand("jobs", 1000, "*", {"data", {{"kind", "x"}}});
  EXPECT_EQ(
      command.wire(),
      Command::Of({"XADD", "jobs", "MAXLEN", "~", "1000", "*", "p", "data", "a:kind", "x"}).wire());
}

TEST(MessageCodecTest, KeyedEntriesCarryTheirKeyBothWays) {
  OutgoingMessage message{"hi", {}, "acct-1"};
  EXPECT_EQ(
      StreamAppendCommand("jobs#3", 10, "*", message).wire(),
      Command::Of({"XADD", "jobs#3", "MAXLEN", "~", "10", "*", "p", "hi", "k", "acct-1"}).wire());
  std::optional<Message> read = MessageFromStreamEntry(
      Array({String("1-0"), Array({String("p"), String("hi"), String("k"), String("acct-1")})}),
      "jobs");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->ordering_key, "acct-1");
}

TEST(MessageCodecTest, ARunOfDedupAppendsChecksEachKeyAndAppendsInOneScript) {
  OutgoingMessage keyed{"hi", {{"x", "1"}}, "acct-1", "d-7"};
  OutgoingMessage plain{"yo", {}, "", "d-8"};
  const std::vector<DedupAppend> appends = {{"jobs#3", "#3", &keyed}, {"jobs", "", &plain}};
  const std::string wire = DedupAppendCommand("jobs", 10, absl::Minutes(2), appends).wire();
  EXPECT_EQ(DedupKey("jobs", "d-7"), "switchboard:dedup:jobs/d-7");
  // EVAL <script> 4 <stream> <dedup key> <stream> <dedup key> <window ms>
  // <max_len> then per message <id suffix> <field count> <fields...>.
  const std::string tail = Command::Of({"4", "jobs#3", "switchboard:dedup:jobs/d-7", "jobs",
                                        "switchboard:dedup:jobs/d-8", "120000", "10", "#3", "6",
                                        "p", "hi", "k", "acct-1", "a:x", "1", "", "2", "p", "yo"})
                               .wire();
  EXPECT_TRUE(absl::EndsWith(wire, tail.substr(tail.find("\r\n") + 2))) << wire;
  EXPECT_TRUE(absl::StrContains(wire, "redis.call('get', KEYS[i + 1])"));
  EXPECT_TRUE(absl::StrContains(wire, "'PX', ARGV[1]"));
}

TEST(MessageCodecTest, StreamEntriesBecomeMessagesTimedByTheirId) {
  const Reply entry =
      Array({String("1700000000123-4"), Array({String("p"), String("data"), String("a:kind"),
                                               String("x"), String("other"), String("ignored")})});
  std::optional<Message> message = MessageFromStreamEntry(entry, "jobs");
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->id, "1700000000123-4");
  EXPECT_EQ(message->topic, "jobs");
  EXPECT_EQ(message->payload, "data");
  EXPECT_EQ(message->attributes, (Attributes{{"kind", "x"}}));
  EXPECT_EQ(message->publish_time, absl::FromUnixMillis(1700000000123));
}

TEST(MessageCodecTest, DeletedOrMalformedEntriesAreSkipped) {
  EXPECT_FALSE(MessageFromStreamEntry(Array({String("1-1"), Reply()}), "jobs").has_value());
  EXPECT_FALSE(MessageFromStreamEntry(Array({String("nonsense"), Array({})}), "jobs").has_value());
  EXPECT_FALSE(MessageFromStreamEntry(String("1-1"), "jobs").has_value());
  EXPECT_EQ(StreamIdTime("42-0"), absl::FromUnixMillis(42));
  EXPECT_FALSE(StreamIdTime("42").has_value());
}

}  // namespace
}  // namespace switchboard::broker::redis
