// Issue 4's "Failover" acceptance test: an upstream with two nginx URLs,
// primary then fallback. Stopping the primary moves calls to the fallback;
// once the primary is back, calls return to it when its circuit breaker
// lets a probe through. Each nginx answers with its own name, so every call
// says where it went, and both access logs confirm it.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using ::testing::Ge;
using ::testing::Le;

constexpr char kUpstream[] = "provider";
// On the retry list: a failed attempt is tried again, on another URL.
constexpr char kRetriedMethod[] = "getSlot";
// Not on the list: sent once, whatever happens.
constexpr char kSentOnceMethod[] = "getBalance";
constexpr int kFailureThreshold = 3;
constexpr absl::Duration kOpenTime = absl::Seconds(1);
constexpr absl::Duration kCallDeadline = absl::Seconds(5);
constexpr absl::Duration kCallPause = absl::Milliseconds(20);
constexpr int kCallsPerStep = 5;

std::unique_ptr<NginxServer> StartNamedNginx(absl::string_view name) {
  NginxServer::Options options;
  options.answer = absl::Substitute(R"({"jsonrpc":"2.0","result":"$0","id":1})", name);
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(options);
  EXPECT_THAT(nginx, IsOk());
  return nginx.ok() ? *std::move(nginx) : nullptr;
}

// Which nginx answered: its name as JSON, or the call's error.
std::string AnsweredBy(const CallOutcome& outcome) {
  return outcome.status.ok() ? outcome.response.result_json() : outcome.status.ToString();
}

// Calls one at a time (so that, with `batch`, each finds a free connection
// and goes alone: nginx's fixed answers cannot serve a batch) through an
// upstream whose primary stops and comes back.
void RunFailover(absl::string_view batch) {
  std::unique_ptr<NginxServer> primary = StartNamedNginx("primary");
  std::unique_ptr<NginxServer> fallback = StartNamedNginx("fallback");
  ASSERT_TRUE(primary != nullptr && fallback != nullptr);
  absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
      R"(
upstreams:
  - name: $0
    urls: ["$1", "$2"]
    retry: {max_attempts: 2, methods: ["$3"], backoff_ms: 1}
    circuit_breaker: {failure_threshold: $4, open_ms: $5}
$6)",
      kUpstream, primary->url(), fallback->url(), kRetriedMethod, kFailureThreshold,
      absl::ToInt64Milliseconds(kOpenTime),
      batch.empty() ? "" : absl::StrCat("    batch: ", batch, "\n")));
  ASSERT_THAT(server, IsOk());
  std::unique_ptr<client::Client> client = MakeRpcClient(server->target, kCallDeadline);
  const v1::CallRequest retried = RpcRequest(kUpstream, kRetriedMethod);
  const v1::CallRequest sent_once = RpcRequest(kUpstream, kSentOnceMethod);

  // Healthy: everything goes to the primary.
  for (int i = 0; i < kCallsPerStep; ++i) {
    EXPECT_EQ(AnsweredBy(TimedCall(*client, sent_once)), R"("primary")");
  }

  // nginx logs a request after answering it: stopping it sooner could lose
  // the last lines.
  ASSERT_THAT(primary->WaitForAccessLog(kCallsPerStep), IsOk());
  primary->Stop();
  // A retried method succeeds from the very first call: the attempt on the
  // primary fails (connection refused), the second goes to the fallback.
  const CallOutcome first_after_stop = TimedCall(*client, retried);
  EXPECT_EQ(AnsweredBy(first_after_stop), R"("fallback")");
  EXPECT_EQ(first_after_stop.response.upstream_attempts(), 2u);
  // So does a method sent once: its request never reached the primary
  // (connection refused), so it goes to the fallback at once. Until the
  // primary's breaker opens (kFailureThreshold consecutive failures, the
  // retried call's included) each call tries the primary first; from then on
  // calls go straight to the fallback.
  std::vector<CallOutcome> tried_primary_first;
  for (int i = 1; i < kFailureThreshold; ++i) {
    tried_primary_first.push_back(TimedCall(*client, sent_once));
  }
  for (const CallOutcome& outcome : tried_primary_first) {
    EXPECT_EQ(AnsweredBy(outcome), R"("fallback")");
    EXPECT_EQ(outcome.response.upstream_attempts(), 2u);
  }
  const CallOutcome& opening = tried_primary_first.back();
  for (int i = 0; i < kCallsPerStep; ++i) {
    const CallOutcome outcome = TimedCall(*client, sent_once);
    EXPECT_EQ(AnsweredBy(outcome), R"("fallback")");
    EXPECT_EQ(outcome.response.upstream_attempts(), 1u);
  }

  ASSERT_THAT(primary->Restart(), IsOk());
  const absl::Time restarted = absl::Now();
  // Calls stay on the fallback until the breaker's open time has passed,
  // then its probe finds the primary again.
  int to_fallback_meanwhile = 0;
  std::optional<CallOutcome> back;
  while (!back.has_value() && absl::Now() < restarted + kOpenTime + kRpcWaitTimeout) {
    CallOutcome outcome = TimedCall(*client, sent_once);
    if (AnsweredBy(outcome) == R"("primary")") {
      back = std::move(outcome);
    } else {
      EXPECT_EQ(AnsweredBy(outcome), R"("fallback")");
      ++to_fallback_meanwhile;
      absl::SleepFor(kCallPause);
    }
  }
  ASSERT_TRUE(back.has_value()) << "calls never returned to the primary";
  ReportFigure("seconds_from_breaker_open_to_primary",
               absl::ToDoubleSeconds(back->end - opening.start));
  EXPECT_THAT(back->end, Ge(opening.start + kOpenTime));
  // And no later than the first call after both the open time and the
  // restart.
  EXPECT_THAT(back->start,
              Le(std::max(opening.end + kOpenTime, restarted) + absl::Milliseconds(500)));
  for (int i = 0; i < kCallsPerStep; ++i) {
    EXPECT_EQ(AnsweredBy(TimedCall(*client, sent_once)), R"("primary")");
  }

  // The access logs agree, call for call.
  absl::StatusOr<AccessLog> primary_log = primary->WaitForAccessLog(2 * kCallsPerStep + 1);
  ASSERT_THAT(primary_log, IsOk());
  EXPECT_EQ(primary_log->entries.size(), static_cast<size_t>(2 * kCallsPerStep + 1));
  EXPECT_EQ(primary_log->CountByStatus()[200], 2 * kCallsPerStep + 1);
  const size_t to_fallback = kFailureThreshold + kCallsPerStep + to_fallback_meanwhile;
  absl::StatusOr<AccessLog> fallback_log = fallback->WaitForAccessLog(to_fallback);
  ASSERT_THAT(fallback_log, IsOk());
  EXPECT_EQ(fallback_log->entries.size(), to_fallback);
}

TEST(RpcFailoverTest, CallsMoveToTheFallbackWhenThePrimaryStopsAndReturnWhenItIsBack) {
  RunFailover(/*batch=*/"");
}

// Batching changes nothing for calls that find a free connection; the
// breaker and the never-sent failover work per request as before.
TEST(RpcFailoverTest, WithAutoBatchingCallsMoveToTheFallbackAndReturn) {
  RunFailover(kLoadTestBatch);
}

}  // namespace
}  // namespace switchboard::testing
