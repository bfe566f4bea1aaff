#include "server/upstream/quota_layer.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;

TEST(QuotaLayerTest, ACallOverItsClientsQuotaIsRefusedWithTheWait) {
  common::SimulatedClock clock{absl::FromUnixSeconds(1000)};
  event::DispatcherImpl dispatcher("quota-layer-test", clock);
  dispatcher.Start();
  NullObserver observer;
  FakeCallLayer next;
  Outcomes outcomes;
  std::unique_ptr<ratelimit::ClientQuotas> quotas;
  std::unique_ptr<QuotaLayer> layer;
  testing::RunOnDispatcher(dispatcher, [&] {
    // One request per second, a burst of one.
    quotas = std::make_unique<ratelimit::ClientQuotas>(
        dispatcher, absl::flat_hash_map<std::string, double>{{"worker", 1}});
    layer = std::make_unique<QuotaLayer>("solana", *quotas, observer, next);
    layer->Start(1, CallOf("getSlot"), outcomes.Slot(0));
    layer->Start(2, CallOf("getSlot"), outcomes.Slot(1));
    EXPECT_EQ(next.started.size(), 1u);
    ASSERT_EQ(outcomes.ended[1], 1);
    EXPECT_THAT(outcomes.outcomes[1].result,
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("client worker is over its quota")));
    EXPECT_EQ(RetryAfter(outcomes.outcomes[1].result.status()), absl::Seconds(1));
    layer->Cancel(1);
    EXPECT_EQ(next.cancelled, std::vector<CallLayer::CallId>{1});
    layer.reset();
    quotas.reset();
  });
}

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

TEST(QuotaLayerTest, ACallWaitingForAGlobalQuotaIsWithdrawnByCancel) {
  common::SimulatedClock clock{absl::FromUnixSeconds(1000)};
  event::DispatcherImpl dispatcher("quota-layer-test", clock);
  dispatcher.Start();
  NullObserver observer;
  FakeCallLayer next;
  Outcomes outcomes;
  std::unique_ptr<ratelimit::ClientQuotas> quotas;
  std::unique_ptr<QuotaLayer> layer;
  testing::RunOnDispatcher(dispatcher, [&] {
    quotas = std::make_unique<ratelimit::ClientQuotas>(
        dispatcher, absl::flat_hash_map<std::string, double>{{"worker", 1}},
        [](absl::string_view, double, double) { return std::make_unique<AwaitingLimiter>(); });
    layer = std::make_unique<QuotaLayer>("solana", *quotas, observer, next);
    layer->Start(1, CallOf("getSlot"), outcomes.Slot(0));
    EXPECT_EQ(outcomes.ended[0], 0) << "waits for tokens";
    layer->Cancel(1);
    ASSERT_EQ(outcomes.ended[0], 1);
    EXPECT_THAT(outcomes.outcomes[0].result, StatusIs(absl::StatusCode::kCancelled));
    EXPECT_TRUE(next.started.empty());
    EXPECT_TRUE(next.cancelled.empty());
    layer.reset();
    quotas.reset();
  });
}

}  // namespace
}  // namespace switchboard::upstream
