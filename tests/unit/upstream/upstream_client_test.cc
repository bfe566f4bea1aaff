#include "server/upstream/upstream_client.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/http/http_pool.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/upstream/upstream_client_fixture.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST_F(UpstreamClientTest, CacheHitsAndCoalescedCallsTakeNothingFromTheClientsQuota) {
  // One request per second, a burst of one: the client's only request now.
  std::unique_ptr<ratelimit::ClientQuotas> quotas;
  Run([&] {
    quotas = std::make_unique<ratelimit::ClientQuotas>(
        dispatcher_, absl::flat_hash_map<std::string, double>{{"worker", 1}});
  });
  UpstreamOptions options = Unlimited();
  options.cache_ttl = {{"getGenesisHash", absl::Seconds(60)}};
  Create(options, quotas.get());
  const size_t first = Start("getGenesisHash");
  const size_t joined = Start("getGenesisHash");  // Coalesced with the first.
  Respond(0, Result(R"("hash")"));
  const size_t cached = Start("getGenesisHash");
  const size_t over = Start("getSlot");
  EXPECT_EQ(SentCount(), 1u);
  EXPECT_THAT(AnswerOf(first), IsOk());
  EXPECT_TRUE(AnswerOf(joined)->coalesced);
  EXPECT_TRUE(AnswerOf(cached)->cached);
  EXPECT_THAT(AnswerOf(over), StatusIs(absl::StatusCode::kResourceExhausted,
                                       HasSubstr("client worker is over its quota")));
  EXPECT_EQ(RetryAfter(AnswerOf(over).status()), absl::Seconds(1));
  Run([&] { client_.reset(); });
  Run([&] { quotas.reset(); });
}

TEST_F(UpstreamClientTest, ResultAndErrorComeBackByteForByte) {
  Create(Unlimited());
  const size_t slot = Start("getBalance", R"(["Abc"])");
  Settle();
  Run([&] {
    EXPECT_EQ(pool_->sent[0].request.body,
              R"({"jsonrpc":"2.0","id":1,"method":"getBalance","params":["Abc"]})");
    EXPECT_EQ(pool_->sent[0].request.url, "http://primary");
  });
  Respond(0, Result(R"({"context":{"slot":1},"value":18446744073709551615})"));
  ASSERT_THAT(AnswerOf(slot), IsOk());
  EXPECT_EQ(AnswerOf(slot)->kind, Answer::Kind::kResult);
  EXPECT_EQ(AnswerOf(slot)->json, R"({"context":{"slot":1},"value":18446744073709551615})");
  EXPECT_EQ(AnswerOf(slot)->upstream_attempts, 1u);

  const size_t failing = Start("getFoo");
  Respond(1, Http(200, R"({"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope"}})"));
  EXPECT_EQ(AnswerOf(failing)->kind, Answer::Kind::kError);
  EXPECT_EQ(AnswerOf(failing)->json, R"({"code":-32601,"message":"nope"})");
}

TEST_F(UpstreamClientTest, AMethodNotOnTheRetryListIsNeverSentTwice) {
  UpstreamOptions options = Unlimited();
  options.max_attempts = 3;
  options.retry_methods = {"getSlot"};
  Create(options);
  const size_t unavailable = Start("sendTransaction", R"(["tx"])");
  Respond(0, absl::UnavailableError("connection reset"));
  const size_t server_error = Start("sendTransaction", R"(["tx2"])");
  Respond(1, Http(503, "busy"));
  const size_t throttled = Start("sendTransaction", R"(["tx3"])");
  Respond(2, Http(429, "", absl::Seconds(2)));
  clock_.Advance(absl::Seconds(10));
  Settle();
  EXPECT_EQ(SentCount(), 3u);
  EXPECT_THAT(AnswerOf(unavailable), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(AnswerOf(server_error),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("answered HTTP 503")));
  EXPECT_THAT(AnswerOf(throttled), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryAfter(AnswerOf(throttled).status()), absl::Seconds(2));
  EXPECT_EQ(observer_.throttled, 1);
}

