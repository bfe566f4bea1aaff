#include "server/upstream/json_rpc.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::upstream {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::Optional;

TEST(ValidateJsonTest, AcceptsEveryKindOfValue) {
  for (const char* text :
       {"[]", "{}", " [1, -2.5e+3, 0, \"a\\u00e9\\ud83d\\ude00\\n\", true, false, null] ",
        R"({"a": {"b": [{}]}, "c": "x"})", "18446744073709551615", "\"\"", "-0.0E-7"}) {
    EXPECT_THAT(ValidateJson(text), IsOk()) << text;
  }
}

struct InvalidCase {
  const char* text;
  const char* message;
};

class InvalidJsonTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidJsonTest, NamesTheByteAndTheProblem) {
  EXPECT_THAT(ValidateJson(GetParam().text),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidJsonTest,
    ::testing::Values(
        InvalidCase{"", "not valid JSON at byte 0: expected a value"},
        InvalidCase{"[1,]", "not valid JSON at byte 3: expected a value"},
        InvalidCase{"[1 2]", "not valid JSON at byte 3: expected ',' or ']'"},
        InvalidCase{R"({"a" 1})", "not valid JSON at byte 5: expected ':'"},
        InvalidCase{R"({"a":1,})", "not valid JSON at byte 7: expected a string"},
        InvalidCase{"01", "not valid JSON at byte 1: unexpected text after the value"},
        InvalidCase{"1.", "not valid JSON at byte 2: expected a digit after '.'"},
        InvalidCase{"\"abc", "not valid JSON at byte 4: unterminated string"},
        InvalidCase{"\"a\tb\"", "not valid JSON at byte 3: control character in a string"},
        InvalidCase{R"("\x")", "not valid JSON at byte 2: invalid escape in a string"},
        InvalidCase{R"("\ud800")", "not valid JSON at byte 7: high surrogate without its low half"},
        InvalidCase{"tru", "not valid JSON at byte 0: expected a value"},
        InvalidCase{"[1] [2]", "not valid JSON at byte 4: unexpected text after the value"}));

TEST(ValidateJsonTest, RefusesNestingBeyondTheLimit) {
  const std::string deep =
      std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  EXPECT_THAT(ValidateJson(deep), StatusIs(absl::StatusCode::kInvalidArgument,
                                           Eq("not valid JSON at byte 128: nested too deeply")));
  const std::string deepest = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_THAT(ValidateJson(deepest), IsOk());
}

TEST(BuildRequestTest, WritesJsonRpcTwoWithOrWithoutParams) {
  EXPECT_EQ(BuildRequest(7, "getSlot", ""), R"({"jsonrpc":"2.0","id":7,"method":"getSlot"})");
  EXPECT_EQ(
      BuildRequest(8, "getBalance", R"(["Abc", {"commitment": "final"}])"),
      R"({"jsonrpc":"2.0","id":8,"method":"getBalance","params":["Abc", {"commitment": "final"}]})");
  EXPECT_THAT(ValidateJson(BuildRequest(9, "x", "{}")), IsOk());
}

TEST(SplitResponseTest, KeepsTheResultByteForByte) {
  const std::string body =
      R"({"jsonrpc":"2.0","result":{"value":18446744073709551615, "x" : 1.50},"id":1})";
  absl::StatusOr<ResponseParts> parts = SplitResponse(body);
  ASSERT_THAT(parts, IsOk());
  EXPECT_THAT(parts->result, Optional(Eq(R"({"value":18446744073709551615, "x" : 1.50})")));
  EXPECT_EQ(parts->error, std::nullopt);
}

TEST(SplitResponseTest, KeepsTheErrorObjectUntouched) {
  absl::StatusOr<ResponseParts> parts = SplitResponse(
      R"({"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":1})");
  ASSERT_THAT(parts, IsOk());
  EXPECT_THAT(parts->error, Optional(Eq(R"({"code":-32601,"message":"Method not found"})")));
  EXPECT_EQ(parts->result, std::nullopt);
}

TEST(SplitResponseTest, RefusesWhatIsNotAResponse) {
  EXPECT_THAT(SplitResponse("<html>502</html>"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("not valid JSON at byte 0: expected "
                                                              "an object")));
  EXPECT_THAT(SplitResponse(R"({"id":1})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("the response has neither a result nor an error")));
}

TEST(BatchTest, BuildsAndSplitsBatchesKeepingEachItemByteForByte) {
  EXPECT_EQ(BuildBatch({R"({"id":1})", R"({"id":2})"}), R"([{"id":1},{"id":2}])");
  absl::StatusOr<std::vector<absl::string_view>> items =
      SplitBatchItems(R"( [ {"id":2,"result":1.50} , {"id":"x","error":{}} ] )");
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ((*items)[0], R"({"id":2,"result":1.50})");
  EXPECT_EQ(NumericId(*SplitResponse((*items)[0])), 2u);
  EXPECT_EQ(NumericId(*SplitResponse((*items)[1])), std::nullopt);
  EXPECT_EQ(NumericId(*SplitResponse(R"({"id":-1,"result":0})")), std::nullopt);
  EXPECT_EQ(NumericId(*SplitResponse(R"({"id":1.5,"result":0})")), std::nullopt);
  EXPECT_EQ(NumericId(*SplitResponse(R"({"result":0})")), std::nullopt);
  EXPECT_FALSE(SplitBatchItems(R"({"id":1,"result":0})").ok());
  EXPECT_FALSE(SplitBatchItems("[]").ok());
}

TEST(SplitRequestTest, KeepsTheIdAndParamsByteForByte) {
  absl::StatusOr<RequestParts> parts = SplitRequest(
      R"({"jsonrpc":"2.0", "id": "a\u0062", "method":"get\u0053lot","params":[ 1.50 ]})");
  ASSERT_THAT(parts, IsOk());
  EXPECT_THAT(parts->id, Optional(Eq(R"("a\u0062")")));
  EXPECT_EQ(parts->method, "getSlot");
  EXPECT_THAT(parts->params, Optional(Eq("[ 1.50 ]")));
  absl::StatusOr<RequestParts> notification = SplitRequest(R"({"method":"m"})");
  ASSERT_THAT(notification, IsOk());
  EXPECT_EQ(notification->id, std::nullopt);
  EXPECT_EQ(notification->params, std::nullopt);
  EXPECT_THAT(SplitRequest(R"({"id":1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("method: is required")));
  EXPECT_THAT(SplitRequest(R"({"id":1,"method":7})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("method: must be a string")));
  EXPECT_THAT(SplitRequest(R"({"jsonrpc":"1.0","method":"m"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("jsonrpc: must be \"2.0\"")));
  EXPECT_FALSE(SplitRequest("[]").ok());
}

TEST(RequestMethodsTest, FindsTheMethodOfARequestOrOfEachInABatch) {
  EXPECT_THAT(RequestMethods(R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})"),
              ::switchboard::testing::IsOkAndHolds(ElementsAre("getSlot")));
  EXPECT_THAT(RequestMethods(R"( [{"method":"getSlot","id":1},{"id":2,"method":"get\u0042lock"}])"),
              ::switchboard::testing::IsOkAndHolds(ElementsAre("getSlot", "getBlock")));
  EXPECT_THAT(RequestMethods("[]"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("not valid JSON at byte 1: the array "
                                                              "is empty")));
  EXPECT_THAT(RequestMethods(R"([{"id":1}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("a request has no string method")));
  EXPECT_THAT(RequestMethods(R"({"method":5})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("not valid JSON at byte 0: expected a string")));
}

TEST(JsonStringTest, EscapesWhatJsonNeedsAndPassesTheRest) {
  EXPECT_EQ(JsonString(""), R"("")");
  EXPECT_EQ(JsonString("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(JsonString("\n\r\t\x01"), R"("\n\r\t\u0001")");
  EXPECT_EQ(JsonString("\xc3\xa9"), "\"\xc3\xa9\"");
  EXPECT_THAT(ValidateJson(JsonString("any \x7f text\x1f")), IsOk());
}

TEST(SharingKeyTest, TellsCallsApartByMethodAndParamsTextOnly) {
  EXPECT_EQ(SharingKey("getSlot", "[1]"), SharingKey("getSlot", "[1]"));
  EXPECT_NE(SharingKey("getSlot", "[1]"), SharingKey("getSlot", "[ 1]"));
  EXPECT_NE(SharingKey("getSlot", "[1]"), SharingKey("getBlock", "[1]"));
  // The method cannot run into the params.
  EXPECT_NE(SharingKey("ab", "c"), SharingKey("a", "bc"));
}

TEST(SplitNotificationTest, GivesTheSubscriptionAndTheResultAsRawText) {
  constexpr absl::string_view kSolana =
      R"({"jsonrpc":"2.0","method":"slotNotification","params":{"result":{"parent":7,)"
      R"("root":1, "slot":8},"subscription":42}})";
  absl::StatusOr<NotificationParts> parts = SplitNotification(kSolana);
  ASSERT_THAT(parts, IsOk());
  EXPECT_EQ(parts->method, "slotNotification");
  EXPECT_EQ(parts->subscription, "42");
  EXPECT_EQ(parts->result, R"({"parent":7,"root":1, "slot":8})");

  parts = SplitNotification(
      R"({"method":"eth_subscription","params":{"subscription":"0xab","result":"0x1"}})");
  ASSERT_THAT(parts, IsOk());
  EXPECT_EQ(parts->method, "eth_subscription");
  EXPECT_EQ(parts->subscription, R"("0xab")");
  EXPECT_EQ(parts->result, R"("0x1")");
}

TEST(SplitNotificationTest, NamesWhatIsMissing) {
  EXPECT_THAT(SplitNotification(R"({"id":1,"method":"m","params":{}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("a notification has no id")));
  EXPECT_THAT(SplitNotification(R"({"method":"m"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("params: is required")));
  EXPECT_THAT(SplitNotification(R"({"method":"m","params":{"result":1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("params.subscription: is required")));
  EXPECT_THAT(SplitNotification(R"({"method":"m","params":{"subscription":1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("params.result: is required")));
  EXPECT_FALSE(SplitNotification(R"({"method":"m","params":[1,2]})").ok());
  EXPECT_FALSE(SplitNotification("not json").ok());
}

TEST(IsRateLimitErrorTest, RecognisesProviderRateLimits) {
  EXPECT_TRUE(IsRateLimitError(R"({"code":429,"message":"slow down"})"));
  EXPECT_TRUE(IsRateLimitError(R"({"code":-32005,"message":"limit exceeded"})"));
  EXPECT_TRUE(IsRateLimitError(R"({"code":-32000,"message":"Too Many Requests for this key"})"));
  EXPECT_TRUE(IsRateLimitError(R"({"code":-32000,"message":"rate limit reached"})"));
  EXPECT_FALSE(IsRateLimitError(R"({"code":-32601,"message":"Method not found"})"));
  EXPECT_FALSE(IsRateLimitError("not json"));
}

}  // namespace
}  // namespace switchboard::upstream
