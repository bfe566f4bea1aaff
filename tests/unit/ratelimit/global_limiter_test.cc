#include "server/ratelimit/global_limiter.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/fake_lease_service.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::ratelimit {
namespace {

using ::testing::ElementsAre;

// Dispatcher thread only.
class RecordingObserver final : public GlobalLimitObserver {
 public:
  void OnLeaseRoundTrip(absl::string_view, absl::string_view, bool ok, uint32_t tokens) override {
    (ok ? leased : failed_round_trips) += ok ? tokens : 1;
  }
  void OnTokensReturned(absl::string_view, absl::string_view, uint32_t tokens) override {
    returned += tokens;
  }
  void OnFallback(absl::string_view, absl::string_view, bool fallback) override {
    fallbacks.push_back(fallback);
  }

  uint32_t leased = 0;
  uint32_t failed_round_trips = 0;
  uint32_t returned = 0;
  std::vector<bool> fallbacks;
};

constexpr absl::Duration kInterval = absl::Milliseconds(10);  // 100 per second.

class GlobalLimiterTest : public ::testing::Test {
 protected:
  GlobalLimiterTest() : dispatcher_("global-limiter-test", clock_) {
    dispatcher_.Start();
    Run([&] {
      limiter_ = std::make_unique<GlobalLimiter>(
          dispatcher_, service_,
          SharedLimit{"upstream", "provider", /*rate=*/100, /*burst=*/2, AimdOptions()}, observer_);
      limiter_->SetChangeCallback([&] { ++changes_; });
    });
  }
  ~GlobalLimiterTest() override {
    Run([&] { limiter_.reset(); });
  }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(dispatcher_, std::move(fn)); }
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    Run([] {});
  }
  absl::Time Now() const { return clock_.Now(); }

  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  testing::FakeLeaseService service_;
  RecordingObserver observer_;
  std::unique_ptr<GlobalLimiter> limiter_;
  int changes_ = 0;
};

TEST_F(GlobalLimiterTest, QueuedDemandLeasesTokensAndCallsGoAtTheirSlots) {
  Run([&] {
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), absl::InfiniteFuture());
    limiter_->OnDemand(1, /*waiting_cost=*/3, Now());
    ASSERT_EQ(service_.requests().size(), 1u);
    EXPECT_EQ(service_.requests()[0].request.tokens, 3u);
    EXPECT_TRUE(limiter_->AwaitingTokens());
    limiter_->OnDemand(1, 4, Now());  // One round trip at a time.
    EXPECT_EQ(service_.requests().size(), 1u);
    service_.Grant(0, 3, Now(), kInterval);
    EXPECT_EQ(changes_, 1);
    EXPECT_EQ(observer_.leased, 3u);
    // A burst of 2: the second slot may go now, the third 10 ms later.
    EXPECT_EQ(limiter_->ConformingTime(2, Now()), Now() + kInterval);
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), Now());
    limiter_->Consume(1, Now(), Now());
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), Now() + kInterval);
    EXPECT_EQ(limiter_->tokens_held(), 2u);
  });
}

TEST_F(GlobalLimiterTest, TokensUnusedPastTheirGraceAreReturned) {
  Run([&] {
    limiter_->OnDemand(1, 2, Now());
    service_.Grant(0, 2, Now(), kInterval);
  });
  Advance(kInterval + GlobalLimiter::kSlotGrace + absl::Milliseconds(1));
  Run([&] {
    // Both expired; the next call needs a new lease.
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), absl::InfiniteFuture());
    limiter_->OnDemand(1, 1, Now());
    EXPECT_EQ(observer_.returned, 2u);
    EXPECT_EQ(service_.requests().size(), 2u);
  });
}

TEST_F(GlobalLimiterTest, AContendedLeaseWaitsThreeQuartersOfAHorizonBeforeTheNext) {
  Run([&] {
    limiter_->OnDemand(1, 50, Now());
    service_.Grant(0, 5, Now() + absl::Milliseconds(50), kInterval);  // Less than asked.
    EXPECT_EQ(service_.requests().size(), 1u);
  });
  Advance(service_.horizon() * 3 / 4 - absl::Milliseconds(1));
  Run([&] { EXPECT_EQ(service_.requests().size(), 1u); });
  Advance(absl::Milliseconds(1));
  Run([&] { EXPECT_EQ(service_.requests().size(), 2u); });
}

