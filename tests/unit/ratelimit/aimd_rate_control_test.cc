#include "server/ratelimit/aimd_rate_control.h"

#include "gtest/gtest.h"

namespace switchboard::ratelimit {
namespace {

const absl::Time kStart = absl::UnixEpoch() + absl::Hours(1);

absl::Time At(absl::Duration offset) { return kStart + offset; }

class AimdRateControlTest : public ::testing::Test {
 protected:
  Gcra limiter_{/*rate=*/100, /*burst=*/10};
  AimdRateControl control_{limiter_, AimdOptions()};
};

TEST_F(AimdRateControlTest, AThrottleHalvesTheRateAndPausesForRetryAfter) {
  EXPECT_EQ(control_.configured_rate(), 100);
  EXPECT_TRUE(control_.OnThrottled(absl::Seconds(2), kStart));
  EXPECT_EQ(limiter_.rate(), 50);
  EXPECT_EQ(limiter_.paused_until(), At(absl::Seconds(2)));
  EXPECT_EQ(limiter_.ConformingTime(1, kStart), At(absl::Seconds(2)));
}

TEST_F(AimdRateControlTest, WithoutRetryAfterTheDefaultPauseApplies) {
  EXPECT_TRUE(control_.OnThrottled(std::nullopt, kStart));
  EXPECT_EQ(limiter_.paused_until(), At(absl::Seconds(1)));
}

TEST_F(AimdRateControlTest, ThrottlesDuringAPauseExtendItButLowerTheRateOnce) {
  ASSERT_TRUE(control_.OnThrottled(absl::Seconds(1), kStart));
  // The answers of 20 calls that were in flight when the provider pushed back.
  for (int i = 1; i <= 20; ++i) {
    EXPECT_FALSE(control_.OnThrottled(std::nullopt, At(absl::Milliseconds(10 * i)))) << i;
  }
  EXPECT_EQ(limiter_.rate(), 50);
  EXPECT_EQ(limiter_.paused_until(), At(absl::Milliseconds(1200)));
  // Once the pause is over, a new throttle is a new episode.
  EXPECT_TRUE(control_.OnThrottled(std::nullopt, At(absl::Milliseconds(1200))));
  EXPECT_EQ(limiter_.rate(), 25);
}

TEST_F(AimdRateControlTest, TheRateNeverFallsBelowTheFloor) {
  absl::Time now = kStart;
  for (double expected : {50.0, 25.0, 12.5, 10.0}) {
    EXPECT_TRUE(control_.OnThrottled(std::nullopt, now));
    EXPECT_EQ(limiter_.rate(), expected);
    now = limiter_.paused_until();
  }
  EXPECT_FALSE(control_.OnThrottled(std::nullopt, now));
  EXPECT_EQ(limiter_.rate(), 10);
}

TEST_F(AimdRateControlTest, SuccessesDuringAPauseDoNotCount) {
  ASSERT_TRUE(control_.OnThrottled(absl::Seconds(1), kStart));
  EXPECT_FALSE(control_.OnSucceeded(1, At(absl::Milliseconds(999))));
  EXPECT_EQ(limiter_.rate(), 50);
}

TEST_F(AimdRateControlTest, SuccessesRaiseTheRateAdditivelyUpToTheConfiguredRate) {
  ASSERT_TRUE(control_.OnThrottled(absl::Seconds(1), kStart));
  const absl::Time after_pause = At(absl::Seconds(1));
  // Recovery time 2 s: each cost unit adds 0.5 per second.
  for (int i = 1; i <= 99; ++i) {
    ASSERT_TRUE(control_.OnSucceeded(1, after_pause));
    ASSERT_EQ(limiter_.rate(), 50 + 0.5 * i);
  }
  EXPECT_TRUE(control_.OnSucceeded(10, after_pause));  // 99.5 + 5, capped.
  EXPECT_EQ(limiter_.rate(), 100);
  EXPECT_FALSE(control_.OnSucceeded(1, after_pause));
  EXPECT_EQ(limiter_.rate(), 100);
}

TEST_F(AimdRateControlTest, RecoversFromHalfTheRateWithinLn2TimesTheRecoveryTime) {
  ASSERT_TRUE(control_.OnThrottled(std::nullopt, kStart));
  // Unit calls go, and succeed, as fast as the lowered limiter allows.
  absl::Time now = limiter_.paused_until();
  const absl::Time recovery_start = now;
  int calls = 0;
  while (limiter_.rate() < 100) {
    ASSERT_LT(++calls, 1000);
    now = limiter_.ConformingTime(1, now);
    limiter_.Consume(1, now);
    control_.OnSucceeded(1, now);
  }
  // 100 calls at 50, 50.5, ... 99.5 per second, the first 10 of them at once
  // (the burst): 1.2 s, within ln 2 x 2 s = 1.39 s.
  EXPECT_EQ(calls, 100);
  EXPECT_NEAR(absl::ToDoubleSeconds(now - recovery_start), 1.1998, 0.0001);
}

}  // namespace
}  // namespace switchboard::ratelimit
