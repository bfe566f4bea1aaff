#include "server/flow/subscriber_buffer.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace switchboard::flow {
namespace {

// The buffer holds any item; a numbered one shows the order.
struct Message {
  std::string id;
};

std::shared_ptr<const Message> Numbered(int n) {
  auto message = std::make_shared<Message>();
  message->id = std::to_string(n);
  return message;
}

// Fills a buffer of capacity 2: message 0 is handed over (outstanding), 1 and
// 2 wait, and 3..9 overflow.
SubscriberBuffer<Message> Overflowed(OverflowPolicy policy, uint64_t* dropped, bool* disconnected) {
  SubscriberBuffer<Message> buffer(2, policy);
  *dropped = 0;
  *disconnected = false;
  for (int i = 0; i < 10; ++i) {
    SubscriberBuffer<Message>::PushResult pushed = buffer.Push(Numbered(i));
    EXPECT_EQ(pushed.handoff.has_value(), i == 0) << i;
    *dropped += pushed.dropped;
    *disconnected = *disconnected || pushed.disconnect;
  }
  return buffer;
}

TEST(SubscriberBufferTest, HandsOverAtOnceWhenNothingIsOutstanding) {
  SubscriberBuffer<Message> buffer(2, OverflowPolicy::kDropOldest);
  SubscriberBuffer<Message>::PushResult pushed = buffer.Push(Numbered(0));
  ASSERT_TRUE(pushed.handoff.has_value());
  EXPECT_EQ(pushed.handoff->message->id, "0");
  EXPECT_EQ(pushed.handoff->dropped_since_last, 0u);
  EXPECT_EQ(pushed.dropped, 0u);
  EXPECT_EQ(buffer.size(), 0u);
}

TEST(SubscriberBufferTest, HoldsOneOutstandingAndQueuesTheRestUntilReady) {
  SubscriberBuffer<Message> buffer(5, OverflowPolicy::kDropOldest);
  ASSERT_TRUE(buffer.Push(Numbered(0)).handoff.has_value());
  EXPECT_FALSE(buffer.Push(Numbered(1)).handoff.has_value());
  EXPECT_FALSE(buffer.Push(Numbered(2)).handoff.has_value());
  EXPECT_EQ(buffer.size(), 2u);

  std::optional<SubscriberBuffer<Message>::Handoff> next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "1");
  next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "2");
  EXPECT_FALSE(buffer.Ready().has_value());
  // Nothing outstanding now: the next message goes straight through.
  EXPECT_TRUE(buffer.Push(Numbered(3)).handoff.has_value());
}

TEST(SubscriberBufferTest, SpuriousReadyIsHarmless) {
  SubscriberBuffer<Message> buffer(1, OverflowPolicy::kDropNewest);
  EXPECT_FALSE(buffer.Ready().has_value());
  EXPECT_TRUE(buffer.Push(Numbered(0)).handoff.has_value());
  EXPECT_FALSE(buffer.Push(Numbered(1)).handoff.has_value());
}

TEST(SubscriberBufferTest, DropOldestKeepsTheNewestAndCountsDrops) {
  uint64_t dropped;
  bool disconnected;
  SubscriberBuffer<Message> buffer =
      Overflowed(OverflowPolicy::kDropOldest, &dropped, &disconnected);
  EXPECT_EQ(dropped, 7u);
  EXPECT_FALSE(disconnected);

  std::optional<SubscriberBuffer<Message>::Handoff> next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "8");
  EXPECT_EQ(next->dropped_since_last, 7u);
  next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "9");
  EXPECT_EQ(next->dropped_since_last, 0u);
  EXPECT_FALSE(buffer.Ready().has_value());
}

TEST(SubscriberBufferTest, DropNewestKeepsTheOldestAndCountsDrops) {
  uint64_t dropped;
  bool disconnected;
  SubscriberBuffer<Message> buffer =
      Overflowed(OverflowPolicy::kDropNewest, &dropped, &disconnected);
  EXPECT_EQ(dropped, 7u);
  EXPECT_FALSE(disconnected);

  std::optional<SubscriberBuffer<Message>::Handoff> next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "1");
  EXPECT_EQ(next->dropped_since_last, 7u);
  next = buffer.Ready();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->message->id, "2");
  EXPECT_EQ(next->dropped_since_last, 0u);
  EXPECT_FALSE(buffer.Ready().has_value());
}

TEST(SubscriberBufferTest, DisconnectDiscardsEverythingBufferedOnFirstOverflow) {
  SubscriberBuffer<Message> buffer(2, OverflowPolicy::kDisconnect);
  ASSERT_TRUE(buffer.Push(Numbered(0)).handoff.has_value());
  EXPECT_FALSE(buffer.Push(Numbered(1)).disconnect);
  EXPECT_FALSE(buffer.Push(Numbered(2)).disconnect);
  SubscriberBuffer<Message>::PushResult pushed = buffer.Push(Numbered(3));
  EXPECT_TRUE(pushed.disconnect);
  EXPECT_EQ(pushed.dropped, 3u);  // Messages 1 and 2 buffered, and 3.
  EXPECT_EQ(buffer.size(), 0u);
}

TEST(SubscriberBufferTest, ZeroCapacityDropsEverythingBehindTheOutstandingMessage) {
  for (OverflowPolicy policy : {OverflowPolicy::kDropOldest, OverflowPolicy::kDropNewest}) {
    SubscriberBuffer<Message> buffer(0, policy);
    ASSERT_TRUE(buffer.Push(Numbered(0)).handoff.has_value());
    EXPECT_EQ(buffer.Push(Numbered(1)).dropped, 1u);
    EXPECT_EQ(buffer.Push(Numbered(2)).dropped, 1u);
    EXPECT_FALSE(buffer.Ready().has_value());
    SubscriberBuffer<Message>::PushResult pushed = buffer.Push(Numbered(3));
    ASSERT_TRUE(pushed.handoff.has_value());
    EXPECT_EQ(pushed.handoff->dropped_since_last, 2u);
  }
}

}  // namespace
}  // namespace switchboard::flow
