// The Consumer's reconnect policy: which stream ends are retried (its delays:
// tests/unit/common/backoff_test.cc). Pure logic, no server.
#include "client/src/retry_policy.h"

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

}  // namespace
}  // namespace switchboard::client::internal
