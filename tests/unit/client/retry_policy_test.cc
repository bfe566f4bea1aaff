// The Consumer's reconnect policy: which stream ends are retried, and the
// backoff's growth, cap, jitter bounds and reset. Pure logic, no server.
#include "client/src/retry_policy.h"

#include <random>
#include <set>

#include "gtest/gtest.h"

namespace switchboard::client::internal {
namespace {

TEST(RetryPolicyTest, TransientEndsAreRetriedAndVerdictsOnTheRequestAreNot) {
  EXPECT_TRUE(IsRetryableStreamEnd(absl::OkStatus()));
  EXPECT_TRUE(IsRetryableStreamEnd(absl::UnavailableError("drain")));
  EXPECT_TRUE(IsRetryableStreamEnd(absl::ResourceExhaustedError("busy")));
  EXPECT_TRUE(IsRetryableStreamEnd(absl::InternalError("broke")));
  EXPECT_FALSE(IsRetryableStreamEnd(absl::InvalidArgumentError("group")));
  EXPECT_FALSE(IsRetryableStreamEnd(absl::FailedPreconditionError("ephemeral")));
  EXPECT_FALSE(IsRetryableStreamEnd(absl::PermissionDeniedError("topic")));
  EXPECT_FALSE(IsRetryableStreamEnd(absl::UnauthenticatedError("token")));
}

TEST(RetryPolicyTest, DelaysDoubleUpToTheCapWithinTheirJitterBounds) {
  ExponentialBackoff backoff(absl::Milliseconds(100), absl::Milliseconds(1000), 2.0);
  std::mt19937 random(42);
  const absl::Duration steps[] = {absl::Milliseconds(100),  absl::Milliseconds(200),
                                  absl::Milliseconds(400),  absl::Milliseconds(800),
                                  absl::Milliseconds(1000), absl::Milliseconds(1000)};
  for (absl::Duration step : steps) {
    const absl::Duration delay = backoff.NextDelay(random);
    EXPECT_GE(delay, step / 2);
    EXPECT_LT(delay, step);
  }
}

TEST(RetryPolicyTest, ResetStartsOverFromTheInitialDelay) {
  ExponentialBackoff backoff(absl::Milliseconds(100), absl::Seconds(10), 2.0);
  std::mt19937 random(7);
  for (int i = 0; i < 5; ++i) backoff.NextDelay(random);
  backoff.Reset();
  const absl::Duration delay = backoff.NextDelay(random);
  EXPECT_GE(delay, absl::Milliseconds(50));
  EXPECT_LT(delay, absl::Milliseconds(100));
}

TEST(RetryPolicyTest, JitterSpreadsTheDelaysOfOneStep) {
  std::mt19937 random(1);
  std::set<absl::Duration> delays;
  for (int i = 0; i < 20; ++i) {
    ExponentialBackoff backoff(absl::Seconds(1), absl::Seconds(1), 2.0);
    delays.insert(backoff.NextDelay(random));
  }
  EXPECT_EQ(delays.size(), 20u);
}

}  // namespace
}  // namespace switchboard::client::internal
