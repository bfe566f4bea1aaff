// The Rpc API's contract (proto/switchboard/v1/rpc.proto) over gRPC against
// real providers: the provider's result and JSON-RPC error object come back
// byte for byte, raw and batch bodies pass through both ways, bad input is
// refused naming its field before reaching the provider, an unknown upstream
// is NOT_FOUND, a provider that does not answer in time is
// DEADLINE_EXCEEDED, CallStream multiplexes calls answered by request_id,
// and cancelling a CallStream withdraws its calls waiting for admission.
// How soon the last two happen are figures, held to their bounds by
// tests/perf/bench_timing.sh.
//
// The tests share one Switchboard, each on upstreams of its own.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr absl::Duration kCallDeadline = absl::Seconds(5);
constexpr char kResult[] = R"({ "slot" : 5,"amounts":[1.50, 2e3 ],"ok":true })";
constexpr char kError[] =
    R"({"code" : -32602, "message":"Invalid params: expected a base-58 key","data":{"at":[0]}})";
constexpr char kBatchAnswer[] =
    R"([{"jsonrpc":"2.0","result":7,"id":1}, {"jsonrpc":"2.0","error":{"code":-32601,"message":"no"},"id":2}])";

// What the suite's tests share: one Switchboard whose upstreams are
// `answering` and `erring` (nginx answering kResult and kError), `raw` (a
// ScriptedHttpServer answering kBatchAnswer), `plain` (nginx answering
// result 0), `limited` (the same nginx behind a limiter admitting one call
// a second) and `slow` (another nginx's /slow, which never answers, with a
// 300 ms timeout).
struct CallApiServers {
  std::unique_ptr<NginxServer> answering_nginx;
  std::unique_ptr<NginxServer> erring_nginx;
  std::unique_ptr<NginxServer> plain_nginx;
  std::unique_ptr<NginxServer> silent_nginx;
  std::unique_ptr<ScriptedHttpServer> raw;
  InProcessServer server;
  std::unique_ptr<client::Client> client;
};

class RpcCallApiTest : public SharedServersTest<CallApiServers> {
 protected:
  static void SetUpTestSuite() {
    NginxServer::Options answering;
    answering.answer = absl::Substitute(R"({"jsonrpc":"2.0", "result":$0,"id":1})", kResult);
    NginxServer::Options erring;
    erring.answer = absl::Substitute(R"({"jsonrpc":"2.0","id":1, "error": $0})", kError);
    ScriptedHttpServer::Script batch;
    batch.body = kBatchAnswer;
    absl::StatusOr<std::unique_ptr<NginxServer>> answering_nginx = NginxServer::Start(answering);
    absl::StatusOr<std::unique_ptr<NginxServer>> erring_nginx = NginxServer::Start(erring);
    absl::StatusOr<std::unique_ptr<NginxServer>> plain_nginx = NginxServer::Start();
    absl::StatusOr<std::unique_ptr<NginxServer>> silent_nginx = NginxServer::Start();
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> raw = ScriptedHttpServer::Start(batch);
    ASSERT_THAT(answering_nginx, IsOk());
    ASSERT_THAT(erring_nginx, IsOk());
    ASSERT_THAT(plain_nginx, IsOk());
    ASSERT_THAT(silent_nginx, IsOk());
    ASSERT_THAT(raw, IsOk());
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
upstreams:
  - {name: answering, urls: ["$0"]}
  - {name: erring, urls: ["$1"]}
  - {name: raw, urls: ["$2"]}
  - {name: plain, urls: ["$3"]}
  - {name: slow, urls: ["$4"], timeout_ms: 300}
  - name: limited
    urls: ["$3"]
    rate_limit: {requests_per_second: 1, burst: 1}
    coalescing: {enabled: false}
)",
        (*answering_nginx)->url(), (*erring_nginx)->url(), (*raw)->url(), (*plain_nginx)->url(),
        (*silent_nginx)->url("/slow")));
    ASSERT_THAT(server, IsOk());
    shared_.reset(new CallApiServers{*std::move(answering_nginx), *std::move(erring_nginx),
                                     *std::move(plain_nginx), *std::move(silent_nginx),
                                     *std::move(raw), *std::move(server), nullptr});
    shared_->client = MakeRpcClient(shared_->server.target, kCallDeadline);
  }

  static CallOutcome Call(const v1::CallRequest& request) {
    return TimedCall(*shared_->client, request);
  }
};

