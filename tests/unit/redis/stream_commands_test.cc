#include "server/broker/redis/stream_commands.h"

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/unit/redis/reply_builders.h"

namespace switchboard::broker::redis {
namespace {

using replies::Array;
using replies::Entry;
using replies::Error;
using replies::Integer;
using replies::String;

// The wire form of the command of exactly `argv`.
std::string Wire(std::initializer_list<absl::string_view> argv) { return Command::Of(argv).wire(); }

TEST(StreamCommandsTest, CreateGroupReadsFromTheStartAndMakesTheStream) {
  EXPECT_EQ(CreateGroupCommand("jobs", "workers").wire(),
            Wire({"XGROUP", "CREATE", "jobs", "workers", "0", "MKSTREAM"}));
}

TEST(StreamCommandsTest, ReadGroupAsksForNewEntriesOfEveryTopic) {
  EXPECT_EQ(ReadGroupCommand("workers", "host:1:ab", {"jobs", "mail"}, 7, std::nullopt).wire(),
            Wire({"XREADGROUP", "GROUP", "workers", "host:1:ab", "COUNT", "7", "STREAMS", "jobs",
                  "mail", ">", ">"}));
  EXPECT_EQ(ReadGroupCommand("workers", "c", {"jobs"}, 3, absl::Milliseconds(1500)).wire(),
            Wire({"XREADGROUP", "GROUP", "workers", "c", "COUNT", "3", "BLOCK", "1500", "STREAMS",
                  "jobs", ">"}));
}

TEST(StreamCommandsTest, ClaimsNameTheConsumerAndEveryId) {
  const std::vector<std::string> ids = {"1-1", "2-0"};
  EXPECT_EQ(ClaimCommand("jobs", "workers", "c", ids).wire(),
            Wire({"XCLAIM", "jobs", "workers", "c", "0", "1-1", "2-0"}));
  EXPECT_EQ(RefreshIdleCommand("jobs", "workers", "c", ids).wire(),
            Wire({"XCLAIM", "jobs", "workers", "c", "0", "1-1", "2-0", "JUSTID"}));
  EXPECT_EQ(ReleaseIdleCommand("jobs", "workers", "c", ids, absl::Seconds(30)).wire(),
            Wire({"XCLAIM", "jobs", "workers", "c", "0", "1-1", "2-0", "IDLE", "30000", "JUSTID"}));
}

TEST(StreamCommandsTest, AckAutoClaimPendingAndInfo) {
  EXPECT_EQ(AckCommand("jobs", "workers", {"1-1", "3-2"}).wire(),
            Wire({"XACK", "jobs", "workers", "1-1", "3-2"}));
  EXPECT_EQ(AutoClaimCommand("jobs", "workers", "c", absl::Milliseconds(2500), "5-1", 9).wire(),
            Wire({"XAUTOCLAIM", "jobs", "workers", "c", "2500", "5-1", "COUNT", "9"}));
  EXPECT_EQ(PendingEntryCommand("jobs", "workers", "5-1").wire(),
            Wire({"XPENDING", "jobs", "workers", "5-1", "5-1", "1"}));
  EXPECT_EQ(GroupsInfoCommand("jobs").wire(), Wire({"XINFO", "GROUPS", "jobs"}));
}

TEST(StreamCommandsTest, NackDelaysAreScoredByTheirEndPerTopicAndNamedByGroupAndId) {
  const absl::Time end = absl::FromUnixMillis(1700000000123);
  EXPECT_EQ(RecordDelayCommand("jobs", "workers", "5-1", end).wire(),
            Wire({"ZADD", "switchboard:nack-delays:jobs", "1700000000123", "workers 5-1"}));
  // A fraction of a millisecond rounds up: the delay is never cut short.
  EXPECT_EQ(RecordDelayCommand("jobs", "workers", "5-1", end + absl::Microseconds(1)).wire(),
            Wire({"ZADD", "switchboard:nack-delays:jobs", "1700000000124", "workers 5-1"}));
  EXPECT_EQ(DelayEndCommand("jobs", "workers", "5-1").wire(),
            Wire({"ZSCORE", "switchboard:nack-delays:jobs", "workers 5-1"}));
  EXPECT_EQ(ForgetEndedDelaysCommand("jobs", end).wire(),
            Wire({"ZREMRANGEBYSCORE", "switchboard:nack-delays:jobs", "-inf", "1700000000123"}));
}

TEST(StreamCommandsTest, DelayEndIsTheScoreOrNothing) {
  EXPECT_EQ(DelayEnd(String("1700000000123")), absl::FromUnixMillis(1700000000123));
  EXPECT_EQ(DelayEnd(Reply()), std::nullopt);  // Nil: no delay recorded.
  EXPECT_EQ(DelayEnd(String("soon")), std::nullopt);
  EXPECT_EQ(DelayEnd(absl::StatusOr<Reply>(absl::UnavailableError("down"))), std::nullopt);
}

TEST(StreamCommandsTest, NoGroupIsARedisErrorOnly) {
  EXPECT_TRUE(IsNoGroup(Error("NOGROUP No such key 'jobs' or consumer group 'workers'")));
  EXPECT_FALSE(IsNoGroup(Error("BUSYGROUP Consumer Group name already exists")));
  EXPECT_FALSE(IsNoGroup(String("NOGROUP")));
  EXPECT_FALSE(IsNoGroup(absl::StatusOr<Reply>(absl::UnavailableError("NOGROUP"))));
}

TEST(StreamCommandsTest, StaleIdErrorIsXaddsRefusalOfAnOldId) {
  EXPECT_TRUE(IsStaleIdError(
      Error("ERR The ID specified in XADD is equal or smaller than the target stream top item")));
  EXPECT_FALSE(IsStaleIdError(Error("ERR wrong number of arguments")));
  EXPECT_FALSE(IsStaleIdError(String("equal or smaller")));
}

TEST(StreamCommandsTest, ReadGroupEntriesAreGroupedByStream) {
  const Reply reply = Array({
      Array({String("jobs"),
             Array({Entry("1-1", "a"), Array({String("1-2"), Reply()}), Entry("1-3", "c")})}),
      String("malformed"),
      Array({String("mail"), Array({Entry("7-0", "m")})}),
  });
  const std::vector<StreamEntries> streams = ReadGroupEntries(reply);
  ASSERT_EQ(streams.size(), 2u);
  EXPECT_EQ(streams[0].topic, "jobs");
  ASSERT_EQ(streams[0].messages.size(), 2u);  // The deleted 1-2 is skipped.
  EXPECT_EQ(streams[0].messages[0].id, "1-1");
  EXPECT_EQ(streams[0].messages[0].topic, "jobs");
  EXPECT_EQ(streams[0].messages[0].payload, "a");
  EXPECT_EQ(streams[0].messages[1].id, "1-3");
  EXPECT_EQ(streams[1].topic, "mail");
  ASSERT_EQ(streams[1].messages.size(), 1u);
  EXPECT_EQ(streams[1].messages[0].payload, "m");
  EXPECT_TRUE(ReadGroupEntries(Reply()).empty());  // Nil: nothing new.
}

TEST(StreamCommandsTest, ClaimedIdsAreTheEntriesThatStillExist) {
  EXPECT_EQ(ClaimedIds(Array({Entry("1-1", "a"), Reply(), Entry("4-0", "b")})),
            (std::set<std::string>{"1-1", "4-0"}));
  EXPECT_TRUE(ClaimedIds(Array({})).empty());
}

TEST(StreamCommandsTest, AutoClaimedEntriesCarryTheNextCursor) {
  const Reply reply =
      Array({String("9-0"), Array({Entry("3-0", "x"), Entry("4-0", "y")}), Array({String("2-0")})});
  std::optional<AutoClaimed> claimed = AutoClaimedEntries(reply, "jobs");
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->cursor, "9-0");
  ASSERT_EQ(claimed->messages.size(), 2u);
  EXPECT_EQ(claimed->messages[0].id, "3-0");
  EXPECT_EQ(claimed->messages[0].topic, "jobs");
  EXPECT_EQ(claimed->messages[1].payload, "y");
  EXPECT_FALSE(AutoClaimedEntries(Array({String("0-0")}), "jobs").has_value());
  EXPECT_FALSE(AutoClaimedEntries(Error("NOGROUP gone"), "jobs").has_value());
}

TEST(StreamCommandsTest, PendingDeliveryCountIsTheFourthField) {
  EXPECT_EQ(PendingDeliveryCount(
                Array({Array({String("3-0"), String("host:1:ab"), Integer(61000), Integer(4)})})),
            std::optional<uint32_t>(4));
  EXPECT_EQ(PendingDeliveryCount(Array({})), std::nullopt);  // No longer pending.
  EXPECT_EQ(PendingDeliveryCount(Array({Array({String("3-0"), String("c")})})), std::nullopt);
  EXPECT_EQ(PendingDeliveryCount(absl::StatusOr<Reply>(absl::DeadlineExceededError("timeout"))),
            std::nullopt);
}

TEST(StreamCommandsTest, GroupLagIsReadFromTheNamedGroup) {
  auto group = [](std::string name, Reply lag) {
    return Array({String("name"), String(std::move(name)), String("consumers"), Integer(2),
                  String("lag"), std::move(lag)});
  };
  const Reply info =
      Array({group("audit", Integer(3)), group("workers", Integer(42)), group("unknown", Reply())});
  EXPECT_EQ(GroupLag(info, "workers"), std::optional<int64_t>(42));
  EXPECT_EQ(GroupLag(info, "audit"), std::optional<int64_t>(3));
  EXPECT_EQ(GroupLag(info, "unknown"), std::nullopt);  // Nil lag: Redis cannot tell.
  EXPECT_EQ(GroupLag(info, "missing"), std::nullopt);
}

TEST(StreamCommandsTest, DeadLetterIdIsAfterTheOriginalsMillisecond) {
  const absl::Time published = absl::FromUnixMillis(1700000000123);
  EXPECT_EQ(DeadLetterId(published, absl::FromUnixMillis(1700000005000)), "1700000005000-*");
  EXPECT_EQ(DeadLetterId(published, published), "1700000000124-*");
  EXPECT_EQ(DeadLetterId(published, absl::FromUnixMillis(1700000000000)), "1700000000124-*");
}

}  // namespace
}  // namespace switchboard::broker::redis
