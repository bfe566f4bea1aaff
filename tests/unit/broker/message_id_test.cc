#include "server/broker/message_id.h"

#include "gtest/gtest.h"

namespace switchboard::broker {
namespace {

const absl::Time kStart = absl::FromUnixMillis(1700000000000);

TEST(MessageIdGeneratorTest, CountsUpWithinAMillisecond) {
  MessageIdGenerator ids;
  EXPECT_EQ(ids.Next(kStart), "1700000000000-0");
  EXPECT_EQ(ids.Next(kStart + absl::Microseconds(999)), "1700000000000-1");
  EXPECT_EQ(ids.Next(kStart), "1700000000000-2");
}

TEST(MessageIdGeneratorTest, RestartsTheSequenceInALaterMillisecond) {
  MessageIdGenerator ids;
  ids.Next(kStart);
  ids.Next(kStart);
  EXPECT_EQ(ids.Next(kStart + absl::Milliseconds(5)), "1700000000005-0");
}

TEST(MessageIdGeneratorTest, NeverGoesBackWhenTheClockDoes) {
  MessageIdGenerator ids;
  EXPECT_EQ(ids.Next(kStart), "1700000000000-0");
  EXPECT_EQ(ids.Next(kStart - absl::Seconds(1)), "1700000000000-1");
}

TEST(MessageIdGeneratorTest, CountsEachMillisecondFromItsSequenceBase) {
  MessageIdGenerator ids(7000000);
  EXPECT_EQ(ids.Next(kStart), "1700000000000-7000000");
  EXPECT_EQ(ids.Next(kStart), "1700000000000-7000001");
  EXPECT_EQ(ids.Next(kStart + absl::Milliseconds(1)), "1700000000001-7000000");
}

}  // namespace
}  // namespace switchboard::broker
