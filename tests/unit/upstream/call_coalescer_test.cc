#include "server/upstream/call_coalescer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::upstream {
namespace {

TEST(CallCoalescerTest, TheFirstCallLeadsAndEveryWaiterGetsItsResult) {
  CallCoalescer<std::string> coalescer;
  std::vector<std::string> seen;
  int shared = 0;
  const auto record = [&](const std::string& result, bool joined) {
    seen.push_back(result);
    shared += joined ? 1 : 0;
  };
  EXPECT_TRUE(coalescer.Join("getSlot", record));
  for (int i = 0; i < 99; ++i) EXPECT_FALSE(coalescer.Join("getSlot", record));
  EXPECT_TRUE(coalescer.Join("getBalance", record)) << "another key leads on its own";
  EXPECT_EQ(coalescer.in_flight(), 2u);
  EXPECT_EQ(coalescer.waiters("getSlot"), 100u);

  EXPECT_EQ(coalescer.Complete("getSlot", "42"), 100u);
  EXPECT_EQ(seen, std::vector<std::string>(100, "42"));
  EXPECT_EQ(shared, 99) << "every waiter but the leader shared its request";
  EXPECT_EQ(coalescer.waiters("getSlot"), 0u);
  EXPECT_EQ(coalescer.in_flight(), 1u);
  EXPECT_TRUE(coalescer.Join("getSlot", record)) << "a call after completion leads again";
}

TEST(CallCoalescerTest, CompletingAnUnknownKeyDoesNothing) {
  CallCoalescer<int> coalescer;
  EXPECT_EQ(coalescer.Complete("nothing", 1), 0u);
}

}  // namespace
}  // namespace switchboard::upstream
