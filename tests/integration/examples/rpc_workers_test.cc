// example_rpc_workers (seed 004's five workers) as a real process against an
// in-process Switchboard whose one upstream is a real, rate-limited nginx.
// The workers together demand more than twice what Switchboard admits, so
// calls are refused with RESOURCE_EXHAUSTED and retry-after-ms; the workers
// wait and call again. Every worker gets answers, and the provider never
// answers 429: that comes from nginx's own access log. The upstream's
// ws_urls lead to a scripted WebSocket provider (WsProviderServer), which
// pushes slot notifications to the sixth worker, the watcher; without
// ws_urls the watcher alone stops, and the calls go on.
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
#include "tests/testing/ws_provider_server.h"

namespace switchboard::testing {
namespace {

using ::testing::AllOf;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::Le;
using ::testing::SizeIs;

// nginx allows 25 requests/s (burst 5); Switchboard admits 20 units/s
// (burst 3), a getProgramAccounts costing 2. At --pace=4 the workers ask for
// about 50 units/s, and a call not admitted within its 250 ms is refused.
constexpr char kProviderRate[] = "25r/s";
constexpr int kProviderBurst = 5;

// `ws_urls` (a line, indented) when not empty.
std::string UpstreamConfigYaml(const std::string& url, const std::string& ws_urls = "") {
  return absl::Substitute(R"(
upstreams:
  - name: solana
    urls: ["$0"]
    max_connections: 2
    rate_limit: {requests_per_second: 20, burst: 3}
    method_cost: {getProgramAccounts: 2}
$1
)",
                          url, ws_urls);
}

// The stdout line of the worker named `name`; empty when absent.
std::map<std::string, std::string> WorkerLine(
    const std::vector<std::map<std::string, std::string>>& lines, const std::string& name) {
  for (const auto& line : lines) {
    if (line.at("worker") == name) return line;
  }
  return {};
}

TEST(ExampleRpcWorkersTest, FiveWorkersShareARateLimitedUpstreamWithoutA429AndOneWatches) {
  NginxServer::Options nginx_options;
  nginx_options.rate_limit = kProviderRate;
  nginx_options.burst = kProviderBurst;
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(nginx_options);
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<std::unique_ptr<WsProviderServer>> provider = WsProviderServer::Start();
  ASSERT_THAT(provider, IsOk());
  absl::StatusOr<InProcessServer> server = StartInProcessServer(UpstreamConfigYaml(
      (*nginx)->url(), absl::StrCat("    ws_urls: [\"", (*provider)->url(), "\"]")));
  ASSERT_THAT(server, IsOk());

  absl::StatusOr<Subprocess> process = StartExample(
      EXAMPLE_RPC_WORKERS_BINARY, server->target,
      {"--duration=3s", "--pace=4", "--call_timeout=250ms", "--watch_method=slotSubscribe"});
  ASSERT_THAT(process, IsOk());
  // Once the watcher's subscription reached the provider, three slots.
  ASSERT_THAT((*provider)->WaitFor([](const WsProviderStats& s) { return !s.subscribes.empty(); },
                                   kExampleTimeout, "the watcher's slotSubscribe"),
              IsOk())
      << process->stderr_text();
  for (int slot = 100; slot < 103; ++slot) {
    ASSERT_THAT(
        (*provider)->Notify("slotSubscribe", absl::StrCat(R"({"parent":)", slot - 1, R"(,"root":)",
                                                          slot - 32, R"(,"slot":)", slot, "}")),
        IsOkAndHolds(1));
  }
  // Delivered before the run ends (the watcher logs its first one).
  ASSERT_TRUE(WaitForStderr(*process, "watcher: first notification")) << process->stderr_text();
  const std::optional<int> exit_code = process->Wait(kExampleTimeout);
  ASSERT_EQ(exit_code, 0) << process->stderr_text();
  const std::string stdout_text = process->stdout_text();
  const auto lines = KeyValueLines(stdout_text, "worker=");
  ASSERT_THAT(lines, SizeIs(6)) << stdout_text;

  const std::map<std::string, std::string> watcher = WorkerLine(lines, "watcher");
  ASSERT_FALSE(watcher.empty()) << stdout_text;
  EXPECT_EQ(watcher.at("method"), "slotSubscribe");
  EXPECT_THAT(IntField(watcher, "notifications"), AllOf(Ge(1), Le(3))) << stdout_text;
  EXPECT_EQ(IntField(watcher, "after_resubscribe"), 0);
  EXPECT_EQ(IntField(watcher, "dropped"), 0);
  EXPECT_EQ(IntField(watcher, "subscriptions"), 1);
  EXPECT_EQ(IntField(watcher, "refused"), 0);
  RecordProperty("watcher_notifications", watcher.at("notifications"));

  int64_t ok = 0;
  int64_t failed = 0;
  int64_t throttled = 0;
  for (const auto& worker : lines) {
    if (worker.at("worker") == "watcher") continue;
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

TEST(ExampleRpcWorkersTest, WithoutWsUrlsOnlyTheWatcherStopsAndWatchFalseLeavesItOut) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(NginxServer::Options());
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<InProcessServer> server =
      StartInProcessServer(UpstreamConfigYaml((*nginx)->url()));
  ASSERT_THAT(server, IsOk());
  const std::vector<std::string> argv = {
      EXAMPLE_RPC_WORKERS_BINARY, absl::StrCat("--server=", server->target), "--duration=1s"};

  const RunResult refused = testing::Run(argv, std::nullopt, kExampleTimeout);
  ASSERT_EQ(refused.exit_code, 0) << refused.stderr_text;
  const auto lines = KeyValueLines(refused.stdout_text, "worker=");
  ASSERT_THAT(lines, SizeIs(6)) << refused.stdout_text;
  const std::map<std::string, std::string> watcher = WorkerLine(lines, "watcher");
  ASSERT_FALSE(watcher.empty()) << refused.stdout_text;
  EXPECT_EQ(IntField(watcher, "refused"), 1);
  EXPECT_EQ(IntField(watcher, "notifications"), 0);
  EXPECT_THAT(refused.stderr_text, HasSubstr("ws_urls"));
  // The calls went on.
  int64_t ok = 0;
  for (const auto& worker : lines) {
    if (worker.at("worker") != "watcher") ok += IntField(worker, "ok");
  }
  EXPECT_THAT(ok, Gt(0)) << refused.stdout_text;

  std::vector<std::string> unwatched_argv = argv;
  unwatched_argv.push_back("--watch=false");
  const RunResult unwatched = testing::Run(unwatched_argv, std::nullopt, kExampleTimeout);
  ASSERT_EQ(unwatched.exit_code, 0) << unwatched.stderr_text;
  EXPECT_THAT(KeyValueLines(unwatched.stdout_text, "worker="), SizeIs(5)) << unwatched.stdout_text;
  EXPECT_TRUE(WorkerLine(KeyValueLines(unwatched.stdout_text, "worker="), "watcher").empty());
}

}  // namespace
}  // namespace switchboard::testing
