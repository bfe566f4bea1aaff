#include "server/upstream/retry_layer.h"

#include <memory>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/fake_call_layer.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::StatusIs;

CallOutcome Failure(bool retryable, bool never_sent, size_t failed_url) {
  CallOutcome outcome{absl::UnavailableError("connection refused")};
  outcome.retryable = retryable;
  outcome.never_sent = never_sent;
  outcome.failed_url = failed_url;
  return outcome;
}

class RetryLayerTest : public DispatcherTest {
 protected:
  RetryLayerTest() {
    options_.urls = {"http://primary", "http://fallback"};
    options_.max_attempts = 3;
    options_.retry_methods = {"getSlot"};
    options_.retry_backoff = absl::Milliseconds(50);
    Run([&] { layer_ = std::make_unique<RetryLayer>(options_, dispatcher_, next_); });
  }
  ~RetryLayerTest() override {
    Run([&] { layer_.reset(); });
  }

  size_t Started() {
    size_t count = 0;
    Run([&] { count = next_.started.size(); });
    return count;
  }

  UpstreamOptions options_;
  FakeCallLayer next_;
  std::unique_ptr<RetryLayer> layer_;
  Outcomes outcomes_;
};

TEST_F(RetryLayerTest, ARequestNeverSentGoesAgainAtOnceOncePerUrlWhateverItsMethod) {
  Run([&] {
    layer_->Start(1, CallOf("sendTransaction"), outcomes_.Slot(0));
    next_.End(0, Failure(true, true, 0));
    ASSERT_EQ(next_.started.size(), 2u) << "no backoff";
    EXPECT_EQ(next_.started[1].id, 1u);
    EXPECT_EQ(next_.started[1].call.avoid_url, 0u);
    next_.End(1, Failure(true, true, 1));
  });
  EXPECT_EQ(Started(), 2u) << "every URL was tried";
  EXPECT_THAT(outcomes_.outcomes[0].result, StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(RetryLayerTest, ARetryMethodGoesAgainAfterBackoffAvoidingTheUrlThatFailed) {
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    next_.End(0, Failure(true, false, 0));
  });
  EXPECT_EQ(Started(), 1u) << "waits for the backoff";
  clock_.Advance(absl::Milliseconds(50));
  Settle();
  ASSERT_EQ(Started(), 2u);
  Run([&] {
    EXPECT_EQ(next_.started[1].call.avoid_url, 0u);
    next_.End(1, ResultOutcome("42"));
  });
  ASSERT_EQ(outcomes_.ended[0], 1);
  EXPECT_EQ(outcomes_.outcomes[0].result->upstream_attempts, 2u);
}

TEST_F(RetryLayerTest, AMethodOffTheRetryListIsNeverSentTwice) {
  Run([&] {
    layer_->Start(1, CallOf("sendTransaction"), outcomes_.Slot(0));
    next_.End(0, Failure(true, false, 0));
  });
  clock_.Advance(absl::Seconds(10));
  Settle();
  EXPECT_EQ(Started(), 1u);
  EXPECT_EQ(outcomes_.ended[0], 1);
}

// Only a call the layer would try again may reach the provider twice: the
// transport lets its HTTP request leave in one write, which libcurl may
// repeat on a new connection.
TEST_F(RetryLayerTest, OnlyARetryMethodsAttemptsMayRepeat) {
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    layer_->Start(2, CallOf("sendTransaction"), outcomes_.Slot(1));
    ASSERT_EQ(next_.started.size(), 2u);
    EXPECT_TRUE(next_.started[0].call.may_repeat);
    EXPECT_FALSE(next_.started[1].call.may_repeat);
    next_.End(0, ResultOutcome("42"));
    next_.End(1, ResultOutcome("43"));
  });
  options_.urls = {"http://primary"};
  options_.max_attempts = 1;  // Nothing is tried again.
  Run([&] {
    layer_->Start(3, CallOf("getSlot"), outcomes_.Slot(2));
    ASSERT_EQ(next_.started.size(), 3u);
    EXPECT_FALSE(next_.started[2].call.may_repeat);
    next_.End(2, ResultOutcome("44"));
  });
  EXPECT_EQ(outcomes_.ended, (std::vector<int>{1, 1, 1}));
}

TEST_F(RetryLayerTest, AttemptsStopAtMaxAttempts) {
  Run([&] { layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0)); });
  for (size_t attempt = 0; attempt < 3; ++attempt) {
    Run([&] { next_.End(attempt, Failure(true, false, attempt % 2)); });
    clock_.Advance(absl::Seconds(1));
    Settle();
  }
  EXPECT_EQ(Started(), 3u);
  EXPECT_EQ(outcomes_.ended[0], 1);
}

TEST_F(RetryLayerTest, CancelReachesTheAttemptButNotACallInItsBackoff) {
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    layer_->Cancel(1);
    EXPECT_EQ(next_.cancelled, std::vector<CallLayer::CallId>{1});
    next_.End(0, Failure(true, false, 0));
    layer_->Cancel(1);
    EXPECT_EQ(next_.cancelled.size(), 1u) << "in its backoff";
  });
}

}  // namespace
}  // namespace switchboard::upstream
