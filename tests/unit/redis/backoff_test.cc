#include "server/broker/redis/backoff.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::broker::redis {
namespace {

using ::testing::ElementsAre;

TEST(BackoffTest, CeilingDoublesPerAttemptUpToTheMaximum) {
  Backoff backoff(absl::Milliseconds(100), absl::Seconds(1), /*seed=*/7);
  std::vector<absl::Duration> ceilings;
  for (int i = 0; i < 6; ++i) {
    ceilings.push_back(backoff.ceiling());
    const absl::Duration delay = backoff.Next();
    EXPECT_GE(delay, absl::ZeroDuration());
    EXPECT_LE(delay, ceilings.back());
  }
  EXPECT_THAT(ceilings,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(800), absl::Seconds(1), absl::Seconds(1)));
}

TEST(BackoffTest, ResetStartsOverFromTheInitialCeiling) {
  Backoff backoff(absl::Milliseconds(50), absl::Seconds(2), /*seed=*/7);
  for (int i = 0; i < 5; ++i) backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(1600));
  backoff.Reset();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(50));
  EXPECT_LE(backoff.Next(), absl::Milliseconds(50));
}

// Full jitter: delays spread over the whole [0, ceiling] range, so replicas
// that lost Redis together do not come back together.
TEST(BackoffTest, DelaysSpreadOverTheWholeRange) {
  Backoff backoff(absl::Seconds(1), absl::Seconds(1), /*seed=*/42);
  int low = 0;
  int high = 0;
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration delay = backoff.Next();
    ASSERT_LE(delay, absl::Seconds(1));
    if (delay < absl::Milliseconds(100)) ++low;
    if (delay > absl::Milliseconds(900)) ++high;
  }
  EXPECT_GT(low, 50);
  EXPECT_GT(high, 50);
}

TEST(BackoffTest, SameSeedSameDelays) {
  Backoff a(absl::Milliseconds(10), absl::Seconds(1), /*seed=*/3);
  Backoff b(absl::Milliseconds(10), absl::Seconds(1), /*seed=*/3);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Next(), b.Next());
}

}  // namespace
}  // namespace switchboard::broker::redis
