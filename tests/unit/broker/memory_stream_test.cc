#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/broker/memory/stream.h"

namespace switchboard::broker::memory {
namespace {

std::shared_ptr<const Message> Numbered(int n) {
  auto message = std::make_shared<Message>();
  message->id = std::to_string(n);
  return message;
}

std::string NextId(ConsumerGroup& group, uint32_t expected_count) {
  std::optional<ConsumerGroup::Claim> claim = group.ClaimNext();
  if (!claim) return "<none>";
  EXPECT_EQ(claim->delivery_count, expected_count) << claim->message->id;
  return claim->message->id;
}

TEST(MemoryStreamTest, TrimsTheOldestEntriesBeyondMaxLen) {
  Stream stream(3);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i));
  EXPECT_EQ(stream.begin(), 2u);
  EXPECT_EQ(stream.end(), 5u);
  EXPECT_EQ(stream.at(2)->id, "2");
  EXPECT_EQ(stream.at(4)->id, "4");
}

TEST(MemoryStreamTest, GroupReadsFromTheStartOfRetainedHistory) {
  Stream stream(3);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i));
  ConsumerGroup group(stream);
  EXPECT_EQ(NextId(group, 1), "2");
  EXPECT_EQ(NextId(group, 1), "3");
  EXPECT_EQ(NextId(group, 1), "4");
  EXPECT_EQ(NextId(group, 0), "<none>");
  stream.Append(Numbered(5));
  EXPECT_EQ(NextId(group, 1), "5");
}

TEST(MemoryStreamTest, GroupSkipsEntriesTrimmedBeforeItReadThem) {
  Stream stream(2);
  stream.Append(Numbered(0));
  ConsumerGroup group(stream);
  for (int i = 1; i < 6; ++i) stream.Append(Numbered(i));
  EXPECT_EQ(NextId(group, 1), "4");
  EXPECT_EQ(NextId(group, 1), "5");
}

TEST(MemoryStreamTest, RequeuedMessagesComeFirstAndCountDeliveries) {
  Stream stream(10);
  for (int i = 0; i < 3; ++i) stream.Append(Numbered(i));
  ConsumerGroup group(stream);
  EXPECT_EQ(NextId(group, 1), "0");
  EXPECT_EQ(NextId(group, 1), "1");
  group.Requeue("1");
  group.Requeue("0");
  EXPECT_EQ(NextId(group, 2), "1");
  EXPECT_EQ(NextId(group, 2), "0");
  group.Requeue("0");
  EXPECT_EQ(NextId(group, 3), "0");
  EXPECT_EQ(NextId(group, 1), "2");
}

TEST(MemoryStreamTest, PendingMessageSurvivesTrimming) {
  Stream stream(1);
  stream.Append(Numbered(0));
  ConsumerGroup group(stream);
  EXPECT_EQ(NextId(group, 1), "0");
  stream.Append(Numbered(1));  // Trims 0 from the stream.
  group.Requeue("0");
  EXPECT_EQ(NextId(group, 2), "0");
  EXPECT_EQ(group.Remove("0")->id, "0");
  EXPECT_EQ(NextId(group, 1), "1");
}

}  // namespace
}  // namespace switchboard::broker::memory
