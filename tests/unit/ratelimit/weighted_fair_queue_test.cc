#include "server/ratelimit/weighted_fair_queue.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::ratelimit {
namespace {

using ::testing::ElementsAre;

class WeightedFairQueueTest : public ::testing::Test {
 protected:
  uint64_t Push(const std::string& client, uint32_t weight = 1, uint32_t cost = 1,
                uint32_t priority = 0) {
    queue_.Push(next_ticket_, client, weight, cost, priority);
    return next_ticket_++;
  }

  // Serves `count` calls and returns their clients in order.
  std::vector<std::string> Serve(int count) {
    std::vector<std::string> clients;
    for (int i = 0; i < count; ++i) {
      std::optional<WeightedFairQueue::Head> head = queue_.Front();
      if (!head.has_value()) break;
      clients.emplace_back(head->client_id);
      queue_.PopFront();
    }
    return clients;
  }

  WeightedFairQueue queue_;
  uint64_t next_ticket_ = 1;
};

TEST_F(WeightedFairQueueTest, EqualWeightsTakeTurns) {
  for (int i = 0; i < 3; ++i) Push("a");
  for (int i = 0; i < 3; ++i) Push("b");
  EXPECT_THAT(Serve(6), ElementsAre("a", "b", "a", "b", "a", "b"));
  EXPECT_TRUE(queue_.empty());
  EXPECT_FALSE(queue_.Front().has_value());
}

TEST_F(WeightedFairQueueTest, WeightsShareTheServedCost) {
  for (int i = 0; i < 6; ++i) Push("heavy", /*weight=*/2);
  for (int i = 0; i < 3; ++i) Push("light", /*weight=*/1);
  EXPECT_THAT(Serve(9), ElementsAre("heavy", "heavy", "light", "heavy", "heavy", "light", "heavy",
                                    "heavy", "light"));
}

TEST_F(WeightedFairQueueTest, CostsCountNotCalls) {
  for (int i = 0; i < 10; ++i) Push("expensive", 1, /*cost=*/2);
  for (int i = 0; i < 20; ++i) Push("cheap", 1, /*cost=*/1);
  std::map<std::string, int> cost;
  for (const std::string& client : Serve(15)) cost[client] += client == "expensive" ? 2 : 1;
  EXPECT_EQ(cost["expensive"], 10);
  EXPECT_EQ(cost["cheap"], 10);
}

TEST_F(WeightedFairQueueTest, HigherPriorityFirstWithinAClientThenFirstInFirstOut) {
  std::vector<uint64_t> tickets;
  for (uint32_t priority : {0, 5, 0, 5, 1}) tickets.push_back(Push("a", 1, 1, priority));
  std::vector<uint64_t> served;
  while (std::optional<WeightedFairQueue::Head> head = queue_.Front()) {
    served.push_back(head->ticket);
    queue_.PopFront();
  }
  EXPECT_THAT(served, ElementsAre(tickets[1], tickets[3], tickets[4], tickets[0], tickets[2]));
}

TEST_F(WeightedFairQueueTest, PriorityDoesNotBuyAShareFromOtherClients) {
  for (int i = 0; i < 4; ++i) Push("a", 1, 1, /*priority=*/9);
  for (int i = 0; i < 4; ++i) Push("b", 1, 1, /*priority=*/0);
  EXPECT_THAT(Serve(8), ElementsAre("a", "b", "a", "b", "a", "b", "a", "b"));
}

TEST_F(WeightedFairQueueTest, AClientThatStartsLateGetsNoCreditForIdling) {
  for (int i = 0; i < 20; ++i) Push("busy");
  EXPECT_EQ(Serve(10).size(), 10u);
  for (int i = 0; i < 5; ++i) Push("late");
  EXPECT_THAT(Serve(6), ElementsAre("busy", "late", "busy", "late", "busy", "late"));
}

TEST_F(WeightedFairQueueTest, RemoveTakesACallOutOfTurn) {
  const uint64_t first = Push("a");
  const uint64_t second = Push("a");
  Push("b");
  EXPECT_EQ(queue_.size(), 3u);
  EXPECT_TRUE(queue_.Remove(first));
  EXPECT_FALSE(queue_.Remove(first));
  EXPECT_FALSE(queue_.Remove(999));
  EXPECT_EQ(queue_.size(), 2u);
  ASSERT_TRUE(queue_.Front().has_value());
  EXPECT_EQ(queue_.Front()->ticket, second);
  EXPECT_TRUE(queue_.Remove(second));
  EXPECT_THAT(Serve(5), ElementsAre("b"));
}

TEST_F(WeightedFairQueueTest, CostAheadCountsTheClientsOwnCallsOfTheSameOrHigherPriority) {
  Push("a", 1, /*cost=*/1, /*priority=*/0);
  Push("a", 1, /*cost=*/2, /*priority=*/5);
  Push("a", 1, /*cost=*/4, /*priority=*/0);
  EXPECT_EQ(queue_.CostAhead("a", 1, 1, /*priority=*/9), 0u);
  EXPECT_EQ(queue_.CostAhead("a", 1, 1, /*priority=*/5), 2u);
  EXPECT_EQ(queue_.CostAhead("a", 1, 1, /*priority=*/1), 2u);
  EXPECT_EQ(queue_.CostAhead("a", 1, 1, /*priority=*/0), 7u);
}

TEST_F(WeightedFairQueueTest, CostAheadCountsOtherClientsUpToTheFairShare) {
  for (int i = 0; i < 10; ++i) Push("a");
  EXPECT_EQ(queue_.CostAhead("b", 1, /*cost=*/1, 0), 1u);
  EXPECT_EQ(queue_.CostAhead("b", 1, /*cost=*/3, 0), 3u);
  // Finishes at 1.5: after a's first call (at 1), before its second (at 2).
  EXPECT_EQ(queue_.CostAhead("b", /*weight=*/2, /*cost=*/3, 0), 1u);
  EXPECT_EQ(queue_.CostAhead("b", 1, /*cost=*/100, 0), 10u);  // All of a's.
  for (int i = 0; i < 10; ++i) Push("c", /*weight=*/2);
  EXPECT_EQ(queue_.CostAhead("b", 1, 1, 0), 1u + 2u);
}

// When each client's calls cost the same, the estimate is exact: it is what
// the queue then serves before the call.
TEST_F(WeightedFairQueueTest, CostAheadIsExactWhenEachClientsCallsCostTheSame) {
  struct Backlog {
    std::string client;
    uint32_t weight;
    uint32_t cost;
    int calls;
  };
  const std::vector<std::vector<Backlog>> cases = {
      {{"a", 1, 1, 10}},
      {{"a", 1, 1, 10}, {"c", 3, 1, 7}},
      {{"a", 2, 1, 5}, {"b", 1, 1, 4}, {"c", 5, 1, 30}},
      {{"b", 1, 2, 3}, {"a", 4, 3, 40}},
      {{"a", 1, 10, 6}, {"c", 2, 3, 9}, {"d", 1, 1, 25}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int served_first : {0, 3}) {
      for (uint32_t probe_cost : {1, 2, 5}) {
        WeightedFairQueue queue;
        uint64_t ticket = 1;
        for (const Backlog& backlog : cases[i]) {
          for (int n = 0; n < backlog.calls; ++n) {
            queue.Push(ticket++, backlog.client, backlog.weight, backlog.cost, 0);
          }
        }
        for (int n = 0; n < served_first; ++n) queue.PopFront();
        const uint64_t estimate = queue.CostAhead("b", 2, probe_cost, 0);
        const uint64_t probe = ticket;
        queue.Push(probe, "b", 2, probe_cost, 0);
        uint64_t served_before = 0;
        for (auto head = queue.Front(); head->ticket != probe; head = queue.Front()) {
          served_before += head->cost;
          queue.PopFront();
        }
        EXPECT_EQ(estimate, served_before)
            << "case " << i << ", served first " << served_first << ", cost " << probe_cost;
      }
    }
  }
}

}  // namespace
}  // namespace switchboard::ratelimit