TEST_F(RpcCallApiTest, ProvidersResultAndErrorObjectComeBackByteForByte) {
  const CallOutcome result = Call(RpcRequest("answering", "getSlot"));
  ASSERT_THAT(result.status, IsOk());
  EXPECT_EQ(result.response.outcome_case(), v1::CallResponse::kResultJson);
  EXPECT_EQ(result.response.result_json(), kResult);

  // A JSON-RPC error is the provider's answer, not a failed call.
  const CallOutcome error = Call(RpcRequest("erring", "getBalance", R"(["x"])"));
  ASSERT_THAT(error.status, IsOk());
  EXPECT_EQ(error.response.outcome_case(), v1::CallResponse::kErrorJson);
  EXPECT_EQ(error.response.error_json(), kError);
}

TEST_F(RpcCallApiTest, RawAndBatchBodiesPassThroughBothWays) {
  const std::string batch =
      R"([ {"jsonrpc":"2.0","id":1,"method":"getSlot"},{"jsonrpc":"2.0","id":2,"method":"nope","params":[ "a" ]} ])";
  const std::string single = R"({"jsonrpc":"2.0","id":"abc","method":"getSlot","params":[]})";
  const size_t sent_before = shared_->raw->requests().size();
  v1::CallRequest request;
  request.set_upstream("raw");
  request.set_raw_body(batch);
  const CallOutcome batch_call = Call(request);
  request.set_raw_body(single);
  const CallOutcome single_call = Call(request);

  const std::vector<std::string> requests = shared_->raw->requests();
  EXPECT_THAT(std::vector<std::string>(requests.begin() + sent_before, requests.end()),
              ElementsAre(batch, single));
  for (const CallOutcome* call : {&batch_call, &single_call}) {
    ASSERT_THAT(call->status, IsOk());
    EXPECT_EQ(call->response.outcome_case(), v1::CallResponse::kRawBody);
    EXPECT_EQ(call->response.raw_body(), kBatchAnswer);
  }
}

TEST_F(RpcCallApiTest, BadInputIsRefusedNamingItsFieldBeforeReachingTheProvider) {
  absl::StatusOr<AccessLog> before = shared_->plain_nginx->ReadAccessLog();
  ASSERT_THAT(before, IsOk());
  const auto status_of = [](const v1::CallRequest& request) { return Call(request).status; };
  const auto invalid = [](absl::string_view field) {
    return StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(absl::StrCat(field, ": ")));
  };

  EXPECT_THAT(status_of(RpcRequest("plain", "getSlot", "[1,")), invalid("params_json"));
  EXPECT_THAT(status_of(RpcRequest("plain", "getSlot", "42")), invalid("params_json"));
  EXPECT_THAT(status_of(RpcRequest("plain", "")), invalid("method"));
  EXPECT_THAT(status_of(RpcRequest("plain", "get slot")), invalid("method"));
  EXPECT_THAT(status_of(RpcRequest("", "getSlot")), invalid("upstream"));
  v1::CallRequest raw_and_method = RpcRequest("plain", "getSlot");
  raw_and_method.set_raw_body(R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})");
  EXPECT_THAT(status_of(raw_and_method), invalid("raw_body"));
  v1::CallRequest broken_raw;
  broken_raw.set_upstream("plain");
  broken_raw.set_raw_body(R"({"jsonrpc":"2.0","id":1,"method":)");
  EXPECT_THAT(status_of(broken_raw), invalid("raw_body"));
  EXPECT_THAT(status_of(RpcRequest("elsewhere", "getSlot")),
              StatusIs(absl::StatusCode::kNotFound, StartsWith("upstream: ")));

  absl::StatusOr<AccessLog> after = shared_->plain_nginx->ReadAccessLog();
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->entries.size(), before->entries.size());
}

TEST_F(RpcCallApiTest, ProviderThatDoesNotAnswerInTimeIsDeadlineExceeded) {
  const CallOutcome outcome = Call(RpcRequest("slow", "getSlot"));
  // The upstream's 300 ms timeout ended it, not the caller's deadline (5 s):
  // the status is the HTTP pool's ("no response within" what was left of
  // the 300 ms when the request left), and Switchboard counted its request
  // as timed out.
  EXPECT_THAT(outcome.status,
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(": no response within ")));
  EXPECT_THAT(ScrapeMetric(shared_->server.metrics_port,
                           R"(switchboard_upstream_requests_total{method="getSlot",)"
                           R"(outcome="timeout",upstream="slow"})"),
              IsOkAndHolds(1));
  ReportFigure("deadline_exceeded_after_ms",
               absl::ToDoubleMilliseconds(outcome.end - outcome.start));
}

