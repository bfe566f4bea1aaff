// Auto-batching in the upstream client: calls admitted while every
// connection to their URL is busy leave together as one JSON-RPC batch, and
// each keeps its own answer, retry rules and failure.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class UpstreamBatchingTest : public UpstreamClientTest {
 protected:
  // One URL that carries one request at a time, batches of up to 3 calls.
  static UpstreamOptions Batching() {
    UpstreamOptions options = Unlimited();
    options.urls = {"http://primary"};
    options.max_connections = 1;
    options.batch.emplace().max_calls = 3;
    return options;
  }

  // The JSON-RPC ids of request `index`, in order (one for a single call),
  // from the `"id":N` that BuildRequest writes first in each request.
  std::vector<uint64_t> SentIds(size_t index) {
    const std::string body = SentBody(index);
    std::vector<uint64_t> ids;
    for (size_t at = body.find(R"("id":)"); at != std::string::npos;
         at = body.find(R"("id":)", at + 1)) {
      ids.push_back(std::stoull(body.substr(at + 5)));
    }
    return ids;
  }

  static std::string Item(uint64_t id, absl::string_view result) {
    return absl::StrCat(R"({"jsonrpc":"2.0","id":)", id, R"(,"result":)", result, "}");
  }
};

TEST_F(UpstreamBatchingTest, AUrlAnsweringOverHttp2CarriesMoreRequestsBeforeCallsWait) {
  UpstreamOptions options = Batching();
  options.http2_streams_per_connection = 2;
  Create(options);
  const auto over_http2 = [](absl::string_view result) {
    http::Response response = Result(result);
    response.http_version = 2;
    return response;
  };
  Start("getSlot", "[1]");
  Start("getSlot", "[2]");  // One request per connection until HTTP/2 shows: waits.
  ASSERT_EQ(SentCount(), 1u);
  Respond(0, over_http2("1"));
  ASSERT_EQ(SentCount(), 2u);
  Start("getSlot", "[3]");  // Two streams: goes at once beside the second.
  ASSERT_EQ(SentCount(), 3u);
  Start("getSlot", "[4]");
  Start("getSlot", "[5]");
  ASSERT_EQ(SentCount(), 3u);  // Both streams busy: these wait, to leave together.
  Respond(1, over_http2("2"));
  ASSERT_EQ(SentCount(), 4u);
  EXPECT_EQ(SentIds(3).size(), 2u);
  // An answer over HTTP/1.1 (ALPN chose it on a new connection): one
  // request per connection again.
  Respond(2, Result("3"));
  Start("getSlot", "[6]");
  ASSERT_EQ(SentCount(), 4u);
  Respond(3, Http(200,
                  absl::StrCat("[", Item(SentIds(3)[0], "4"), ",", Item(SentIds(3)[1], "5"), "]")));
  ASSERT_EQ(SentCount(), 5u);
}

TEST_F(UpstreamBatchingTest, ALoneCallGoesAtOnceAndAlone) {
  Create(Batching());
  const size_t call = Start("getSlot", "[1]");
  ASSERT_EQ(SentCount(), 1u);
  EXPECT_EQ(SentBody(0).front(), '{');
  Respond(0, Result("7"));
  EXPECT_EQ(AnswerOf(call)->json, "7");
  EXPECT_FALSE(AnswerOf(call)->batched);
  EXPECT_TRUE(observer_.batches.empty());
}

TEST_F(UpstreamBatchingTest, CallsWhileTheConnectionIsBusyLeaveTogetherAndAnswersSplitById) {
  Create(Batching());
  const size_t first = Start("getSlot", "[0]");
  const size_t a = Start("getBalance", R"(["a"])");
  const size_t b = Start("getBalance", R"(["b"])");
  const size_t c = Start("getBalance", R"(["c"])");
  const size_t d = Start("getBalance", R"(["d"])");
  ASSERT_EQ(SentCount(), 1u);  // The others wait for the connection.
  Respond(0, Result("0"));
  ASSERT_EQ(SentCount(), 2u);
  const std::vector<uint64_t> ids = SentIds(1);
  ASSERT_EQ(ids.size(), 3u);  // max_calls: d waits for the next batch.
  EXPECT_EQ(SentBody(1).front(), '[');
  EXPECT_THAT(observer_.batches, ElementsAre(3u));
  // Answered in reverse order, with values that tell the calls apart
  // byte for byte.
  Respond(1, Http(200, absl::StrCat("[", Item(ids[2], R"({"c":1.50})"), ",", Item(ids[1], R"("b")"),
                                    ",", Item(ids[0], "18446744073709551615"), "]")));
  EXPECT_THAT(AnswerOf(first), IsOk());
  EXPECT_EQ(AnswerOf(a)->json, "18446744073709551615");
  EXPECT_EQ(AnswerOf(b)->json, R"("b")");
  EXPECT_EQ(AnswerOf(c)->json, R"({"c":1.50})");
  EXPECT_TRUE(AnswerOf(a)->batched);
  // The last one went alone once the batch's connection was free.
  ASSERT_EQ(SentCount(), 3u);
  EXPECT_EQ(SentBody(2).front(), '{');
  Respond(2, Result("4"));
  EXPECT_EQ(AnswerOf(d)->json, "4");
}

