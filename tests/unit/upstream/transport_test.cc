#include "server/upstream/transport.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

class TransportTest : public DispatcherTest {
 protected:
  void Create(UpstreamOptions options) {
    options.name = "solana";
    options.urls = {"http://primary", "http://fallback"};
    options_ = std::move(options);
    Run([&] {
      auto pool = std::make_unique<FakeHttpPool>();
      pool_ = pool.get();
      transport_ = std::make_unique<Transport>(options_, dispatcher_, std::move(pool), observer_,
                                               response_time_, [](bool) {});
    });
  }
  ~TransportTest() override {
    Run([&] { transport_.reset(); });
  }

  UpstreamOptions options_;
  NullObserver observer_;
  ResponseTimeEstimate response_time_;
  FakeHttpPool* pool_ = nullptr;
  std::unique_ptr<Transport> transport_;
  Outcomes outcomes_;
};

TEST_F(TransportTest, ACallAvoidsTheUrlItsLastAttemptFailedOn) {
  Create(UpstreamOptions{});
  Run([&] {
    LayerCall call = CallOf("getSlot");
    call.avoid_url = 0;
    transport_->Start(1, std::move(call), outcomes_.Slot(0));
    ASSERT_EQ(pool_->sent.size(), 1u);
    EXPECT_EQ(pool_->sent[0].request.url, "http://fallback");
    pool_->Answer(0, absl::UnavailableError("connection reset"));
    ASSERT_EQ(outcomes_.ended[0], 1);
    EXPECT_TRUE(outcomes_.outcomes[0].retryable);
    EXPECT_EQ(outcomes_.outcomes[0].failed_url, 1u);
  });
}

TEST_F(TransportTest, ABatchThatIsPushedBackThrottlesOnceAndWaitingCallsCanBeCancelled) {
  UpstreamOptions options;
  options.max_connections = 1;
  options.batch = BatchOptions{};
  Create(std::move(options));
  Run([&] {
    for (int i = 0; i < 4; ++i) transport_->Start(1 + i, CallOf("getSlot"), outcomes_.Slot(i));
    ASSERT_EQ(pool_->sent.size(), 1u) << "the others wait for the connection";
    transport_->Cancel(4);
    ASSERT_EQ(outcomes_.ended[3], 1);
    EXPECT_EQ(outcomes_.outcomes[3].result.status().code(), absl::StatusCode::kCancelled);
    transport_->Cancel(1);
    EXPECT_EQ(outcomes_.ended[0], 0) << "already sent";
    pool_->Answer(0, Result("1"));
    ASSERT_EQ(pool_->sent.size(), 2u) << "calls 2 and 3 leave together";
    EXPECT_EQ(observer_.batches, std::vector<size_t>{2});
    pool_->Answer(1, Http(429, "", absl::Seconds(2)));
    ASSERT_EQ(outcomes_.ended[1], 1);
    ASSERT_EQ(outcomes_.ended[2], 1);
    EXPECT_TRUE(outcomes_.outcomes[1].throttled);
    EXPECT_EQ(outcomes_.outcomes[1].retry_after, absl::Seconds(2));
    EXPECT_FALSE(outcomes_.outcomes[2].throttled) << "one pushback per request";
    EXPECT_EQ(observer_.throttled, 1);
  });
}

// A request may repeat only when every call it carries may.
TEST_F(TransportTest, ARequestMayRepeatOnlyWhenEveryCallInItMay) {
  UpstreamOptions options;
  options.max_connections = 1;
  options.batch = BatchOptions{};
  Create(std::move(options));
  Run([&] {
    const auto call = [](bool may_repeat) {
      LayerCall call = CallOf("getSlot");
      call.may_repeat = may_repeat;
      return call;
    };
    transport_->Start(1, call(true), outcomes_.Slot(0));
    transport_->Start(2, call(true), outcomes_.Slot(1));
    transport_->Start(3, call(true), outcomes_.Slot(2));
    ASSERT_EQ(pool_->sent.size(), 1u);
    EXPECT_TRUE(pool_->sent[0].request.may_repeat) << "alone";
    pool_->Answer(0, Result("1"));
    ASSERT_EQ(pool_->sent.size(), 2u) << "calls 2 and 3 leave together";
    EXPECT_TRUE(pool_->sent[1].request.may_repeat) << "a batch of calls that may";
    transport_->Start(4, call(true), outcomes_.Slot(3));
    transport_->Start(5, call(false), outcomes_.Slot(4));
    pool_->Answer(1, Http(500, ""));
    ASSERT_EQ(pool_->sent.size(), 3u) << "calls 4 and 5 leave together";
    EXPECT_FALSE(pool_->sent[2].request.may_repeat) << "call 5 may not";
    pool_->Answer(2, Http(500, ""));
    transport_->Start(6, call(false), outcomes_.Slot(5));
    ASSERT_EQ(pool_->sent.size(), 4u);
    EXPECT_FALSE(pool_->sent[3].request.may_repeat);
    pool_->Answer(3, Result("6"));
  });
  EXPECT_EQ(outcomes_.ended, (std::vector<int>{1, 1, 1, 1, 1, 1}));
}

}  // namespace
}  // namespace switchboard::upstream
