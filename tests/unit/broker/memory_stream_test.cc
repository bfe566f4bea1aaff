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

std::string NextId(StreamCursor& cursor) {
  std::shared_ptr<const Message> message = cursor.Next();
  return message == nullptr ? "<none>" : message->id;
}

TEST(MemoryStreamTest, TrimsTheOldestEntriesBeyondMaxLen) {
  Stream stream(3, 0);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i), 1);
  EXPECT_EQ(stream.begin(), 2u);
  EXPECT_EQ(stream.end(), 5u);
  EXPECT_EQ(stream.at(2)->id, "2");
  EXPECT_EQ(stream.at(4)->id, "4");
}

TEST(MemoryStreamTest, CursorReadsFromTheStartOfRetainedHistory) {
  Stream stream(3, 0);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i), 1);
  StreamCursor cursor(stream);
  EXPECT_EQ(cursor.lag(), 3u);
  EXPECT_EQ(NextId(cursor), "2");
  EXPECT_EQ(NextId(cursor), "3");
  EXPECT_EQ(NextId(cursor), "4");
  EXPECT_EQ(NextId(cursor), "<none>");
  EXPECT_EQ(cursor.lag(), 0u);
  stream.Append(Numbered(5), 1);
  EXPECT_EQ(cursor.lag(), 1u);
  EXPECT_EQ(NextId(cursor), "5");
}

TEST(MemoryStreamTest, CursorSkipsEntriesTrimmedBeforeItReadThem) {
  Stream stream(2, 0);
  stream.Append(Numbered(0), 1);
  StreamCursor cursor(stream);
  for (int i = 1; i < 6; ++i) stream.Append(Numbered(i), 1);
  EXPECT_EQ(cursor.lag(), 2u);
  EXPECT_EQ(NextId(cursor), "4");
  EXPECT_EQ(NextId(cursor), "5");
}

TEST(MemoryStreamTest, TrimsTheOldestEntriesBeyondMaxBytesAndCountsWhatItKeeps) {
  Stream stream(100, 250);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i), 100);
  // 300 bytes would be over 250: two entries stay.
  EXPECT_EQ(stream.begin(), 3u);
  EXPECT_EQ(stream.bytes(), 200u);
  // A message larger than the bound stays alone: the newest is always kept.
  stream.Append(Numbered(5), 400);
  EXPECT_EQ(stream.begin(), 5u);
  EXPECT_EQ(stream.bytes(), 400u);
}

TEST(MemoryStreamTest, BytesAfterAppendingTrimsLikeAppendWithoutChangingTheStream) {
  Stream by_count(3, 0);
  for (int i = 0; i < 3; ++i) by_count.Append(Numbered(i), 10 * (i + 1));  // 10, 20, 30.
  EXPECT_EQ(by_count.BytesAfterAppending({5}), 20u + 30u + 5u);
  EXPECT_EQ(by_count.BytesAfterAppending({5, 6, 7, 8}), 6u + 7u + 8u);
  EXPECT_EQ(by_count.bytes(), 60u);
  EXPECT_EQ(by_count.begin(), 0u);

  Stream by_bytes(100, 50);
  by_bytes.Append(Numbered(0), 30);
  EXPECT_EQ(by_bytes.BytesAfterAppending({10}), 40u);
  EXPECT_EQ(by_bytes.BytesAfterAppending({30}), 30u);
  EXPECT_EQ(by_bytes.BytesAfterAppending({}), 30u);
  EXPECT_EQ(by_bytes.BytesAfterAppending({80}), 80u);

  // The same figure Append() reaches.
  by_bytes.Append(Numbered(1), 10);
  by_bytes.Append(Numbered(2), 25);
  EXPECT_EQ(by_bytes.bytes(), 35u);
}

TEST(MemoryStreamTest, RetainedBytesCountsEveryPartOfAMessageAndAFixedOverhead) {
  Message message;
  message.id = "1-0";
  message.payload = "hello";
  message.ordering_key = "k1";
  message.attributes = {{"a", "bc"}};
  EXPECT_EQ(RetainedBytes(message), kMessageOverheadBytes + 3 + 5 + 2 + 1 + 2);
}

}  // namespace
}  // namespace switchboard::broker::memory
