// Issue 4's "Coalescing" acceptance tests: 100 identical getSlot calls in
// flight together make one upstream request, and a method with a cache TTL
// is answered from the cache within it (one nginx request for many calls,
// one more once the TTL has passed).
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
using ::testing::Lt;
using ::testing::SizeIs;

constexpr absl::Duration kCallDeadline = absl::Seconds(10);
constexpr char kHeldResult[] = R"({"context":{"slot":4242},"value":7})";
constexpr absl::Duration kTtl = absl::Milliseconds(1500);

// What the suite's tests share: one Switchboard whose upstreams are
// `held` (a ScriptedHttpServer answering kHeldResult, whose
// answers the test holds back) and `cached` (nginx; getGenesisHash cached
// for kTtl).
struct ReadSharingServers {
  std::unique_ptr<ScriptedHttpServer> held;
  std::unique_ptr<NginxServer> nginx;
  InProcessServer server;
  std::unique_ptr<client::Client> client;
};

class RpcCoalescingAndCacheTest : public SharedServersTest<ReadSharingServers> {
 protected:
  static void SetUpTestSuite() {
    ScriptedHttpServer::Script script;
    script.body = absl::Substitute(R"({"jsonrpc":"2.0","result":$0,"id":1})", kHeldResult);
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> held = ScriptedHttpServer::Start(script);
    absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
    ASSERT_THAT(held, IsOk());
    ASSERT_THAT(nginx, IsOk());
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
upstreams:
  - {name: held, urls: ["$0"]}
  - {name: cached, urls: ["$1"], cache_ttl_ms: {getGenesisHash: $2}}
)",
        (*held)->url(), (*nginx)->url(), absl::ToInt64Milliseconds(kTtl)));
    ASSERT_THAT(server, IsOk());
    shared_.reset(
        new ReadSharingServers{*std::move(held), *std::move(nginx), *std::move(server), nullptr});
    shared_->client = MakeRpcClient(shared_->server.target, kCallDeadline);
  }
};

TEST_F(RpcCoalescingAndCacheTest, HundredConcurrentIdenticalCallsMakeOneUpstreamRequest) {
  constexpr int kCalls = 100;
  const int metrics_port = shared_->server.metrics_port;
  // The provider holds its answer until every call has joined the first
  // one's request: the calls overlap for certain, however slow the machine.
  shared_->held->HoldAnswers();
  std::vector<CallOutcome> outcomes(kCalls);
  std::vector<std::thread> callers;
  const v1::CallRequest request = RpcRequest("held", "getSlot", R"([{"commitment":"final"}])");
  for (CallOutcome& outcome : outcomes) {
    callers.emplace_back([&] { outcome = TimedCall(*shared_->client, request); });
  }
  const std::string coalesced =
      R"(switchboard_upstream_coalesced_total{method="getSlot",upstream="held"})";
  EXPECT_THAT(
      WaitForMetric(metrics_port, coalesced, [](double joined) { return joined == kCalls - 1; }),
      IsOkAndHolds(kCalls - 1));
  shared_->held->ReleaseAnswers();
  for (std::thread& caller : callers) caller.join();

  EXPECT_THAT(
      shared_->held->requests(),
      ElementsAre(
          R"({"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"final"}]})"));
  int coalesced_answers = 0;
  for (const CallOutcome& outcome : outcomes) {
    ASSERT_THAT(outcome.status, IsOk());
    EXPECT_EQ(outcome.response.result_json(), kHeldResult);
    EXPECT_EQ(outcome.response.upstream_attempts(), 1u);
    if (outcome.response.coalesced()) ++coalesced_answers;
  }
  EXPECT_EQ(coalesced_answers, kCalls - 1);
  EXPECT_THAT(ScrapeMetric(metrics_port, R"(switchboard_upstream_requests_total{)"
                                         R"(method="getSlot",outcome="ok",upstream="held"})"),
              IsOkAndHolds(1));
}

TEST_F(RpcCoalescingAndCacheTest, CachedMethodIsAnsweredFromTheCacheWithinItsTtl) {
  constexpr int kCalls = 10;
  const v1::CallRequest request = RpcRequest("cached", "getGenesisHash");
  std::vector<CallOutcome> outcomes;
  for (int i = 0; i < kCalls; ++i) outcomes.push_back(TimedCall(*shared_->client, request));
  // Every call ended within the TTL of the first answer.
  ASSERT_THAT(outcomes.back().end, Lt(outcomes.front().start + kTtl));
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_THAT(outcomes[i].status, IsOk());
    EXPECT_EQ(outcomes[i].response.result_json(), "0");
    EXPECT_EQ(outcomes[i].response.cached(), i > 0) << "call " << i;
  }
  absl::StatusOr<AccessLog> log = shared_->nginx->WaitForAccessLog(1);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(log->entries, SizeIs(1));
  EXPECT_THAT(
      ScrapeMetric(shared_->server.metrics_port, R"(switchboard_upstream_cache_hits_total{)"
                                                 R"(method="getGenesisHash",upstream="cached"})"),
      IsOkAndHolds(kCalls - 1));

  // Past the TTL, the next call asks the provider again.
  absl::SleepFor(outcomes.front().end + kTtl - absl::Now());
  const CallOutcome after_ttl = TimedCall(*shared_->client, request);
  ASSERT_THAT(after_ttl.status, IsOk());
  EXPECT_FALSE(after_ttl.response.cached());
  log = shared_->nginx->WaitForAccessLog(2);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(log->entries, SizeIs(2));
}

}  // namespace
}  // namespace switchboard::testing
