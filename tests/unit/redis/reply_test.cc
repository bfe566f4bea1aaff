#include "server/broker/redis/reply.h"

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker::redis {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;

// Parses one RESP2 reply with hiredis' own reader, as the connection does.
Reply Parse(const std::string& wire) {
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, wire.data(), wire.size());
  void* parsed = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader, &parsed), REDIS_OK);
  EXPECT_NE(parsed, nullptr) << wire;
  Reply reply = parsed != nullptr ? Reply::From(*static_cast<redisReply*>(parsed)) : Reply();
  if (parsed != nullptr) freeReplyObject(parsed);
  redisReaderFree(reader);
  return reply;
}

TEST(ReplyTest, CopiesScalars) {
  const Reply status = Parse("+OK\r\n");
  EXPECT_EQ(status.type, Reply::Type::kStatus);
  EXPECT_EQ(status.str, "OK");
  const Reply integer = Parse(":-42\r\n");
  EXPECT_EQ(integer.type, Reply::Type::kInteger);
  EXPECT_EQ(integer.integer, -42);
  const Reply bulk = Parse(std::string("$4\r\na\0\r\n\r\n", 10));
  EXPECT_TRUE(bulk.is_string());
  EXPECT_EQ(bulk.str, std::string("a\0\r\n", 4));
  EXPECT_TRUE(Parse("$-1\r\n").is_nil());
}

TEST(ReplyTest, CopiesNestedArrays) {
  const Reply reply = Parse("*2\r\n*2\r\n$1\r\na\r\n:1\r\n*-1\r\n");
  ASSERT_TRUE(reply.is_array());
  ASSERT_EQ(reply.elements.size(), 2u);
  ASSERT_TRUE(reply.elements[0].is_array());
  EXPECT_EQ(reply.elements[0].elements[0].str, "a");
  EXPECT_EQ(reply.elements[0].elements[1].integer, 1);
  EXPECT_TRUE(reply.elements[1].is_nil());
  EXPECT_THAT(reply.status(), IsOk());
}

TEST(ReplyTest, ErrorRepliesMapToStatuses) {
  const Reply reply = Parse("-NOGROUP No such key 'jobs'\r\n");
  ASSERT_TRUE(reply.is_error());
  EXPECT_THAT(reply.status(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(reply.status().message(), "redis: NOGROUP No such key 'jobs'");
  EXPECT_THAT(RedisErrorStatus("OOM command not allowed"),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(RedisErrorStatus("LOADING Redis is loading the dataset in memory"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(RedisErrorStatus("WRONGPASS invalid username-password pair"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(RedisErrorStatus("ERR unknown command"), StatusIs(absl::StatusCode::kInternal));
}

TEST(ReplyTest, ErrorCodesMatchWholeWords) {
  EXPECT_TRUE(HasErrorCode("NOGROUP No such key", "NOGROUP"));
  EXPECT_TRUE(HasErrorCode("BUSYGROUP", "BUSYGROUP"));
  EXPECT_FALSE(HasErrorCode("BUSYGROUP Consumer Group name already exists", "BUSY"));
  EXPECT_FALSE(HasErrorCode("ERR NOGROUP", "NOGROUP"));
}

TEST(ReplyTest, FirstErrorIsTheEarliestTransportOrRedisFailure) {
  using Replies = std::vector<absl::StatusOr<Reply>>;
  EXPECT_THAT(FirstError(Replies{Parse(":1\r\n"), Parse("+OK\r\n")}), IsOk());
  EXPECT_THAT(FirstError(Replies{}), IsOk());
  const absl::Status first =
      FirstError(Replies{Parse(":1\r\n"), Parse("-OOM command not allowed\r\n"),
                         absl::UnavailableError("connection lost")});
  EXPECT_THAT(first, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(first.message(), "redis: OOM command not allowed");
  EXPECT_THAT(FirstError(Replies{absl::DeadlineExceededError("timeout"), Parse("-ERR x\r\n")}),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

}  // namespace
}  // namespace switchboard::broker::redis