TEST_F(UpstreamBatchingTest, AnItemMissingFromTheAnswerFailsOnlyItsCall) {
  Create(Batching());
  Start("getSlot");
  const size_t a = Start("getBalance", "[1]");
  const size_t b = Start("getBalance", "[2]");
  Respond(0, Result("0"));
  const std::vector<uint64_t> ids = SentIds(1);
  ASSERT_EQ(ids.size(), 2u);
  Respond(1, Http(200, absl::StrCat("[", Item(ids[1], "2"), "]")));
  EXPECT_THAT(AnswerOf(a), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no response")));
  EXPECT_EQ(AnswerOf(b)->json, "2");
  EXPECT_EQ(SentCount(), 2u);  // getBalance is not on retry.methods.
}

TEST_F(UpstreamBatchingTest, AProviderThatRefusesBatchesFailsEachCallClearly) {
  Create(Batching());
  Start("getSlot");
  const size_t a = Start("getBalance", "[1]");
  const size_t b = Start("getBalance", "[2]");
  Respond(0, Result("0"));
  Respond(1, Http(200, R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no"}})"));
  EXPECT_THAT(AnswerOf(a),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not a list of responses")));
  EXPECT_THAT(AnswerOf(b), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(UpstreamBatchingTest, ABatchLevelFailureFollowsEachCallsRetryRules) {
  UpstreamOptions options = Batching();
  options.max_attempts = 3;
  options.retry_methods = {"getBalance"};
  options.max_connections = 2;
  Create(options);
  Start("getSlot");
  const size_t submit = Start("sendTransaction", R"(["tx"])");
  const size_t read = Start("getBalance", "[1]");  // Both slots are busy: these wait.
  const size_t other = Start("getBlockHeight");
  ASSERT_EQ(SentCount(), 2u);
  Respond(0, Result("0"));
  ASSERT_EQ(SentCount(), 3u);
  ASSERT_EQ(SentIds(2).size(), 2u);  // getBalance and getBlockHeight.
  Respond(2, Http(503, "busy"));
  EXPECT_THAT(AnswerOf(other), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 503")));
  Respond(1, Http(503, "busy"));
  EXPECT_THAT(AnswerOf(submit), StatusIs(absl::StatusCode::kUnavailable));
  clock_.Advance(absl::Seconds(1));  // The retry's backoff.
  ASSERT_EQ(SentCount(), 4u);
  EXPECT_THAT(SentBody(3), HasSubstr("getBalance"));
  Respond(3, Result("9"));
  EXPECT_EQ(AnswerOf(read)->json, "9");
  EXPECT_EQ(AnswerOf(read)->upstream_attempts, 2u);
  EXPECT_EQ(SentCount(), 4u);  // sendTransaction and getBlockHeight went once.
}

TEST_F(UpstreamBatchingTest, A429OnABatchThrottlesOnceAndFailsEveryCall) {
  Create(Batching());
  Start("getSlot");
  const size_t a = Start("getBalance", "[1]");
  const size_t b = Start("getBalance", "[2]");
  Respond(0, Result("0"));
  Respond(1, Http(429, "slow down", absl::Seconds(2)));
  EXPECT_THAT(AnswerOf(a), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryAfter(AnswerOf(b).status()), absl::Seconds(2));
  EXPECT_EQ(observer_.throttled, 1);
}

TEST_F(UpstreamBatchingTest, AFailedBatchCountsOnceAgainstTheUrlsBreaker) {
  UpstreamOptions options = Batching();
  options.urls = {"http://primary", "http://fallback"};
  options.breaker_failure_threshold = 2;
  Create(options);
  Start("getSlot");
  Start("getBalance", "[1]");
  Start("getBalance", "[2]");
  Start("getBalance", "[3]");
  Respond(0, Result("0"));
  ASSERT_EQ(SentIds(1).size(), 3u);
  Respond(1, Http(500, "oops"));
  // One failure of two: the primary's breaker is still closed.
  Start("getSlot");
  ASSERT_EQ(SentCount(), 3u);
  EXPECT_EQ(SentUrl(2), "http://primary");
}

TEST_F(UpstreamBatchingTest, MethodsOutsideTheBatchListGoAlone) {
  UpstreamOptions options = Batching();
  options.batch->except = {"getProgramAccounts"};
  options.never_coalesce = {"getRecent"};
  Create(options);
  Start("getSlot");
  Start("getProgramAccounts", R"(["p"])");
  Start("getRecent");
  Start("eth_sendRawTransaction", R"(["0x"])");
  EXPECT_EQ(SentCount(), 4u);
  EXPECT_TRUE(observer_.batches.empty());
}

TEST_F(UpstreamBatchingTest, AMethodsListBatchesOnlyThoseMethods) {
  UpstreamOptions options = Batching();
  options.batch->methods = {"sendTransaction"};
  Create(options);
  Start("getSlot");
  Start("getBalance", "[1]");  // Not listed: goes at once.
  Start("sendTransaction", R"(["a"])");
  Start("sendTransaction", R"(["b"])");
  EXPECT_EQ(SentCount(), 2u);
  Respond(0, Result("0"));
  Respond(1, Result("1"));
  ASSERT_EQ(SentCount(), 3u);
  EXPECT_EQ(SentIds(2).size(), 2u);
}

TEST_F(UpstreamBatchingTest, MaxBytesSplitsBatches) {
  UpstreamOptions options = Batching();
  options.batch->max_calls = 100;
  options.batch->max_bytes = 1024;
  Create(options);
  Start("getSlot");
  for (int i = 0; i < 4; ++i) {
    Start("getBalance", absl::StrCat("[\"", std::string(400, 'x'), "\",", i, "]"));
  }
  Respond(0, Result("0"));
  ASSERT_EQ(SentCount(), 2u);
  EXPECT_EQ(SentIds(1).size(), 2u);
  EXPECT_LE(SentBody(1).size(), 1024u);
}

TEST_F(UpstreamBatchingTest, ACallWaitingForABatchCanBeCancelled) {
  Create(Batching());
  Start("getSlot");
  const size_t cancelled = Start("getBalance", "[1]");
  const size_t kept = Start("getBalance", "[2]");
  Run([&] { client_->Cancel(cancelled + 1); });
  EXPECT_THAT(AnswerOf(cancelled), StatusIs(absl::StatusCode::kCancelled));
  Respond(0, Result("0"));
  ASSERT_EQ(SentCount(), 2u);
  EXPECT_EQ(SentIds(1).size(), 1u);
  EXPECT_THAT(SentBody(1), HasSubstr("[2]"));
  Respond(1, Result("2"));
  EXPECT_THAT(AnswerOf(kept), IsOk());
}

TEST_F(UpstreamBatchingTest, ACallWhoseDeadlinePassedWhileWaitingIsNotSent) {
  Create(Batching());
  Start("getSlot");
  const size_t late = Start("getBalance", "[1]", "", absl::Milliseconds(100));
  clock_.Advance(absl::Milliseconds(200));
  Respond(0, Result("0"));
  EXPECT_THAT(AnswerOf(late), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(SentCount(), 1u);
}

TEST_F(UpstreamBatchingTest, AtMostMaxQueueDepthCallsWaitTheRestGoAlone) {
  UpstreamOptions options = Batching();
  options.admission.max_queue_depth = 2;
  Create(options);
  Start("getSlot");
  Start("getBalance", "[1]");
  Start("getBalance", "[2]");
  EXPECT_EQ(SentCount(), 1u);
  EXPECT_EQ(observer_.batch_waiting, 2u);
  Start("getBalance", "[3]");  // Over the bound: to the pool at once.
  EXPECT_EQ(SentCount(), 2u);
  EXPECT_THAT(SentBody(1), HasSubstr("[3]"));
  Respond(0, Result("0"));
  Respond(1, Result("3"));
  ASSERT_EQ(SentCount(), 3u);
  EXPECT_EQ(SentIds(2).size(), 2u);
  EXPECT_EQ(observer_.batch_waiting, 0u);
}

}  // namespace
}  // namespace switchboard::upstream