TEST_F(GlobalLimiterTest, ACallCostingMoreThanAHorizonGetsItsTokensAtOnce) {
  Run([&] {
    EXPECT_EQ(limiter_->ConformingTime(30, Now()), absl::InfiniteFuture());
    limiter_->OnDemand(30, 30, Now());
    ASSERT_EQ(service_.requests().size(), 1u);
    EXPECT_EQ(service_.requests()[0].request.tokens, 30u);
    EXPECT_EQ(service_.requests()[0].request.at_once, 30u);
    service_.Grant(0, 30, Now(), kInterval);
    // As a local GCRA does: it goes once its burst's worth (2) is there, in
    // debt for the rest (slots up to 290 ms ahead).
    EXPECT_EQ(limiter_->ConformingTime(30, Now()), Now() + kInterval);
    limiter_->Consume(30, Now() + kInterval, Now() + kInterval);
    EXPECT_EQ(limiter_->tokens_held(), 0u);
  });
}

TEST_F(GlobalLimiterTest, APauseFromAnotherReplicaVoidsTokensUntilItEnds) {
  Run([&] {
    limiter_->OnDemand(1, 5, Now());
    service_.Grant(0, 5, Now(), kInterval);
    service_.Pause("upstream:provider", Now() + absl::Seconds(1), 50);
    EXPECT_EQ(observer_.returned, 5u);
    EXPECT_EQ(limiter_->rate(), 50);
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), absl::InfiniteFuture());
    limiter_->OnDemand(1, 6, Now());
    EXPECT_EQ(service_.requests().size(), 1u);  // No lease during the pause.
  });
  Advance(absl::Seconds(1));
  Run([&] { EXPECT_EQ(service_.requests().size(), 2u); });
}

TEST_F(GlobalLimiterTest, AThrottleHereIsReportedToTheFleetAndPausesAtOnce) {
  Run([&] {
    limiter_->OnDemand(1, 2, Now());
    service_.Grant(0, 2, Now(), kInterval);
    EXPECT_TRUE(limiter_->OnThrottled(absl::Seconds(2), Now()));
    EXPECT_EQ(service_.throttles().size(), 1u);
    EXPECT_EQ(service_.throttles()[0].pause, absl::Seconds(2));
    EXPECT_EQ(limiter_->rate(), 50);  // AIMD's decrease, as the store applies it.
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), absl::InfiniteFuture());
    EXPECT_EQ(observer_.returned, 2u);
    // A second throttle within the pause does not lower the rate again.
    EXPECT_FALSE(limiter_->OnThrottled(absl::Seconds(1), Now()));
  });
}

TEST_F(GlobalLimiterTest, AFailedLeaseFallsBackToTheReplicasShareAndComesBack) {
  service_.set_live_replicas(4);
  Run([&] {
    limiter_->OnDemand(1, 1, Now());
    service_.Fail(0);
    EXPECT_TRUE(limiter_->fallback());
    EXPECT_THAT(observer_.fallbacks, ElementsAre(false, true));
    EXPECT_EQ(limiter_->rate(), 25);  // 100 / 4 replicas.
    // The fallback bucket starts full: no burst at the switch.
    EXPECT_EQ(limiter_->ConformingTime(1, Now()), Now() + absl::Milliseconds(40));
  });
  Advance(GlobalLimiter::kFallbackRetry);
  Run([&] {
    ASSERT_EQ(service_.requests().size(), 2u);
    service_.Grant(1, 1, Now(), kInterval);
    EXPECT_FALSE(limiter_->fallback());
    EXPECT_THAT(observer_.fallbacks, ElementsAre(false, true, false));
    EXPECT_EQ(limiter_->rate(), 100);
  });
}

TEST_F(GlobalLimiterTest, ALeaseAnsweredAfterTheLimiterIsGoneIsDropped) {
  Run([&] {
    limiter_->OnDemand(1, 1, Now());
    limiter_.reset();
    EXPECT_FALSE(service_.watching("upstream:provider"));
    service_.Grant(0, 1, Now(), kInterval);  // Must not touch the limiter.
  });
}

}  // namespace
}  // namespace switchboard::ratelimit
