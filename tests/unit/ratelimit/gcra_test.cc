#include "server/ratelimit/gcra.h"

#include "gtest/gtest.h"

namespace switchboard::ratelimit {
namespace {

const absl::Time kStart = absl::UnixEpoch() + absl::Hours(1);

absl::Time At(absl::Duration offset) { return kStart + offset; }

TEST(GcraTest, UnitCallsGoAtTheRateOnceTheBurstIsSpent) {
  Gcra gcra(/*rate=*/10, /*burst=*/3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(gcra.ConformingTime(1, kStart), kStart) << i;
    gcra.Consume(1, kStart);
  }
  for (int i = 1; i <= 5; ++i) {
    const absl::Time expected = At(absl::Milliseconds(100 * i));
    EXPECT_EQ(gcra.ConformingTime(1, kStart), expected) << i;
    gcra.Consume(1, expected);
  }
}

TEST(GcraTest, CostsCountInUnits) {
  Gcra gcra(/*rate=*/10, /*burst=*/10);
  EXPECT_EQ(gcra.ConformingTime(10, kStart), kStart);
  gcra.Consume(10, kStart);
  // The bucket drains 1 unit per 100 ms: room for 4 units after 400 ms.
  EXPECT_EQ(gcra.ConformingTime(4, kStart), At(absl::Milliseconds(400)));
  EXPECT_EQ(gcra.ConformingTime(1, kStart), At(absl::Milliseconds(100)));
  EXPECT_EQ(gcra.ConformingTime(10, kStart), At(absl::Seconds(1)));
}

TEST(GcraTest, ACallCostingMoreThanTheBurstNeedsAnEmptyBucketAndLeavesDebt) {
  Gcra gcra(/*rate=*/10, /*burst=*/5);
  gcra.Consume(2, kStart);
  EXPECT_EQ(gcra.ConformingTime(8, kStart), At(absl::Milliseconds(200)));
  gcra.Consume(8, At(absl::Milliseconds(200)));
  // 800 ms of debt: one unit fits once 4 units of room are back.
  EXPECT_EQ(gcra.ConformingTime(1, kStart), At(absl::Milliseconds(600)));
}

TEST(GcraTest, TryConsumeTakesOnlyWhatConforms) {
  Gcra gcra(/*rate=*/2, /*burst=*/1);
  EXPECT_EQ(gcra.TryConsume(1, kStart), absl::ZeroDuration());
  EXPECT_EQ(gcra.TryConsume(1, kStart), absl::Milliseconds(500));
  EXPECT_EQ(gcra.TryConsume(1, At(absl::Milliseconds(499))), absl::Milliseconds(1));
  EXPECT_EQ(gcra.TryConsume(1, At(absl::Milliseconds(500))), absl::ZeroDuration());
  EXPECT_EQ(gcra.TryConsume(1, At(absl::Milliseconds(500))), absl::Milliseconds(500));
}

TEST(GcraTest, ConformingTimeAfterMatchesAdmittingTheCallsAheadOneByOne) {
  for (const uint64_t cost : {1, 3, 7}) {
    Gcra estimate(/*rate=*/10, /*burst=*/4);
    estimate.Consume(2, kStart);
    Gcra replay = estimate;
    const uint64_t ahead[] = {1, 2, 5, 1};  // 9 units, one above the burst.
    for (uint64_t call : ahead) replay.Consume(call, replay.ConformingTime(call, kStart));
    EXPECT_EQ(estimate.ConformingTimeAfter(9, cost, kStart), replay.ConformingTime(cost, kStart))
        << cost;
  }
  // 2 + 9 units at 10/s: the bucket holds 1.1 s; a unit fits once 3 units of
  // room are back.
  Gcra gcra(/*rate=*/10, /*burst=*/4);
  gcra.Consume(2, kStart);
  EXPECT_EQ(gcra.ConformingTimeAfter(9, 1, kStart), At(absl::Milliseconds(800)));
}

TEST(GcraTest, NothingConformsDuringAPause) {
  Gcra gcra(/*rate=*/10, /*burst=*/2);
  gcra.Pause(At(absl::Seconds(1)));
  gcra.Pause(At(absl::Milliseconds(500)));  // Does not shorten it.
  EXPECT_EQ(gcra.paused_until(), At(absl::Seconds(1)));
  EXPECT_EQ(gcra.ConformingTime(1, kStart), At(absl::Seconds(1)));
  EXPECT_EQ(gcra.TryConsume(1, At(absl::Milliseconds(999))), absl::Milliseconds(1));
  // The calls ahead start when the pause ends: 3 units go by 1.3 s, with a
  // burst of 2 a fourth unit fits at 1.2 s.
  EXPECT_EQ(gcra.ConformingTimeAfter(3, 1, kStart), At(absl::Milliseconds(1200)));
  // The bucket kept its content: a whole burst goes when the pause ends.
  gcra.Consume(1, At(absl::Seconds(1)));
  EXPECT_EQ(gcra.ConformingTime(1, kStart), At(absl::Seconds(1)));
  gcra.Consume(1, At(absl::Seconds(1)));
  EXPECT_EQ(gcra.ConformingTime(1, kStart), At(absl::Milliseconds(1100)));
}

TEST(GcraTest, SetRateKeepsWhatTheBucketHolds) {
  Gcra gcra(/*rate=*/10, /*burst=*/4);
  gcra.Consume(4, kStart);  // Full: drains by 400 ms at 10/s.
  // At 200 ms 2 units remain; at 20/s they drain by 300 ms.
  gcra.SetRate(20, At(absl::Milliseconds(200)));
  EXPECT_EQ(gcra.rate(), 20);
  EXPECT_EQ(gcra.ConformingTime(1, At(absl::Milliseconds(200))), At(absl::Milliseconds(200)));
  EXPECT_EQ(gcra.ConformingTime(3, At(absl::Milliseconds(200))), At(absl::Milliseconds(250)));
  EXPECT_EQ(gcra.ConformingTime(4, At(absl::Milliseconds(200))), At(absl::Milliseconds(300)));
  // Halving the rate doubles the time the 2 units take.
  gcra.SetRate(5, At(absl::Milliseconds(200)));
  EXPECT_EQ(gcra.ConformingTime(4, At(absl::Milliseconds(200))), At(absl::Milliseconds(600)));
}

}  // namespace
}  // namespace switchboard::ratelimit
