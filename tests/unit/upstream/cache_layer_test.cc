#include "server/upstream/cache_layer.h"

#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "tests/unit/upstream/fake_call_layer.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

class CacheLayerTest : public ::testing::Test {
 protected:
  CacheLayerTest() { options_.cache_ttl = {{"getGenesisHash", absl::Seconds(60)}}; }

  UpstreamOptions options_;
  common::SimulatedClock clock_{absl::FromUnixSeconds(1000)};
  NullObserver observer_;
  FakeCallLayer next_;
  CacheLayer layer_{options_, clock_, observer_, next_};
  Outcomes outcomes_;
};

TEST_F(CacheLayerTest, AnAnswerIsKeptForItsMethodsTtl) {
  layer_.Start(1, CallOf("getGenesisHash"), outcomes_.Slot(0));
  ASSERT_EQ(next_.started.size(), 1u);
  next_.End(0, ResultOutcome(R"("hash")"));
  EXPECT_FALSE(outcomes_.outcomes[0].result->cached);

  layer_.Start(2, CallOf("getGenesisHash"), outcomes_.Slot(1));
  EXPECT_EQ(next_.started.size(), 1u) << "answered from the cache";
  ASSERT_EQ(outcomes_.ended[1], 1) << "inside Start()";
  EXPECT_TRUE(outcomes_.outcomes[1].result->cached);
  EXPECT_EQ(outcomes_.outcomes[1].result->json, R"("hash")");
  EXPECT_EQ(observer_.cache_hits, 1);

  clock_.Advance(absl::Seconds(60));
  layer_.Start(3, CallOf("getGenesisHash"), outcomes_.Slot(2));
  EXPECT_EQ(next_.started.size(), 2u) << "expired";
}

TEST_F(CacheLayerTest, ErrorsSharedAnswersAndMethodsWithoutTtlAreNotKept) {
  layer_.Start(1, CallOf("getGenesisHash"), outcomes_.Slot(0));
  CallOutcome error = ResultOutcome(R"({"code":-32000})");
  error.result->kind = Answer::Kind::kError;
  next_.End(0, std::move(error));
  layer_.Start(2, CallOf("getGenesisHash"), outcomes_.Slot(1));
  CallOutcome shared = ResultOutcome(R"("hash")");
  shared.result->coalesced = true;
  next_.End(1, std::move(shared));
  layer_.Start(3, CallOf("getSlot"), outcomes_.Slot(2));
  next_.End(2, ResultOutcome("7"));
  layer_.Start(4, CallOf("getGenesisHash"), outcomes_.Slot(3));
  layer_.Start(5, CallOf("getSlot"), outcomes_.Slot(4));
  EXPECT_EQ(next_.started.size(), 5u);
  EXPECT_EQ(observer_.cache_hits, 0);
}

TEST_F(CacheLayerTest, CancelReachesTheNextLayer) {
  layer_.Start(1, CallOf("getSlot"), outcomes_.Slot(0));
  layer_.Cancel(1);
  EXPECT_EQ(next_.cancelled, std::vector<CallLayer::CallId>{1});
}

}  // namespace
}  // namespace switchboard::upstream
