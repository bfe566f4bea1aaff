// The backoff's ceilings (growth, cap), the bounds and spread of each jitter
// kind at every attempt, and Backoff's attempt counting and Reset. Every
// random source is seeded, so a failure repeats.
#include "common/backoff.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::common {
namespace {

using ::testing::ElementsAre;

BackoffOptions Options(Jitter jitter) {
  BackoffOptions options;
  options.initial = absl::Milliseconds(100);
  options.max = absl::Seconds(1);
  options.multiplier = 2.0;
  options.jitter = jitter;
  return options;
}

std::vector<absl::Duration> Ceilings(const BackoffOptions& options, int attempts) {
  std::vector<absl::Duration> ceilings;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    ceilings.push_back(BackoffCeiling(options, attempt));
  }
  return ceilings;
}

TEST(BackoffTest, CeilingsGrowByTheMultiplierUpToTheMax) {
  BackoffOptions options = Options(Jitter::kFull);
  EXPECT_THAT(
      Ceilings(options, 7),
      ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                  absl::Milliseconds(800), absl::Seconds(1), absl::Seconds(1), absl::Seconds(1)));
  options.multiplier = 1.5;
  EXPECT_THAT(Ceilings(options, 4),
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(150), absl::Milliseconds(225),
                          absl::Microseconds(337500)));
}

TEST(BackoffTest, TheMaxCapsEveryCeilingEvenTheFirstAndAfterManyAttempts) {
  BackoffOptions options = Options(Jitter::kFull);
  EXPECT_EQ(BackoffCeiling(options, 1000), absl::Seconds(1));
  EXPECT_EQ(BackoffCeiling(options, 1 << 30), absl::Seconds(1));
  options.initial = absl::Seconds(5);
  EXPECT_EQ(BackoffCeiling(options, 0), absl::Seconds(1));
}

// Draws many delays of each attempt and checks that all lie within
// [floor, ceiling] and that they reach near both ends.
void ExpectDelaysSpanTheRange(const BackoffOptions& options, double floor_of_ceiling) {
  std::mt19937_64 random(42);
  for (int attempt = 0; attempt < 6; ++attempt) {
    SCOPED_TRACE(testing::Message() << "attempt " << attempt);
    const absl::Duration ceiling = BackoffCeiling(options, attempt);
    const absl::Duration floor = ceiling * floor_of_ceiling;
    const absl::Duration near = (ceiling - floor) / 20;
    absl::Duration lowest = absl::InfiniteDuration();
    absl::Duration highest = -absl::InfiniteDuration();
    for (int i = 0; i < 1000; ++i) {
      const absl::Duration delay = BackoffDelay(options, attempt, random);
      ASSERT_GE(delay, floor);
      ASSERT_LE(delay, ceiling);
      lowest = std::min(lowest, delay);
      highest = std::max(highest, delay);
    }
    EXPECT_LT(lowest, floor + near);
    EXPECT_GT(highest, ceiling - near);
  }
}

TEST(BackoffTest, FullJitterDrawsFromZeroToTheCeiling) {
  ExpectDelaysSpanTheRange(Options(Jitter::kFull), 0.0);
}

TEST(BackoffTest, ReconnectsDoubleUpToTheMaxWithFullJitter) {
  const BackoffOptions options = ReconnectBackoff(absl::Milliseconds(100), absl::Seconds(1));
  EXPECT_EQ(options.jitter, Jitter::kFull);
  EXPECT_THAT(Ceilings(options, 6),
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(800), absl::Seconds(1), absl::Seconds(1)));
  ExpectDelaysSpanTheRange(options, 0.0);
}

TEST(BackoffTest, EqualJitterDrawsFromHalfTheCeilingToTheCeiling) {
  ExpectDelaysSpanTheRange(Options(Jitter::kEqual), 0.5);
}

TEST(BackoffTest, TheSameDrawsGiveTheSameDelays) {
  const BackoffOptions options = Options(Jitter::kFull);
  std::mt19937_64 a(3);
  std::mt19937_64 b(3);
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 10; ++i) {
    const absl::Duration delay = BackoffDelay(options, 2, a);
    EXPECT_EQ(delay, BackoffDelay(options, 2, b));
    delays.push_back(delay);
  }
  // ... and different draws, different delays: the jitter is there.
  std::sort(delays.begin(), delays.end());
  EXPECT_EQ(std::unique(delays.begin(), delays.end()), delays.end());
}

// Backoff walks the attempts one per Next() and starts over after Reset():
// with the same draws, its delays are BackoffDelay's for attempts 0, 1, ...
TEST(BackoffTest, NextCountsTheAttemptsAndResetStartsOver) {
  const BackoffOptions options = Options(Jitter::kEqual);
  Backoff backoff(options);
  std::mt19937_64 random(7);
  std::mt19937_64 expected_random(7);
  for (int attempt = 0; attempt < 8; ++attempt) {
    EXPECT_EQ(backoff.Next(random), BackoffDelay(options, attempt, expected_random))
        << "attempt " << attempt;
  }
  backoff.Reset();
  const absl::Duration first = backoff.Next(random);
  EXPECT_EQ(first, BackoffDelay(options, 0, expected_random));
  EXPECT_LE(first, absl::Milliseconds(100));
}

}  // namespace
}  // namespace switchboard::common