TEST_F(RpcCallApiTest, CallStreamMultiplexesCallsAnsweredByRequestId) {
  constexpr int kCalls = 40;
  constexpr uint64_t kFirstId = 1000;
  absl::StatusOr<AccessLog> before = shared_->plain_nginx->ReadAccessLog();
  ASSERT_THAT(before, IsOk());
  grpc::ClientContext context;
  shared_->client->PrepareContext(context);
  context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcWaitTimeout));
  auto stream = shared_->client->rpc().CallStream(&context);
  // Every call is written before any answer is read. Even ones call the
  // provider (distinct params, so none coalesce); odd ones name no upstream.
  for (int i = 0; i < kCalls; ++i) {
    v1::CallRequest request =
        RpcRequest(i % 2 == 0 ? "plain" : "elsewhere", "getBlock", absl::StrCat("[", i, "]"));
    request.set_request_id(kFirstId + i);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::map<uint64_t, v1::CallResponse> responses;
  v1::CallResponse response;
  while (stream->Read(&response)) responses[response.request_id()] = response;
  ASSERT_TRUE(stream->Finish().ok());

  ASSERT_THAT(responses, SizeIs(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    const v1::CallResponse& answer = responses[kFirstId + i];
    if (i % 2 == 0) {
      EXPECT_EQ(answer.result_json(), "0") << i;
    } else {
      EXPECT_EQ(answer.status().code(), static_cast<int>(grpc::StatusCode::NOT_FOUND)) << i;
      EXPECT_THAT(answer.status().message(), StartsWith("upstream: ")) << i;
    }
  }
  absl::StatusOr<AccessLog> after =
      shared_->plain_nginx->WaitForAccessLog(before->entries.size() + kCalls / 2);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->entries.size(), before->entries.size() + kCalls / 2);
}

TEST_F(RpcCallApiTest, CancellingACallStreamWithdrawsItsCallsWaitingForAdmission) {
  // One is admitted at once; the others would be, one a second.
  constexpr int kCalls = 4;
  const std::string queue_depth = R"(switchboard_upstream_queue_depth{upstream="limited"})";
  absl::StatusOr<AccessLog> before = shared_->plain_nginx->ReadAccessLog();
  ASSERT_THAT(before, IsOk());
  grpc::ClientContext context;
  shared_->client->PrepareContext(context);
  context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcWaitTimeout));
  auto stream = shared_->client->rpc().CallStream(&context);
  for (int i = 0; i < kCalls; ++i) {
    v1::CallRequest request = RpcRequest("limited", "getBlock", absl::StrCat("[", i, "]"));
    request.set_request_id(i);
    request.set_timeout_ms(absl::ToInt64Milliseconds(kRpcWaitTimeout));
    ASSERT_TRUE(stream->Write(request));
  }
  ASSERT_THAT(WaitForMetric(shared_->server.metrics_port, queue_depth,
                            [](double depth) { return depth == kCalls - 1; }),
              IsOk());
  const absl::Time cancelled = absl::Now();
  context.TryCancel();
  EXPECT_THAT(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(WaitForMetric(shared_->server.metrics_port, queue_depth,
                            [](double depth) { return depth == 0; }),
              IsOkAndHolds(0));
  ReportFigure("queue_emptied_after_cancel_ms",
               absl::ToDoubleMilliseconds(absl::Now() - cancelled));
  // Withdrawn, not admitted one a second: a call of the same client made
  // now queues behind any of them still waiting (first in, first out within
  // a client), so once it is answered the provider has seen every call
  // admitted before it. It saw the one admitted before the cancel, and this.
  const CallOutcome after_cancel = Call(RpcRequest("limited", "getBlock", "[99]"));
  ASSERT_THAT(after_cancel.status, IsOk());
  absl::StatusOr<AccessLog> after =
      shared_->plain_nginx->WaitForAccessLog(before->entries.size() + 2);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->entries.size(), before->entries.size() + 2);
}

}  // namespace
}  // namespace switchboard::testing
