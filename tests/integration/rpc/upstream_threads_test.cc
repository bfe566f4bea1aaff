// Issue 12's upstream I/O on several threads: with server.upstream_threads
// above one, an upstream's requests run on several threads, each with its
// own libcurl multi handle and a share of the upstream's connections, and
// max_connections still holds in total.
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using ::testing::IsSupersetOf;

constexpr absl::Duration kCallDeadline = absl::Seconds(20);

// The names of this process's threads.
std::set<std::string> ThreadNames() {
  std::set<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  return names;
}

TEST(RpcUpstreamThreadsTest, RequestsSpreadOverThreadsWithinMaxConnectionsInTotal) {
  constexpr int kMaxConnections = 3;
  constexpr int kCalls = 60;
  ScriptedHttpServer::Script script;
  script.echo_params = true;
  absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> provider = ScriptedHttpServer::Start(script);
  ASSERT_THAT(provider, IsOk());
  // Four I/O threads, three connections: three shards of one connection.
  absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
      R"(
server: {upstream_threads: 4}
upstreams:
  - {name: sharded, urls: ["$0"], max_connections: $1, coalescing: {enabled: false}}
)",
      (*provider)->url(), kMaxConnections));
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT(ThreadNames(),
              IsSupersetOf({"sb-upstream", "sb-upstream-1", "sb-upstream-2", "sb-upstream-3"}));
  std::unique_ptr<client::Client> client = MakeRpcClient(server->target, kCallDeadline);

  // The provider holds its answers: the first requests stay in flight, one
  // on each shard's connection, while the other calls wait in admission
  // (max_connections requests in flight at most).
  (*provider)->HoldAnswers();
  std::vector<CallOutcome> outcomes(kCalls);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      outcomes[i] = TimedCall(*client, RpcRequest("sharded", "getSlot", absl::StrCat("[", i, "]")));
    });
  }
  ASSERT_TRUE((*provider)->WaitForRequests(kMaxConnections, kRpcWaitTimeout));
  EXPECT_EQ((*provider)->connections(), kMaxConnections);
  (*provider)->ReleaseAnswers();
  for (std::thread& caller : callers) caller.join();

  for (int i = 0; i < kCalls; ++i) {
    ASSERT_THAT(outcomes[i].status, IsOk()) << "call " << i;
    EXPECT_EQ(outcomes[i].response.result_json(), absl::StrCat("[", i, "]")) << "call " << i;
  }
  EXPECT_EQ((*provider)->calls(), kCalls);
  // Every connection kept alive, none beyond the cap, and their count came
  // home from the threads that opened them.
  EXPECT_EQ((*provider)->connections(), kMaxConnections);
  EXPECT_THAT(
      WaitForMetric(server->metrics_port, R"(switchboard_upstream_connections{upstream="sharded"})",
                    [](double open) { return open == kMaxConnections; }),
      IsOkAndHolds(kMaxConnections));
}

}  // namespace
}  // namespace switchboard::testing
