#include "server/upstream/coalescing_layer.h"

#include "gtest/gtest.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

class CoalescingLayerTest : public ::testing::Test {
 protected:
  UpstreamOptions options_;
  NullObserver observer_;
  FakeCallLayer next_;
  CoalescingLayer layer_{options_, observer_, next_};
  Outcomes outcomes_;
};

TEST_F(CoalescingLayerTest, IdenticalReadCallsShareOneCallBelow) {
  layer_.Start(1, CallOf("getSlot"), outcomes_.Slot(0));
  layer_.Start(2, CallOf("getSlot"), outcomes_.Slot(1));
  layer_.Start(3, CallOf("getSlot", R"([{"commitment":"finalized"}])"), outcomes_.Slot(2));
  ASSERT_EQ(next_.started.size(), 2u);
  EXPECT_EQ(observer_.coalesced, 1);
  next_.End(0, ResultOutcome("42"));
  ASSERT_EQ(outcomes_.ended[0], 1);
  ASSERT_EQ(outcomes_.ended[1], 1);
  EXPECT_FALSE(outcomes_.outcomes[0].result->coalesced);
  EXPECT_TRUE(outcomes_.outcomes[1].result->coalesced);
  EXPECT_EQ(outcomes_.outcomes[1].result->json, "42");
  EXPECT_EQ(outcomes_.ended[2], 0);

  layer_.Start(4, CallOf("getSlot"), outcomes_.Slot(3));
  EXPECT_EQ(next_.started.size(), 3u) << "a call after the answer goes down";
}

TEST_F(CoalescingLayerTest, TransactionSubmissionsAndNeverMethodsGoDownEachTime) {
  options_.never_coalesce = {"getHealth"};
  for (int i = 0; i < 2; ++i) layer_.Start(1 + i, CallOf("sendTransaction"), outcomes_.Slot(i));
  for (int i = 2; i < 4; ++i) layer_.Start(1 + i, CallOf("getHealth"), outcomes_.Slot(i));
  EXPECT_EQ(next_.started.size(), 4u);
}

TEST_F(CoalescingLayerTest, CancelReachesBelowOnlyWhileNoOtherCallSharesTheAnswer) {
  layer_.Start(1, CallOf("getSlot"), outcomes_.Slot(0));
  layer_.Start(2, CallOf("getSlot"), outcomes_.Slot(1));
  layer_.Cancel(1);
  EXPECT_TRUE(next_.cancelled.empty()) << "call 2 waits for call 1's answer";
  layer_.Start(3, CallOf("getBalance"), outcomes_.Slot(2));
  layer_.Cancel(3);
  EXPECT_EQ(next_.cancelled, std::vector<CallLayer::CallId>{3});
}

}  // namespace
}  // namespace switchboard::upstream
