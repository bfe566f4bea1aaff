// Issue 4's "Provider pushback" acceptance test: while nginx answers every
// request with 429 and `Retry-After: 1`, Switchboard pauses for that second
// after each 429 and lowers its rate (AIMD); once nginx stops, the rate
// climbs back to the configured limit and the provider gets it again.
//
// Here: Switchboard saw every 429 nginx sent, halved its rate, and
// recovered the configured one. What happened when (nothing reached nginx
// during the pause, a handful of requests over the pushback, the last 429
// before it ended, the rate nginx got after recovery) are figures measured
// against the wall clock: tests/perf/bench_timing.sh holds them to their
// bounds.
#include <memory>
#include <string>
#include <vector>

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

using ::testing::Gt;
using ::testing::Le;
using ::testing::SizeIs;

constexpr char kUpstream[] = "provider";
constexpr double kLimit = 100;
constexpr int kCallers = 20;
constexpr double kDemandPerSecond = 2 * kLimit;
constexpr absl::Duration kCallDeadline = absl::Milliseconds(100);
constexpr absl::Duration kBeforePushback = absl::Seconds(1);
// Long enough for a second 429 after the first pause.
constexpr absl::Duration kPushback = absl::Milliseconds(1500);
// nginx's Retry-After.
constexpr absl::Duration kRetryAfter = absl::Seconds(1);
// Requests already on their way when a 429 arrives still reach nginx: the
// pause is counted from this long after it (bench_timing.sh's bounds assume
// the same).
constexpr absl::Duration kInFlightSlack = absl::Milliseconds(100);
constexpr absl::Duration kMeasuredWindow = absl::Seconds(2);

// With auto-batching, a provider slow enough (this long a request, over
// max_connections 2) that calls at the limit share requests.
constexpr absl::Duration kBatchingProviderDelay = absl::Milliseconds(30);

// Loads an upstream at twice its limit while nginx answers every request
// with 429 for kPushback; with `batching`, nginx proxies to a provider that
// answers batches and the upstream batches.
void RunPushback(bool batching) {
  absl::StatusOr<BatchingProvider> started =
      StartLoadTestUpstream(batching, kBatchingProviderDelay);
  ASSERT_THAT(started, IsOk());
  BatchingProvider upstream = *std::move(started);
  NginxServer* const nginx = upstream.nginx.get();
  absl::StatusOr<InProcessServer> server = StartInProcessServer(LoadTestConfigYaml(
      kUpstream, nginx->url(), kLimit, 2, /*max_connections=*/2, batching ? kLoadTestBatch : ""));
  ASSERT_THAT(server, IsOk());
  const std::string rate_gauge =
      absl::Substitute(R"(switchboard_upstream_rate{upstream="$0"})", kUpstream);
  const std::string throttled =
      absl::Substitute(R"(switchboard_upstream_throttled_total{upstream="$0"})", kUpstream);
  std::unique_ptr<client::Client> client = MakeRpcClient(server->target, kCallDeadline);

  CallLoad load(*client,
                {kCallers, kDemandPerSecond, RpcRequest(kUpstream, "getSlot", kLoadTestParams)});
  absl::SleepFor(kBeforePushback);
  const absl::Time pushback_start = absl::Now();
  ASSERT_THAT(nginx->SetPushback(true), IsOk());
  absl::SleepFor(kPushback);
  const absl::StatusOr<double> lowered_rate = ScrapeMetric(server->metrics_port, rate_gauge);
  ASSERT_THAT(nginx->SetPushback(false), IsOk());
  const absl::Time pushback_end = absl::Now();
  // The rate climbs back as calls succeed.
  ASSERT_THAT(
      WaitForMetric(server->metrics_port, rate_gauge, [](double rate) { return rate == kLimit; }),
      IsOk());
  const absl::Time recovered = absl::Now();
  absl::SleepFor(kMeasuredWindow);
  load.Stop();

  absl::StatusOr<AccessLog> log = nginx->ReadAccessLog();
  ASSERT_THAT(log, IsOk());
  std::vector<AccessLogEntry> throttles;
  for (const AccessLogEntry& entry : log->entries) {
    if (entry.status == 429) throttles.push_back(entry);
  }
  ReportFigure("nginx_429s", throttles.size());
  ReportFigure("rate_during_pushback", lowered_rate.value_or(-1));
  ReportFigure("recovery_seconds", absl::ToDoubleSeconds(recovered - pushback_end));
  ReportFigure("nginx_requests_per_second_before",
               log->RequestsPerSecond(pushback_start - kBeforePushback / 2, pushback_start));
  ReportFigure("nginx_requests_per_second_during",
               log->RequestsPerSecond(pushback_start, pushback_end));
  ReportFigure("nginx_requests_per_second_after_recovery",
               log->RequestsPerSecond(recovered, recovered + kMeasuredWindow));
  ASSERT_THAT(throttles, SizeIs(Gt(0)));
  // After the first 429, only requests already in flight should reach nginx
  // until Retry-After has passed; over the whole pushback, a handful where
  // calls at the limit would have been 150; none after it.
  const absl::Time first_throttle = throttles.front().time;
  ReportFigure("nginx_requests_in_retry_after_pause",
               EntriesIn(*log, first_throttle + kInFlightSlack,
                         first_throttle + kRetryAfter - kInFlightSlack)
                   .size());
  ReportFigure("nginx_requests_during_pushback",
               EntriesIn(*log, pushback_start, pushback_end).size());
  ReportFigure("last_429_after_pushback_end_ms",
               absl::ToDoubleMilliseconds(throttles.back().time - pushback_end));

  // Switchboard saw every 429 nginx sent, and no more.
  EXPECT_THAT(ScrapeMetric(server->metrics_port, throttled),
              IsOkAndHolds(static_cast<double>(throttles.size())));
  // The rate went down...
  ASSERT_THAT(lowered_rate, IsOk());
  EXPECT_THAT(*lowered_rate, Le(kLimit / 2));
  // ...and back to the limit (WaitForMetric above), where it stayed.
  EXPECT_THAT(ScrapeMetric(server->metrics_port, rate_gauge), IsOkAndHolds(kLimit));
  if (batching) {
    // Calls shared requests; the provider saw no more calls than the
    // callers were answered or cut off (none sent twice: getSlot is not on
    // a retry list).
    const int calls = upstream.provider->calls();
    ReportFigure("provider_calls", calls);
    ReportFigure("provider_requests", upstream.provider->requests().size());
    EXPECT_GT(calls, static_cast<int>(upstream.provider->requests().size()));
    EXPECT_LE(calls, static_cast<int>(load.outcomes().size()));
  }
}

TEST(RpcPushbackTest, ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers) {
  RunPushback(/*batching=*/false);
}

TEST(RpcPushbackTest, WithAutoBatchingPushbackPausesOncePerRequestAndTheRateRecovers) {
  RunPushback(/*batching=*/true);
}

}  // namespace
}  // namespace switchboard::testing
