// Issue 4's "Retry safety" acceptance tests: a method that is not on the
// retry list reaches the provider at most once, whether the provider answers
// 5xx or drops the connection after reading the request; only when its
// request never reached the primary (connection refused) does it go to the
// fallback URL, which is then the one server that sees it. A method on the list is
// sent up to retry.max_attempts times. The provider's own record of the
// requests it read is what each test counts.
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::SizeIs;

constexpr char kRetriedMethod[] = "getSlot";
constexpr int kMaxAttempts = 3;
constexpr absl::Duration kCallDeadline = absl::Seconds(5);

// Requests among `bodies` that call `method`.
int RequestsFor(const std::vector<std::string>& bodies, absl::string_view method) {
  const std::string field = absl::StrCat(R"("method":")", method, R"(")");
  return static_cast<int>(std::count_if(bodies.begin(), bodies.end(), [&](const std::string& body) {
    return absl::StrContains(body, field);
  }));
}

// What the suite's tests share: one Switchboard whose upstreams are
// `failing` (a provider answering 503), `hanging_up` (a provider the test
// makes drop connections) and `failover` (an unreachable URL, then nginx).
// Each retries kRetriedMethod up to kMaxAttempts times, and its breakers
// never open during a test.
struct RetryServers {
  ~RetryServers() { close(refusing.fd); }

  std::unique_ptr<ScriptedHttpServer> failing;
  std::unique_ptr<ScriptedHttpServer> hanging_up;
  std::unique_ptr<NginxServer> fallback;
  // Held so that no other server takes `failover`'s unreachable port.
  LoopbackSocket refusing;
  InProcessServer server;
  std::unique_ptr<client::Client> client;
};

class RpcRetrySafetyTest : public SharedServersTest<RetryServers> {
 protected:
  static void SetUpTestSuite() {
    ScriptedHttpServer::Script overloaded;
    overloaded.status = 503;
    overloaded.body = "overloaded";
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> failing =
        ScriptedHttpServer::Start(overloaded);
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> hanging_up =
        ScriptedHttpServer::Start(ScriptedHttpServer::Script());
    absl::StatusOr<std::unique_ptr<NginxServer>> fallback = NginxServer::Start();
    ASSERT_THAT(failing, IsOk());
    ASSERT_THAT(hanging_up, IsOk());
    ASSERT_THAT(fallback, IsOk());
    absl::StatusOr<LoopbackSocket> refusing = BindRefusingPort();
    ASSERT_THAT(refusing, IsOk());
    const std::string unreachable = absl::StrCat("http://127.0.0.1:", refusing->port, "/");
    const std::string policy =
        absl::Substitute(R"(retry: {max_attempts: $0, methods: ["$1"], backoff_ms: 1}, )"
                         R"(circuit_breaker: {failure_threshold: 1000})",
                         kMaxAttempts, kRetriedMethod);
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
upstreams:
  - {name: failing, urls: ["$0"], $3}
  - {name: hanging_up, urls: ["$1"], $3}
  - {name: failover, urls: ["$2", "$4"], $3}
)",
        (*failing)->url(), (*hanging_up)->url(), unreachable, policy, (*fallback)->url()));
    ASSERT_THAT(server, IsOk());
    shared_.reset(new RetryServers{*std::move(failing), *std::move(hanging_up),
                                   *std::move(fallback), *refusing, *std::move(server), nullptr});
    shared_->client = MakeRpcClient(shared_->server.target, kCallDeadline);
  }

  static CallOutcome Call(absl::string_view upstream, absl::string_view method) {
    return TimedCall(*shared_->client, RpcRequest(upstream, method));
  }
  // Calls sendTransaction, getBalance and kRetriedMethod on `upstream`,
  // whose `provider` fails them all, and checks that the provider read each
  // of the first two once and the last kMaxAttempts times.
  static void ExpectOnlyTheRetriedMethodSentAgain(absl::string_view upstream,
                                                  const ScriptedHttpServer& provider) {
    const size_t before = provider.requests().size();
    for (absl::string_view method : {"sendTransaction", "getBalance", kRetriedMethod}) {
      EXPECT_THAT(Call(upstream, method).status, StatusIs(absl::StatusCode::kUnavailable))
          << method;
    }
    std::vector<std::string> requests = provider.requests();
    requests.erase(requests.begin(), requests.begin() + before);
    EXPECT_EQ(RequestsFor(requests, "sendTransaction"), 1);
    EXPECT_EQ(RequestsFor(requests, "getBalance"), 1);
    EXPECT_EQ(RequestsFor(requests, kRetriedMethod), kMaxAttempts);
    EXPECT_THAT(requests, SizeIs(2 + kMaxAttempts));
  }
};

TEST_F(RpcRetrySafetyTest, MethodOffTheRetryListIsSentOnceWhenTheProviderAnswers5xx) {
  ExpectOnlyTheRetriedMethodSentAgain("failing", *shared_->failing);
  // Switchboard counted the same.
  const auto http_5xx = [](absl::string_view method) {
    return ScrapeMetric(shared_->server.metrics_port,
                        absl::Substitute(R"(switchboard_upstream_requests_total{method="$0",)"
                                         R"(outcome="http_5xx",upstream="failing"})",
                                         method));
  };
  EXPECT_THAT(http_5xx("sendTransaction"), IsOkAndHolds(1));
  EXPECT_THAT(http_5xx(kRetriedMethod), IsOkAndHolds(kMaxAttempts));
}

// libcurl 7.88 would send a request again on a fresh connection when a
// reused one dies before any byte of the answer ("Connection died, retrying
// a fresh connect"); the HTTP pool's body cannot be rewound, so curl fails
// the request instead, and only the retry list decides what is sent again.
TEST_F(RpcRetrySafetyTest, MethodOffTheRetryListIsSentOnceWhenTheConnectionDropsWithoutAnAnswer) {
  // A kept-alive connection first: a request that fails on a reused
  // connection is the one an HTTP client is most tempted to send again.
  shared_->hanging_up->SetScript(ScriptedHttpServer::Script());
  ASSERT_THAT(Call("hanging_up", "getHealth").status, IsOk());
  ScriptedHttpServer::Script hanging_up;
  hanging_up.hang_up = true;
  shared_->hanging_up->SetScript(hanging_up);
  ExpectOnlyTheRetriedMethodSentAgain("hanging_up", *shared_->hanging_up);
}

TEST_F(RpcRetrySafetyTest, MethodOffTheRetryListGoesToTheFallbackWhenThePrimaryNeverGotIt) {
  absl::StatusOr<AccessLog> before = shared_->fallback->ReadAccessLog();
  ASSERT_THAT(before, IsOk());
  // The primary refuses connections: the request never left, so it may go
  // to the fallback whatever its method.
  const CallOutcome submitted = Call("failover", "sendTransaction");
  ASSERT_THAT(submitted.status, IsOk());
  EXPECT_EQ(submitted.response.upstream_attempts(), 2u);
  absl::StatusOr<AccessLog> after = shared_->fallback->WaitForAccessLog(before->entries.size() + 1);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->entries.size(), before->entries.size() + 1);
}

}  // namespace
}  // namespace switchboard::testing
