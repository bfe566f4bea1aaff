#include "server/broker/redis/partitions.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/redis/reply_builders.h"

namespace switchboard::broker::redis {
namespace {

using replies::Array;
using replies::Error;
using replies::Integer;
using replies::String;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(PartitionsTest, AKeyAlwaysMapsToTheSamePartitionAndKeysSpreadOverAll) {
  EXPECT_EQ(PartitionOf("order-42", 16), PartitionOf("order-42", 16));
  // FNV-1a of the empty key is its offset basis.
  EXPECT_EQ(PartitionOf("", 16), 2166136261u % 16);
  std::set<uint32_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const uint32_t partition = PartitionOf(absl::StrCat("k", i), 16);
    EXPECT_LT(partition, 16u);
    seen.insert(partition);
  }
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(PartitionOf("anything", 1), 0u);
}

TEST(PartitionsTest, PartitionStreamsAndIdsSayWhichPartition) {
  EXPECT_EQ(PartitionStream("jobs", 3), "jobs#3");
  EXPECT_EQ(PartitionedId("1700000000000-0", 12), "1700000000000-0#12");

  const SplitId keyed = SplitMessageId("1700000000000-0#12");
  EXPECT_EQ(keyed.entry_id, "1700000000000-0");
  EXPECT_EQ(keyed.partition, 12u);

  const SplitId plain = SplitMessageId("1700000000000-7");
  EXPECT_EQ(plain.entry_id, "1700000000000-7");
  EXPECT_FALSE(plain.partition.has_value());

  // Not a partition number: the whole id is the entry id.
  const SplitId odd = SplitMessageId("1-0#x");
  EXPECT_EQ(odd.entry_id, "1-0#x");
  EXPECT_FALSE(odd.partition.has_value());
}

TEST(PartitionsTest, OwnerAndMemberKeysCannotCollideAcrossTopicsAndGroups) {
  EXPECT_EQ(OwnerKey("jobs", "workers", 5), "switchboard:owner:jobs#5/workers");
  EXPECT_EQ(MembersKey("jobs", "workers"), "switchboard:members:jobs/workers");
  // Names have no '#' or '/': "a:b"/"c" and "a"/"b:c" stay apart.
  EXPECT_NE(OwnerKey("a:b", "c", 0), OwnerKey("a", "b:c", 0));
  EXPECT_NE(MembersKey("a:b", "c"), MembersKey("a", "b:c"));
}

TEST(PartitionsTest, TakeTriesThePartitionsInOrderUpToACount) {
  const std::string wire =
      TakeCommand("jobs", "g", {3, 0, 1}, "host:1:ab", absl::Seconds(5), 2).wire();
  // EVAL <script> 3 <key of 3> <key of 0> <key of 1> <consumer> <ttl ms> <count>.
  const std::string tail = Command::Of({"3", OwnerKey("jobs", "g", 3), OwnerKey("jobs", "g", 0),
                                        OwnerKey("jobs", "g", 1), "host:1:ab", "5000", "2"})
                               .wire();
  // Drop the array header of `tail` to compare the arguments only.
  EXPECT_TRUE(absl::EndsWith(wire, tail.substr(tail.find("\r\n") + 2))) << wire;
  EXPECT_TRUE(absl::StartsWith(wire, "*9\r\n$4\r\nEVAL\r\n")) << wire;
  EXPECT_TRUE(absl::StrContains(wire, "'NX', 'PX'"));
}

TEST(PartitionsTest, TakenPartitionsReadsPositionsInTheTriedOrder) {
  const std::vector<uint32_t> tried = {3, 0, 1};
  EXPECT_THAT(TakenPartitions(Array({Integer(1), Integer(3)}), tried), ElementsAre(3u, 1u));
  EXPECT_THAT(TakenPartitions(Array({}), tried), IsEmpty());
  // Out of range or the wrong shape: ignored.
  EXPECT_THAT(TakenPartitions(Array({Integer(0), Integer(4), String("1")}), tried), IsEmpty());
  EXPECT_THAT(TakenPartitions(Error("NOSCRIPT"), tried), IsEmpty());
  EXPECT_THAT(TakenPartitions(absl::UnavailableError("down"), tried), IsEmpty());
}

TEST(PartitionsTest, RenewAndReleaseCompareTheOwnerFirst) {
  const std::string renew = RenewCommand("jobs", "g", 2, "me", absl::Milliseconds(1500)).wire();
  EXPECT_TRUE(absl::StrContains(renew, "redis.call('get', KEYS[1]) == ARGV[1]"));
  EXPECT_TRUE(absl::StrContains(renew, "pexpire"));
  EXPECT_TRUE(absl::EndsWith(renew, "$2\r\nme\r\n$4\r\n1500\r\n")) << renew;
  const std::string release = ReleaseCommand("jobs", "g", 2, "me").wire();
  EXPECT_TRUE(absl::StrContains(release, "redis.call('get', KEYS[1]) == ARGV[1]"));
  EXPECT_TRUE(absl::StrContains(release, "'del'"));

  EXPECT_TRUE(Renewed(Integer(1)));
  EXPECT_FALSE(Renewed(Integer(0)));
  EXPECT_FALSE(Renewed(Error("ERR")));
  EXPECT_FALSE(Renewed(absl::DeadlineExceededError("late")));
}

TEST(PartitionsTest, MembershipIsASortedSetScoredByWhenItLapses) {
  EXPECT_EQ(JoinCommand("jobs", "g", "me", absl::FromUnixMillis(1500)).wire(),
            Command::Of({"ZADD", "switchboard:members:jobs/g", "1500", "me"}).wire());
  EXPECT_EQ(ExpireMembersCommand("jobs", "g", absl::FromUnixMillis(1000)).wire(),
            Command::Of({"ZREMRANGEBYSCORE", "switchboard:members:jobs/g", "-inf", "1000"}).wire());
  EXPECT_EQ(CountMembersCommand("jobs", "g").wire(),
            Command::Of({"ZCARD", "switchboard:members:jobs/g"}).wire());
  EXPECT_EQ(LeaveCommand("jobs", "g", "me").wire(),
            Command::Of({"ZREM", "switchboard:members:jobs/g", "me"}).wire());
}

TEST(PartitionsTest, TheFairShareRoundsUpSoEveryPartitionHasAnOwner) {
  EXPECT_EQ(FairShare(16, 0), 16u);
  EXPECT_EQ(FairShare(16, 1), 16u);
  EXPECT_EQ(FairShare(16, 2), 8u);
  EXPECT_EQ(FairShare(16, 3), 6u);  // 6 + 6 + 4.
  EXPECT_EQ(FairShare(4, 6), 1u);
}

}  // namespace
}  // namespace switchboard::broker::redis