TEST_F(UpstreamClientTest, ARequestThatNeverReachedItsUrlGoesToTheNextAtOnceWhateverItsMethod) {
  Create(Unlimited());  // No method may be retried.
  const auto never_sent = [] {
    absl::Status status = absl::UnavailableError("connection refused");
    status.SetPayload(http::kRequestNeverSentPayload, absl::Cord());
    return status;
  };
  const size_t submitted = Start("sendTransaction", R"(["tx"])");
  Respond(0, never_sent());
  ASSERT_EQ(SentCount(), 2u) << "no backoff";
  EXPECT_EQ(SentUrl(1), "http://fallback");
  Respond(1, Result(R"("sig")"));
  ASSERT_THAT(AnswerOf(submitted), IsOk());
  EXPECT_EQ(AnswerOf(submitted)->upstream_attempts, 2u);
  // Once per URL: when the fallback was not reached either, the call fails.
  const size_t unreachable = Start("sendTransaction", R"(["tx2"])");
  Respond(2, never_sent());
  Respond(3, never_sent());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(SentCount(), 4u);
  EXPECT_THAT(AnswerOf(unreachable), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(UpstreamClientTest, ARetryMethodIsSentAgainToAnotherUrlAfterBackoff) {
  UpstreamOptions options = Unlimited();
  options.max_attempts = 3;
  options.retry_methods = {"getSlot"};
  options.retry_backoff = absl::Milliseconds(50);
  Create(options);
  const size_t slot = Start("getSlot");
  Respond(0, absl::UnavailableError("connection refused"));
  EXPECT_EQ(SentCount(), 1u) << "waits for the backoff";
  clock_.Advance(absl::Milliseconds(50));
  Settle();
  ASSERT_EQ(SentCount(), 2u);
  EXPECT_EQ(SentUrl(1), "http://fallback");
  Respond(1, Result("42"));
  ASSERT_THAT(AnswerOf(slot), IsOk());
  EXPECT_EQ(AnswerOf(slot)->json, "42");
  EXPECT_EQ(AnswerOf(slot)->upstream_attempts, 2u);
}

TEST_F(UpstreamClientTest, AnOpenBreakerSendsCallsToTheFallbackUntilItsProbe) {
  UpstreamOptions options = Unlimited();
  options.breaker_failure_threshold = 2;
  options.breaker_open_time = absl::Seconds(5);
  Create(options);
  Start("getBalance");
  Respond(0, absl::UnavailableError("connection refused"));
  Start("getBalance");
  Respond(1, absl::UnavailableError("connection refused"));
  const size_t third = Start("getBalance");
  EXPECT_EQ(SentUrl(2), "http://fallback");
  Respond(2, Result("7"));
  EXPECT_THAT(AnswerOf(third), IsOk());

  clock_.Advance(absl::Seconds(5));
  Start("getBalance");
  EXPECT_EQ(SentUrl(3), "http://primary") << "the probe";
  Respond(3, Result("7"));
  Start("getBalance");
  EXPECT_EQ(SentUrl(4), "http://primary") << "closed again";
}

TEST_F(UpstreamClientTest, IdenticalReadCallsInFlightShareOneRequest) {
  Create(Unlimited());
  std::vector<size_t> slots;
  for (int i = 0; i < 100; ++i) slots.push_back(Start("getSlot"));
  const size_t other_params = Start("getSlot", R"([{"commitment":"finalized"}])");
  EXPECT_EQ(SentCount(), 2u);
  Respond(0, Result("1234"));
  int coalesced = 0;
  std::vector<size_t> batches;
  for (size_t slot : slots) {
    ASSERT_THAT(AnswerOf(slot), IsOk());
    EXPECT_EQ(AnswerOf(slot)->json, "1234");
    coalesced += AnswerOf(slot)->coalesced ? 1 : 0;
  }
  EXPECT_EQ(coalesced, 99);
  EXPECT_EQ(observer_.coalesced, 99);
  EXPECT_THAT(AnswerOf(other_params), StatusIs(absl::StatusCode::kUnknown)) << "still in flight";
  Start("getSlot");
  EXPECT_EQ(SentCount(), 3u) << "a call after the answer makes its own request";
}

TEST_F(UpstreamClientTest, TransactionSubmissionsAndRawBodiesAreNeverCoalesced) {
  UpstreamOptions options = Unlimited();
  options.never_coalesce = {"getHealth"};
  Create(options);
  for (int i = 0; i < 3; ++i) Start("sendTransaction", R"(["same"])");
  for (int i = 0; i < 3; ++i) Start("eth_sendRawTransaction", R"(["0xf8"])");
  for (int i = 0; i < 2; ++i) Start("getHealth");
  for (int i = 0; i < 2; ++i) Start("", "", R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})");
  EXPECT_EQ(SentCount(), 10u);
}

TEST_F(UpstreamClientTest, ACachedMethodIsAnsweredFromTheCacheWithinItsTtl) {
  UpstreamOptions options = Unlimited();
  options.cache_ttl = {{"getGenesisHash", absl::Seconds(60)}};
  Create(options);
  const size_t first = Start("getGenesisHash");
  Respond(0, Result(R"("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d")"));
  ASSERT_THAT(AnswerOf(first), IsOk());
  EXPECT_FALSE(AnswerOf(first)->cached);
  const size_t second = Start("getGenesisHash");
  ASSERT_THAT(AnswerOf(second), IsOk());
  EXPECT_TRUE(AnswerOf(second)->cached);
  EXPECT_EQ(AnswerOf(second)->json, R"("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d")");
  EXPECT_EQ(AnswerOf(second)->upstream_attempts, 0u);
  EXPECT_EQ(SentCount(), 1u);
  clock_.Advance(absl::Seconds(60));
  Start("getGenesisHash");
  EXPECT_EQ(SentCount(), 2u) << "expired";
  EXPECT_EQ(observer_.cache_hits, 1);
}

TEST_F(UpstreamClientTest, ARawBatchPassesThroughAndCostsEachOfItsMethods) {
  UpstreamOptions options;
  options.method_cost = {{"getProgramAccounts", 10}};
  options.admission.rate = 100;
  options.admission.burst = 11;
  Create(options);
  const std::string batch =
      R"([{"jsonrpc":"2.0","id":1,"method":"getProgramAccounts"},{"jsonrpc":"2.0","id":2,"method":"getSlot"}])";
  const size_t raw = Start("", "", batch);
  ASSERT_EQ(SentCount(), 1u) << "a cost of 11 fits the burst of 11";
  Run([&] { EXPECT_EQ(pool_->sent[0].request.body, batch); });
  Respond(0, Http(200, R"([{"id":1,"result":[]},{"id":2,"result":5}])"));
  EXPECT_EQ(AnswerOf(raw)->kind, Answer::Kind::kRawBody);
  EXPECT_EQ(AnswerOf(raw)->json, R"([{"id":1,"result":[]},{"id":2,"result":5}])");

  Start("getSlot");
  EXPECT_EQ(SentCount(), 1u) << "the bucket is empty for 10 ms";
  clock_.Advance(absl::Milliseconds(10));
  Settle();
  EXPECT_EQ(SentCount(), 2u);
}

TEST_F(UpstreamClientTest, ARawBodyWithoutAMethodIsRefused) {
  Create(Unlimited());
  const size_t raw = Start("", "", R"({"jsonrpc":"2.0","id":1})");
  EXPECT_THAT(AnswerOf(raw), StatusIs(absl::StatusCode::kInvalidArgument,
                                      "raw_body: a request has no string method"));
  EXPECT_EQ(SentCount(), 0u);
}

TEST_F(UpstreamClientTest, CancelWithdrawsACallWaitingForAdmission) {
  UpstreamOptions options;
  options.admission.rate = 1;
  options.admission.burst = 1;
  options.coalescing = false;
  Create(options);
  Start("getSlot");
  const size_t waiting = Start("getSlot");
  EXPECT_EQ(SentCount(), 1u);
  Run([&] { client_->Cancel(waiting + 1); });
  EXPECT_THAT(AnswerOf(waiting), StatusIs(absl::StatusCode::kCancelled));
  clock_.Advance(absl::Seconds(2));
  Settle();
  EXPECT_EQ(SentCount(), 1u);
}

TEST_F(UpstreamClientTest, ACallWaitsForAdmissionOnlyWhileTimeIsLeftForItsRequest) {
  UpstreamOptions options;
  options.admission.rate = 10;  // A call every 100 ms.
  options.admission.burst = 1;
  options.coalescing = false;
  Create(options);
  Start("getSlot");
  ASSERT_EQ(SentCount(), 1u);  // Sent now, at once.
  clock_.Advance(absl::Milliseconds(40));
  // The first response time: a call now keeps 20 ms + 40 ms + 4 x 20 ms =
  // 140 ms for its request (RFC 6298's estimator plus a floor).
  Respond(0, Result("1"));
  // The limiter admits one call 60 ms from now, the next 160 ms from now.
  // Each call may wait until its deadline less that reserve, but at least
  // half its time: 90 ms for this one, which is queued...
  const size_t admitted_in_60ms = Start("getSlot", "", "", absl::Milliseconds(180));
  // ...110 ms for this one, which would be admitted with 90 ms left: refused.
  const size_t refused = Start("getSlot", "", "", absl::Milliseconds(250));
  // 260 ms for this one: queued.
  const size_t admitted_in_160ms = Start("getSlot", "", "", absl::Milliseconds(400));
  EXPECT_THAT(AnswerOf(refused), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryAfter(AnswerOf(refused).status()), absl::Milliseconds(160));
  EXPECT_EQ(SentCount(), 1u);
  clock_.Advance(absl::Milliseconds(60));
  EXPECT_EQ(SentCount(), 2u);
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_EQ(SentCount(), 3u);
  Respond(1, Result("2"));
  Respond(2, Result("3"));
  EXPECT_THAT(AnswerOf(admitted_in_60ms), IsOk());
  EXPECT_THAT(AnswerOf(admitted_in_160ms), IsOk());
}

TEST_F(UpstreamClientTest, WhileTheConnectionsAreBusyCallsWaitInAdmissionNotInThePool) {
  UpstreamOptions options;
  options.admission.rate = 100;
  options.admission.burst = 2;
  options.admission.max_in_flight = 2;
  options.coalescing = false;
  Create(options);
  for (int i = 0; i < 5; ++i) Start("getSlot");
  EXPECT_EQ(SentCount(), 2u);
  // The provider is slow: the limiter would let 10 more through meanwhile.
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_EQ(SentCount(), 2u);
  // An answer, or a failure, frees a place for the next call.
  Respond(0, Result("1"));
  EXPECT_EQ(SentCount(), 3u);
  Respond(1, Http(503, "busy"));
  EXPECT_EQ(SentCount(), 4u);
  // A free place, but the limiter spaces the calls: the next in 10 ms.
  Respond(2, Result("3"));
  EXPECT_EQ(SentCount(), 4u);
  clock_.Advance(absl::Milliseconds(10));
  EXPECT_EQ(SentCount(), 5u);
  Respond(3, Result("4"));
  Respond(4, Result("5"));
  EXPECT_THAT(AnswerOf(0), IsOk());
  EXPECT_THAT(AnswerOf(1), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(AnswerOf(4), IsOk());
}

// The same cap follows the protocol the provider answers in: HTTP/2 carries
// http2_streams_per_connection requests per connection, HTTP/1.1 one.
TEST_F(UpstreamClientTest, TheInFlightCapScalesWhileAUrlAnswersOverHttp2) {
  UpstreamOptions options;
  options.urls = {"https://primary"};
  options.admission.rate = 1000;
  options.admission.burst = 10;
  options.max_connections = 1;
  options.admission.max_in_flight = 1;
  options.http2_streams_per_connection = 3;
  options.coalescing = false;
  Create(options);
  for (int i = 0; i < 6; ++i) Start("getSlot");
  EXPECT_EQ(SentCount(), 1u);  // Unknown protocol: one request per connection.
  http::Response over_http2 = Result("1");
  over_http2.http_version = 2;
  Respond(0, over_http2);
  EXPECT_EQ(SentCount(), 4u);  // Three in flight over the one connection.
  Respond(1, Result("2"));     // Back on HTTP/1.1 (ALPN chose it on a new connection).
  Respond(2, Result("3"));
  Respond(3, Result("4"));
  EXPECT_EQ(SentCount(), 5u);
  Respond(4, Result("5"));
  EXPECT_EQ(SentCount(), 6u);
  Respond(5, Result("6"));
  for (size_t call = 0; call < 6; ++call) EXPECT_THAT(AnswerOf(call), IsOk());
}

TEST_F(UpstreamClientTest, DestroyingTheClientAnswersOpenCallsWithUnavailable) {
  Create(Unlimited());
  const size_t open = Start("getSlot");
  Run([&] { client_.reset(); });
  EXPECT_THAT(AnswerOf(open),
              StatusIs(absl::StatusCode::kUnavailable, "upstream solana is shutting down"));
}

}  // namespace
}  // namespace switchboard::upstream
