#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "server/subscriptions/subscription_hub.h"

namespace switchboard::subscriptions {
namespace {

TEST(UnsubscribeMethodForTest, FollowsTheProvidersConventions) {
  EXPECT_EQ(UnsubscribeMethodFor("slotSubscribe"), "slotUnsubscribe");
  EXPECT_EQ(UnsubscribeMethodFor("accountSubscribe"), "accountUnsubscribe");
  EXPECT_EQ(UnsubscribeMethodFor("eth_subscribe"), "eth_unsubscribe");
  EXPECT_EQ(UnsubscribeMethodFor("parity_subscribe"), "parity_unsubscribe");
}

TEST(UnsubscribeMethodForTest, IsNulloptForAnythingElse) {
  EXPECT_EQ(UnsubscribeMethodFor("getSlot"), std::nullopt);
  EXPECT_EQ(UnsubscribeMethodFor("Subscribe"), std::nullopt);
  EXPECT_EQ(UnsubscribeMethodFor("_subscribe"), std::nullopt);
  EXPECT_EQ(UnsubscribeMethodFor("slotsubscribe"), std::nullopt);
  EXPECT_EQ(UnsubscribeMethodFor(""), std::nullopt);
}

}  // namespace
}  // namespace switchboard::subscriptions
