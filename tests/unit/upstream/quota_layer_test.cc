#include "server/upstream/quota_layer.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;

// A global quota whose tokens are on their way and never come.
class AwaitingLimiter final : public ratelimit::Limiter {
 public:
  absl::Time ConformingTime(uint64_t, absl::Time) const override { return absl::InfiniteFuture(); }
  absl::Time EstimateConformingTime(uint64_t, uint64_t, absl::Time) const override {
    return absl::InfiniteFuture();
  }
  void Consume(uint64_t, absl::Time, absl::Time) override {}
  bool OnThrottled(std::optional<absl::Duration>, absl::Time) override { return false; }
  bool OnSucceeded(uint64_t, absl::Time) override { return false; }
  double rate() const override { return 1; }
  bool AwaitingTokens() const override { return true; }
};

class QuotaLayerTest : public DispatcherTest {
 protected:
  ~QuotaLayerTest() override {
    Run([&] {
      layer_.reset();
      quotas_.reset();
    });
  }

  // Client "worker" gets one request per second, a burst of one, from
  // `make_limiter`'s limiters if set.
  void Create(ratelimit::ClientQuotas::LimiterFactory make_limiter = nullptr) {
    Run([&] {
      quotas_ = std::make_unique<ratelimit::ClientQuotas>(
          dispatcher_, absl::flat_hash_map<std::string, double>{{"worker", 1}},
          std::move(make_limiter));
      layer_ = std::make_unique<QuotaLayer>("solana", *quotas_, observer_, next_);
    });
  }

  NullObserver observer_;
  FakeCallLayer next_;
  Outcomes outcomes_;
  std::unique_ptr<ratelimit::ClientQuotas> quotas_;
  std::unique_ptr<QuotaLayer> layer_;
};

TEST_F(QuotaLayerTest, ACallOverItsClientsQuotaIsRefusedWithTheWait) {
  Create();
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    layer_->Start(2, CallOf("getSlot"), outcomes_.Slot(1));
    EXPECT_EQ(next_.started.size(), 1u);
    ASSERT_EQ(outcomes_.ended[1], 1);
    EXPECT_THAT(outcomes_.outcomes[1].result,
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("client worker is over its quota")));
    EXPECT_EQ(RetryAfter(outcomes_.outcomes[1].result.status()), absl::Seconds(1));
    layer_->Cancel(1);
    EXPECT_EQ(next_.cancelled, std::vector<CallLayer::CallId>{1});
  });
}

TEST_F(QuotaLayerTest, ACallWaitingForAGlobalQuotaIsWithdrawnByCancel) {
  Create([](absl::string_view, double, double) { return std::make_unique<AwaitingLimiter>(); });
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    EXPECT_EQ(outcomes_.ended[0], 0) << "waits for tokens";
    layer_->Cancel(1);
    ASSERT_EQ(outcomes_.ended[0], 1);
    EXPECT_THAT(outcomes_.outcomes[0].result, StatusIs(absl::StatusCode::kCancelled));
    EXPECT_TRUE(next_.started.empty());
    EXPECT_TRUE(next_.cancelled.empty());
  });
}

}  // namespace
}  // namespace switchboard::upstream
