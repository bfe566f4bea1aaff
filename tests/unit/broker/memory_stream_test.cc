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
  Stream stream(3);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i));
  EXPECT_EQ(stream.begin(), 2u);
  EXPECT_EQ(stream.end(), 5u);
  EXPECT_EQ(stream.at(2)->id, "2");
  EXPECT_EQ(stream.at(4)->id, "4");
}

TEST(MemoryStreamTest, CursorReadsFromTheStartOfRetainedHistory) {
  Stream stream(3);
  for (int i = 0; i < 5; ++i) stream.Append(Numbered(i));
  StreamCursor cursor(stream);
  EXPECT_EQ(cursor.lag(), 3u);
  EXPECT_EQ(NextId(cursor), "2");
  EXPECT_EQ(NextId(cursor), "3");
  EXPECT_EQ(NextId(cursor), "4");
  EXPECT_EQ(NextId(cursor), "<none>");
  EXPECT_EQ(cursor.lag(), 0u);
  stream.Append(Numbered(5));
  EXPECT_EQ(cursor.lag(), 1u);
  EXPECT_EQ(NextId(cursor), "5");
}

TEST(MemoryStreamTest, CursorSkipsEntriesTrimmedBeforeItReadThem) {
  Stream stream(2);
  stream.Append(Numbered(0));
  StreamCursor cursor(stream);
  for (int i = 1; i < 6; ++i) stream.Append(Numbered(i));
  EXPECT_EQ(cursor.lag(), 2u);
  EXPECT_EQ(NextId(cursor), "4");
  EXPECT_EQ(NextId(cursor), "5");
}

}  // namespace
}  // namespace switchboard::broker::memory
