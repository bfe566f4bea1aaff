#include "server/upstream/circuit_breaker.h"

#include "gtest/gtest.h"

namespace switchboard::upstream {
namespace {

using State = CircuitBreaker::State;

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(CircuitBreakerTest, OpensAfterTheThresholdOfConsecutiveFailures) {
  CircuitBreaker breaker(3, absl::Seconds(5));
  breaker.OnFailure(kStart);
  breaker.OnFailure(kStart);
  breaker.OnSuccess();  // Not consecutive: counting starts over.
  breaker.OnFailure(kStart);
  breaker.OnFailure(kStart);
  EXPECT_TRUE(breaker.Allow(kStart));
  EXPECT_EQ(breaker.state(kStart), State::kClosed);
  breaker.OnFailure(kStart);
  EXPECT_EQ(breaker.state(kStart), State::kOpen);
  EXPECT_FALSE(breaker.Allow(kStart + absl::Seconds(4)));
}

TEST(CircuitBreakerTest, LetsOneProbeThroughAfterTheOpenTime) {
  CircuitBreaker breaker(1, absl::Seconds(5));
  breaker.OnFailure(kStart);
  const absl::Time later = kStart + absl::Seconds(5);
  EXPECT_EQ(breaker.state(later), State::kHalfOpen);
  EXPECT_TRUE(breaker.Allow(later));
  EXPECT_FALSE(breaker.Allow(later)) << "one probe at a time";
  breaker.OnSuccess();
  EXPECT_EQ(breaker.state(later), State::kClosed);
  EXPECT_TRUE(breaker.Allow(later));
  EXPECT_TRUE(breaker.Allow(later));
}

TEST(CircuitBreakerTest, AFailedProbeOpensItAgainForTheWholeTime) {
  CircuitBreaker breaker(2, absl::Seconds(5));
  breaker.OnFailure(kStart);
  breaker.OnFailure(kStart);
  const absl::Time probe_time = kStart + absl::Seconds(6);
  ASSERT_TRUE(breaker.Allow(probe_time));
  breaker.OnFailure(probe_time);  // One failure suffices when half-open.
  EXPECT_EQ(breaker.state(probe_time), State::kOpen);
  EXPECT_FALSE(breaker.Allow(probe_time + absl::Seconds(4)));
  EXPECT_TRUE(breaker.Allow(probe_time + absl::Seconds(5)));
}

TEST(CircuitBreakerTest, StatesHaveNames) {
  EXPECT_EQ(CircuitBreakerStateName(State::kClosed), "closed");
  EXPECT_EQ(CircuitBreakerStateName(State::kOpen), "open");
  EXPECT_EQ(CircuitBreakerStateName(State::kHalfOpen), "half_open");
}

}  // namespace
}  // namespace switchboard::upstream
