#include "server/upstream/admission_layer.h"

#include <memory>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::StatusIs;

class NullAdmissionObserver final : public ratelimit::AdmissionObserver {
 public:
  void OnAdmitted(absl::string_view, absl::Duration) override {}
  void OnRejected(absl::string_view, ratelimit::RejectionReason) override {}
  void OnRateChanged(double) override {}
};

class AdmissionLayerTest : public DispatcherTest {
 protected:
  AdmissionLayerTest() {
    // Ten calls per second, one at once after a quiet spell.
    ratelimit::UpstreamAdmissionOptions options;
    options.rate = 10;
    options.burst = 1;
    Run([&] {
      admission_ =
          std::make_unique<ratelimit::UpstreamAdmission>(dispatcher_, options, admission_observer_);
      layer_ = std::make_unique<AdmissionLayer>("solana", *admission_, response_time_, clock_,
                                                observer_, next_);
    });
  }
  ~AdmissionLayerTest() override {
    Run([&] {
      layer_.reset();
      admission_.reset();
    });
  }

  NullAdmissionObserver admission_observer_;
  NullObserver observer_;
  ResponseTimeEstimate response_time_;
  FakeCallLayer next_;
  std::unique_ptr<ratelimit::UpstreamAdmission> admission_;
  std::unique_ptr<AdmissionLayer> layer_;
  Outcomes outcomes_;
};

TEST_F(AdmissionLayerTest, AnAdmittedCallHoldsAPlaceInFlightUntilItEnds) {
  Run([&] { layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0)); });
  Settle();
  Run([&] {
    ASSERT_EQ(next_.started.size(), 1u);
    EXPECT_EQ(admission_->in_flight(), 1u);
    CallOutcome served = ResultOutcome("7");
    served.served = true;
    next_.End(0, std::move(served));
    EXPECT_EQ(admission_->in_flight(), 0u);
    EXPECT_EQ(outcomes_.outcomes[0].result->json, "7");
  });
}

TEST_F(AdmissionLayerTest, ProviderPushbackLowersTheRate) {
  Run([&] { layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0)); });
  Settle();
  Run([&] {
    CallOutcome throttled{absl::ResourceExhaustedError("HTTP 429")};
    throttled.throttled = true;
    throttled.retry_after = absl::Seconds(1);
    next_.End(0, std::move(throttled));
    EXPECT_LT(admission_->rate(), 10);
  });
}

TEST_F(AdmissionLayerTest, CancelWithdrawsAQueuedCallAndPassesAnAdmittedOneDown) {
  Run([&] {
    layer_->Start(1, CallOf("getSlot"), outcomes_.Slot(0));
    layer_->Start(2, CallOf("getSlot"), outcomes_.Slot(1));
  });
  Settle();
  Run([&] {
    ASSERT_EQ(next_.started.size(), 1u) << "call 2 waits for the limiter";
    layer_->Cancel(2);
    ASSERT_EQ(outcomes_.ended[1], 1);
    EXPECT_THAT(outcomes_.outcomes[1].result, StatusIs(absl::StatusCode::kCancelled));
    EXPECT_EQ(admission_->queue_depth(), 0u);
    layer_->Cancel(1);
    EXPECT_EQ(next_.cancelled, std::vector<CallLayer::CallId>{1});
  });
  clock_.Advance(absl::Seconds(1));
  Settle();
  Run([&] { EXPECT_EQ(next_.started.size(), 1u); });
}

}  // namespace
}  // namespace switchboard::upstream
