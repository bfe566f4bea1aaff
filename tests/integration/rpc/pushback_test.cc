// Issue 4's "Provider pushback" acceptance test: while nginx answers every
// request with 429 and `Retry-After: 1`, Switchboard pauses for that second
// after each 429 and lowers its rate (AIMD); once nginx stops, the rate
// climbs back to the configured limit and the provider gets it again.
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

using ::testing::Ge;
using ::testing::Gt;
using ::testing::IsEmpty;
using ::testing::Le;
using ::testing::Lt;
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
// Requests already on their way when a 429 arrives still reach nginx: they
// are answered within this.
constexpr absl::Duration kInFlightSlack = absl::Milliseconds(100);
constexpr absl::Duration kMeasuredWindow = absl::Seconds(2);

TEST(RpcPushbackTest, ProviderPushbackPausesAndSlowsSwitchboardThenTheRateRecovers) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<InProcessServer> server =
      StartInProcessServer(LoadTestConfigYaml(kUpstream, (*nginx)->url(), kLimit, 2));
  ASSERT_THAT(server, IsOk());
  const std::string rate_gauge =
      absl::Substitute(R"(switchboard_upstream_rate{upstream="$0"})", kUpstream);
  const std::string throttled =
      absl::Substitute(R"(switchboard_upstream_throttled_total{upstream="$0"})", kUpstream);
  std::unique_ptr<client::Client> client = MakeRpcClient(server->target, kCallDeadline);

  CallLoad load(*client, {kCallers, kDemandPerSecond, RpcRequest(kUpstream, "getSlot")});
  absl::SleepFor(kBeforePushback);
  const absl::Time pushback_start = absl::Now();
  ASSERT_THAT((*nginx)->SetPushback(true), IsOk());
  absl::SleepFor(kPushback);
  const absl::StatusOr<double> lowered_rate = ScrapeMetric(server->metrics_port, rate_gauge);
  ASSERT_THAT((*nginx)->SetPushback(false), IsOk());
  const absl::Time pushback_end = absl::Now();
  // The rate climbs back as calls succeed.
  ASSERT_THAT(
      WaitForMetric(server->metrics_port, rate_gauge, [](double rate) { return rate == kLimit; }),
      IsOk());
  const absl::Time recovered = absl::Now();
  absl::SleepFor(kMeasuredWindow);
  load.Stop();

  absl::StatusOr<AccessLog> log = (*nginx)->ReadAccessLog();
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

  // Switchboard saw every 429 nginx sent, and no more.
  ASSERT_THAT(throttles, SizeIs(Gt(0)));
  EXPECT_THAT(ScrapeMetric(server->metrics_port, throttled),
              IsOkAndHolds(static_cast<double>(throttles.size())));
  // It backed off: after the first 429, nothing but the requests already in
  // flight reached nginx until Retry-After had passed...
  const absl::Time first_throttle = throttles.front().time;
  EXPECT_THAT(EntriesIn(*log, first_throttle + kInFlightSlack,
                        first_throttle + kRetryAfter - kInFlightSlack),
              IsEmpty());
  // ...so over the whole pushback nginx answered a handful of requests, where
  // calls at the limit would have been 150.
  EXPECT_THAT(EntriesIn(*log, pushback_start, pushback_end), SizeIs(Le(10)));
  // And the rate went down.
  ASSERT_THAT(lowered_rate, IsOk());
  EXPECT_THAT(*lowered_rate, Le(kLimit / 2));
  // Once nginx stopped pushing back, no more 429s, and the rate recovered
  // to the limit.
  EXPECT_THAT(throttles.back().time, Lt(pushback_end + kInFlightSlack));
  EXPECT_THAT(log->RequestsPerSecond(recovered, recovered + kMeasuredWindow),
              Ge(kMinShareOfRateLimit * kLimit));
}

}  // namespace
}  // namespace switchboard::testing
