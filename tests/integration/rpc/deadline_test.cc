// Issue 4's "Deadline rejection" acceptance test: behind a backlog that the
// upstream's limiter (5 calls/s) needs about a second to admit, a call whose
// deadline is sooner is refused with RESOURCE_EXHAUSTED and a
// `retry-after-ms` trailer, rather than waiting and timing out (it is counted
// as refused on arrival, reason "deadline", not dropped from the queue); it
// never reaches the provider. How soon the refusals come (the issue's 5 ms)
// is a figure, held to its bound by tests/perf/bench_timing.sh.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
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
using ::testing::Not;
using ::testing::Optional;

constexpr char kUpstream[] = "provider";
// One call every 200 ms, no burst beyond one call.
constexpr double kUpstreamRate = 5;
// Calls waiting with a long deadline: all but the first queue, and the last
// is admitted (kBacklog - 1) x 200 ms after it.
constexpr int kBacklog = 6;
constexpr absl::Duration kBacklogDeadline = absl::Seconds(10);
// Probes come once at least this many calls are queued: the limiter cannot
// admit a probe for 4 x 200 ms, far past its deadline.
constexpr int kQueuedBeforeProbes = 4;
constexpr absl::Duration kProbeDeadline = absl::Milliseconds(250);
constexpr int kProbes = 20;

TEST(RpcDeadlineTest, CallThatCannotBeAdmittedBeforeItsDeadlineIsRefusedAtOnceWithRetryAfter) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<InProcessServer> server =
      StartInProcessServer(LoadTestConfigYaml(kUpstream, (*nginx)->url(), kUpstreamRate, 1));
  ASSERT_THAT(server, IsOk());
  const v1::CallRequest request = RpcRequest(kUpstream, "getSlot");

  std::unique_ptr<client::Client> patient = MakeRpcClient(server->target, kBacklogDeadline);
  std::vector<CallOutcome> backlog(kBacklog);
  std::vector<std::thread> backlog_callers;
  for (CallOutcome& outcome : backlog) {
    backlog_callers.emplace_back([&] { outcome = TimedCall(*patient, request); });
  }
  const std::string queue_depth =
      absl::Substitute(R"(switchboard_upstream_queue_depth{upstream="$0"})", kUpstream);
  ASSERT_THAT(WaitForMetric(server->metrics_port, queue_depth,
                            [](double depth) { return depth >= kQueuedBeforeProbes; }),
              IsOk());

  std::unique_ptr<client::Client> hurried = MakeRpcClient(server->target, kProbeDeadline);
  std::vector<absl::Duration> refusal_times;
  for (int i = 0; i < kProbes; ++i) {
    const CallOutcome probe = TimedCall(*hurried, request);
    const absl::Duration took = probe.end - probe.start;
    EXPECT_THAT(probe.status, StatusIs(absl::StatusCode::kResourceExhausted));
    // The delay says when the limiter could take it: later than the
    // deadline allowed (the trailer is in whole milliseconds).
    EXPECT_THAT(probe.retry_after, Optional(Ge(kProbeDeadline - took - absl::Milliseconds(1))));
    refusal_times.push_back(took);
  }
  // The streamed form answers the same way, in its response.
  {
    grpc::ClientContext context;
    patient->PrepareContext(context);
    context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcWaitTimeout));
    auto stream = patient->rpc().CallStream(&context);
    v1::CallRequest streamed = request;
    streamed.set_request_id(7);
    streamed.set_timeout_ms(absl::ToInt64Milliseconds(kProbeDeadline));
    ASSERT_TRUE(stream->Write(streamed));
    v1::CallResponse response;
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.request_id(), 7u);
    EXPECT_EQ(response.status().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
    EXPECT_GE(response.retry_after_ms(), absl::ToInt64Milliseconds(kProbeDeadline) - 1);
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  for (std::thread& caller : backlog_callers) caller.join();

  std::sort(refusal_times.begin(), refusal_times.end());
  const absl::Duration median = refusal_times[refusal_times.size() / 2];
  ReportFigure("refusal_median_us", absl::ToDoubleMicroseconds(median));
  ReportFigure("refusal_max_us", absl::ToDoubleMicroseconds(refusal_times.back()));
  // The patient calls were all admitted and answered; the refused ones
  // never reached the provider.
  for (const CallOutcome& outcome : backlog) EXPECT_THAT(outcome.status, IsOk());
  absl::StatusOr<AccessLog> log = (*nginx)->WaitForAccessLog(kBacklog);
  ASSERT_THAT(log, IsOk());
  EXPECT_EQ(log->entries.size(), static_cast<size_t>(kBacklog));
  EXPECT_THAT(ScrapeMetric(server->metrics_port,
                           absl::Substitute(R"(switchboard_upstream_rejections_total{)"
                                            R"(reason="deadline",upstream="$0"})",
                                            kUpstream)),
              IsOkAndHolds(kProbes + 1));
  // None of them waited in the queue for its deadline to pass.
  EXPECT_THAT(ScrapeMetric(server->metrics_port,
                           absl::Substitute(R"(switchboard_upstream_rejections_total{)"
                                            R"(reason="deadline_passed",upstream="$0"})",
                                            kUpstream)),
              Not(IsOkAndHolds(Gt(0))));
}

}  // namespace
}  // namespace switchboard::testing
