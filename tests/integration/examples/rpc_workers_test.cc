// example_rpc_workers (seed 004's five workers) as a real process against an
// in-process Switchboard whose one upstream is a real, rate-limited nginx.
// The workers together demand more than twice what Switchboard admits, so
// calls are refused with RESOURCE_EXHAUSTED and retry-after-ms; the workers
// wait and call again. Every worker gets answers, and the provider never
// answers 429: that comes from nginx's own access log.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/examples/example_process.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::Gt;
using ::testing::SizeIs;

// nginx allows 25 requests/s (burst 5); Switchboard admits 20 units/s
// (burst 3), a getProgramAccounts costing 2. At --pace=4 the workers ask for
// about 50 units/s, and a call not admitted within its 250 ms is refused.
constexpr char kProviderRate[] = "25r/s";
constexpr int kProviderBurst = 5;

std::string UpstreamConfigYaml(const std::string& url) {
  return absl::Substitute(R"(
upstreams:
  - name: solana
    urls: ["$0"]
    max_connections: 2
    rate_limit: {requests_per_second: 20, burst: 3}
    method_cost: {getProgramAccounts: 2}
)",
                          url);
}

TEST(ExampleRpcWorkersTest, FiveWorkersShareARateLimitedUpstreamWithoutA429) {
  NginxServer::Options nginx_options;
  nginx_options.rate_limit = kProviderRate;
  nginx_options.burst = kProviderBurst;
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(nginx_options);
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<InProcessServer> server =
      StartInProcessServer(UpstreamConfigYaml((*nginx)->url()));
  ASSERT_THAT(server, IsOk());

  const RunResult run =
      testing::Run({EXAMPLE_RPC_WORKERS_BINARY, absl::StrCat("--server=", server->target),
                    "--duration=3s", "--pace=4", "--call_timeout=250ms"},
                   std::nullopt, kExampleTimeout);
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const auto workers = KeyValueLines(run.stdout_text, "worker=");
  ASSERT_THAT(workers, SizeIs(5)) << run.stdout_text;

  int64_t ok = 0;
  int64_t failed = 0;
  int64_t throttled = 0;
  for (const auto& worker : workers) {
    EXPECT_THAT(IntField(worker, "ok"), Gt(0)) << worker.at("worker");
    EXPECT_EQ(IntField(worker, "rpc_errors"), 0) << worker.at("worker");
    ok += IntField(worker, "ok");
    failed += IntField(worker, "failed");
    throttled += IntField(worker, "throttled");
    RecordProperty(absl::StrCat(worker.at("worker"), "_ok"), worker.at("ok"));
    RecordProperty(absl::StrCat(worker.at("worker"), "_throttled"), worker.at("throttled"));
  }
  // The demand was well above the limit: calls were refused and retried.
  EXPECT_THAT(throttled, Gt(0));

  absl::StatusOr<AccessLog> log = (*nginx)->ReadAccessLog();
  ASSERT_THAT(log, IsOk());
  std::map<int, int> statuses = log->CountByStatus();
  RecordProperty("nginx_200s", statuses[200]);
  RecordProperty("nginx_429s", statuses[429]);
  EXPECT_EQ(statuses[429], 0) << "nginx refused requests past its limit";
  EXPECT_THAT(statuses[200], Gt(0));
  // Identical calls in flight may share a request; a call given up on at its
  // deadline may still have been answered.
  EXPECT_LE(statuses[200], ok + failed);
}

}  // namespace
}  // namespace switchboard::testing
