#include "server/upstream/response_classification.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

const ResponseSource kSource{"solana", "https://rpc.example/?api-key=SECRET"};

absl::StatusOr<http::Response> Http(int status, std::string body = "",
                                    std::optional<absl::Duration> retry_after = std::nullopt) {
  return http::Response{status, std::move(body), retry_after};
}

TEST(ResponseClassificationTest, AResultIsServedAndKeptByteForByte) {
  const Verdict verdict =
      ClassifyResponse(Http(200, R"({"jsonrpc":"2.0","id":1,"result":1.50})"), false, kSource);
  EXPECT_EQ(verdict.outcome, "ok");
  EXPECT_EQ(verdict.url_health, Verdict::UrlHealth::kUp);
  EXPECT_TRUE(verdict.served);
  EXPECT_FALSE(verdict.retryable);
  ASSERT_TRUE(verdict.result.ok());
  EXPECT_EQ(verdict.result->kind, Answer::Kind::kResult);
  EXPECT_EQ(verdict.result->json, "1.50");
}

TEST(ResponseClassificationTest, AJsonRpcErrorIsTheAnswer) {
  const Verdict verdict = ClassifyResponse(
      Http(200, R"({"id":1,"error":{"code":-32602,"message":"bad params"}})"), false, kSource);
  EXPECT_EQ(verdict.outcome, "rpc_error");
  EXPECT_TRUE(verdict.served);
  EXPECT_FALSE(verdict.throttled);
  ASSERT_TRUE(verdict.result.ok());
  EXPECT_EQ(verdict.result->kind, Answer::Kind::kError);
  EXPECT_EQ(verdict.result->json, R"({"code":-32602,"message":"bad params"})");
}

TEST(ResponseClassificationTest, AJsonRpcRateLimitErrorThrottlesAndMayBeRetried) {
  const Verdict verdict = ClassifyResponse(
      Http(200, R"({"id":1,"error":{"code":-32005,"message":"slow"}})"), false, kSource);
  EXPECT_EQ(verdict.outcome, "rpc_throttled");
  EXPECT_TRUE(verdict.throttled);
  EXPECT_TRUE(verdict.retryable);
  EXPECT_FALSE(verdict.served);
  ASSERT_TRUE(verdict.result.ok());  // The error object, if the call ends here.
  EXPECT_EQ(verdict.result->kind, Answer::Kind::kError);
}

TEST(ResponseClassificationTest, Http429ThrottlesWithTheProvidersDelay) {
  const Verdict verdict = ClassifyResponse(Http(429, "", absl::Seconds(3)), false, kSource);
  EXPECT_EQ(verdict.outcome, "http_429");
  EXPECT_EQ(verdict.url_health, Verdict::UrlHealth::kUp);
  EXPECT_TRUE(verdict.throttled);
  EXPECT_EQ(verdict.retry_after, absl::Seconds(3));
  EXPECT_THAT(verdict.result.status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("HTTP 429")));
  EXPECT_EQ(RetryAfter(verdict.result.status()), absl::Seconds(3));
  // The URL's API key is never shown.
  EXPECT_THAT(verdict.result.status().message(), Not(HasSubstr("SECRET")));
}

TEST(ResponseClassificationTest, Http5xxIsTheUrlFailing) {
  const Verdict verdict = ClassifyResponse(Http(502, "bad gateway"), false, kSource);
  EXPECT_EQ(verdict.outcome, "http_5xx");
  EXPECT_EQ(verdict.url_health, Verdict::UrlHealth::kDown);
  EXPECT_TRUE(verdict.retryable);
  EXPECT_THAT(verdict.result.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 502")));
}

TEST(ResponseClassificationTest, TransportFailures) {
  absl::Status refused = absl::UnavailableError("connection refused");
  refused.SetPayload(http::kRequestNeverSentPayload, absl::Cord());
  Verdict verdict = ClassifyResponse(refused, false, kSource);
  EXPECT_EQ(verdict.outcome, "unavailable");
  EXPECT_EQ(verdict.url_health, Verdict::UrlHealth::kDown);
  EXPECT_TRUE(verdict.never_sent);

  verdict = ClassifyResponse(absl::DeadlineExceededError("timed out"), false, kSource);
  EXPECT_EQ(verdict.outcome, "timeout");
  EXPECT_FALSE(verdict.never_sent);
  EXPECT_TRUE(verdict.retryable);

  // Too large is our refusal: the host is not to blame, and it would be as
  // large again.
  verdict = ClassifyResponse(absl::ResourceExhaustedError("too large"), false, kSource);
  EXPECT_EQ(verdict.outcome, "too_large");
  EXPECT_EQ(verdict.url_health, Verdict::UrlHealth::kUnknown);
  EXPECT_FALSE(verdict.retryable);
}

TEST(ResponseClassificationTest, ABodyThatIsNoJsonRpcResponse) {
  Verdict verdict = ClassifyResponse(Http(200, "<html>"), false, kSource);
  EXPECT_EQ(verdict.outcome, "invalid");
  EXPECT_FALSE(verdict.retryable);
  EXPECT_THAT(verdict.result.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("without a JSON-RPC response")));
  verdict = ClassifyResponse(Http(404, "not found"), false, kSource);
  EXPECT_EQ(verdict.outcome, "http_4xx");
}

TEST(ResponseClassificationTest, ARawCallGetsTheWholeBody) {
  const Verdict verdict = ClassifyResponse(Http(200, R"([{"id":1,"result":2}])"), true, kSource);
  EXPECT_EQ(verdict.outcome, "ok");
  ASSERT_TRUE(verdict.result.ok());
  EXPECT_EQ(verdict.result->kind, Answer::Kind::kRawBody);
  EXPECT_EQ(verdict.result->json, R"([{"id":1,"result":2}])");
}

TEST(ResponseClassificationTest, HttpFailureLeavesAnswersWithABodyToTheirItems) {
  EXPECT_FALSE(ClassifyHttpFailure(Http(200, "[]"), kSource).has_value());
  EXPECT_FALSE(ClassifyHttpFailure(Http(400, "[]"), kSource).has_value());
  EXPECT_TRUE(ClassifyHttpFailure(Http(429), kSource).has_value());
  EXPECT_TRUE(ClassifyHttpFailure(Http(503), kSource).has_value());
}

TEST(ResponseClassificationTest, ACallMissingFromABatchAnswer) {
  const Verdict verdict = MissingFromBatch("has no response for the call", kSource);
  EXPECT_EQ(verdict.outcome, "invalid");
  EXPECT_TRUE(verdict.retryable);
  EXPECT_THAT(verdict.result.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("has no response")));
}

}  // namespace
}  // namespace switchboard::upstream
