// The sbctl binary against an in-process server: publish from stdin then
// consume exactly those lines, error reporting and exit codes, health,
// subscribe --count, JSON-RPC calls through a real nginx provider, and the
// bench summaries.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/subprocess.h"

namespace switchboard {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

constexpr char kTopicsYaml[] = R"(
topics:
  - name: "news.*"
    kind: ephemeral
)";

std::string Lines(int from, int to) {
  std::string lines;
  for (int i = from; i <= to; ++i) absl::StrAppend(&lines, i, "\n");
  return lines;
}

std::vector<std::string> SplitLines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// The last non-empty line of `text`.
std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = SplitLines(text);
  return lines.empty() ? "" : lines.back();
}

class SbctlTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(kTopicsYaml); }

  void StartServer(const std::string& yaml) {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer(yaml);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::vector<std::string> Argv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SBCTL_BINARY, absl::StrCat("--server=", server_.target)};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Runs sbctl with stdin on /dev/null.
  testing::RunResult Sbctl(const std::vector<std::string>& args) {
    return testing::Run(Argv(args));
  }

  testing::InProcessServer server_;
};

TEST_F(SbctlTest, PublishedStdinLinesAreConsumedExactly) {
  // Through a real pipe, as a person types it.
  testing::RunResult published =
      testing::Run({"/bin/sh", "-c", "seq 1 1000 | \"$0\" --server=\"$1\" publish orders",
                    SBCTL_BINARY, server_.target});
  ASSERT_EQ(published.exit_code, 0) << published.stderr_text;
  EXPECT_EQ(published.stdout_text, "");

  testing::RunResult consumed = Sbctl({"consume", "orders", "--group=g", "--count=1000"});
  ASSERT_EQ(consumed.exit_code, 0) << consumed.stderr_text;
  // Each line comes back exactly once (sbctl does not promise print order).
  EXPECT_THAT(SplitLines(consumed.stdout_text),
              UnorderedElementsAreArray(SplitLines(Lines(1, 1000))));

  // Every one was acked: the group's next message is the next one published.
  ASSERT_EQ(Sbctl({"publish", "orders", "next"}).exit_code, 0);
  testing::RunResult next = Sbctl({"consume", "orders", "--group=g", "--count=1"});
  ASSERT_EQ(next.exit_code, 0) << next.stderr_text;
  EXPECT_EQ(next.stdout_text, "next\n");
}

TEST_F(SbctlTest, PublishPrintsOneIdPerMessageWhenAsked) {
  testing::RunResult published = Sbctl({"publish", "orders", "--print_ids", "a", "b", "c"});
  ASSERT_EQ(published.exit_code, 0) << published.stderr_text;
  EXPECT_EQ(SplitLines(published.stdout_text).size(), 3u);
}

TEST_F(SbctlTest, AnEmptyTopicFailsWithTheServersStatusWhateverTheInput) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"publish", ""}, std::vector<std::string>{"publish", "", "m"}}) {
    testing::RunResult result = Sbctl(args);  // Empty stdin.
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_EQ(result.stdout_text, "");
    EXPECT_THAT(result.stderr_text, StartsWith("INVALID_ARGUMENT: topic: "));
  }
}

TEST_F(SbctlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Sbctl({"consume", "orders"}).exit_code, 2);  // No --group.
  EXPECT_EQ(Sbctl({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Sbctl({"bench", "sideways"}).exit_code, 2);
}

TEST_F(SbctlTest, HealthExitsZeroWhenServing) {
  testing::RunResult health = Sbctl({"health"});
  EXPECT_EQ(health.exit_code, 0) << health.stderr_text;
  EXPECT_EQ(health.stdout_text, "SERVING\n");
  testing::RunResult broker = Sbctl({"health", "--service=switchboard.v1.Broker"});
  EXPECT_EQ(broker.exit_code, 0) << broker.stderr_text;
}

TEST_F(SbctlTest, HealthOfAnUnknownServiceFails) {
  testing::RunResult health = Sbctl({"health", "--service=no.such.Service"});
  EXPECT_EQ(health.exit_code, 1);
  EXPECT_THAT(health.stderr_text, StartsWith("NOT_FOUND"));
}

TEST_F(SbctlTest, SubscribeExitsAfterCountMessages) {
  absl::StatusOr<testing::Subprocess> subscriber =
      testing::Subprocess::Start(Argv({"subscribe", "news.eu", "--count=2"}));
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  // The subscription becomes live at some point after the start: publish
  // until sbctl has had its two messages and exits.
  std::optional<int> exit_code;
  for (int i = 0; i < 500 && !exit_code; ++i) {
    ASSERT_EQ(Sbctl({"publish", "news.eu", absl::StrCat("n", i)}).exit_code, 0);
    exit_code = subscriber->Wait(absl::Milliseconds(20));
  }
  ASSERT_EQ(exit_code, 0) << subscriber->stderr_text();
  EXPECT_THAT(subscriber->stdout_text(), MatchesRegex("n[0-9]+\nn[0-9]+\n"));
}

TEST_F(SbctlTest, BenchPublishEndsWithItsJsonSummary) {
  testing::RunResult bench = Sbctl({"bench", "publish", "--topic=bench", "--streams=2",
                                    "--batch=10", "--size=16", "--duration=1"});
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  EXPECT_THAT(LastLine(bench.stdout_text),
              MatchesRegex("\\{\"mode\":\"publish\",\"streams\":2,\"window\":16,\"batch\":10,"
                           "\"size\":16,.*\"msgs_per_sec\":[0-9.]+,.*\"p50_us\":[0-9]+,"
                           "\"p99_us\":[0-9]+,\"max_us\":[0-9]+,\"errors\":\\{\\}\\}"));
  EXPECT_THAT(bench.stderr_text, HasSubstr("msgs/s"));
}

TEST_F(SbctlTest, BenchPublisherEndsWithItsJsonSummary) {
  testing::RunResult bench =
      Sbctl({"bench", "publisher", "--topic=bench-publisher", "--publishers=4",
             "--max_in_flight_requests=2", "--size=16", "--duration=1"});
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  EXPECT_THAT(LastLine(bench.stdout_text),
              MatchesRegex("\\{\"mode\":\"publisher\",\"publishers\":4,\"callbacks\":false,"
                           "\"max_in_flight_requests\":2,\"max_attempts\":3,\"size\":16,.*"
                           "\"msgs\":[1-9][0-9]*,.*\"errors\":\\{\\}\\}"));
  // Callback chains, without dedup ids.
  testing::RunResult chained =
      Sbctl({"bench", "publisher", "--topic=bench-publisher", "--publishers=4", "--callbacks",
             "--max_attempts=1", "--size=16", "--duration=1"});
  ASSERT_EQ(chained.exit_code, 0) << chained.stderr_text;
  EXPECT_THAT(LastLine(chained.stdout_text),
              MatchesRegex("\\{\"mode\":\"publisher\",\"publishers\":4,\"callbacks\":true,"
                           "\"max_in_flight_requests\":1,\"max_attempts\":1,\"size\":16,.*"
                           "\"msgs\":[1-9][0-9]*,.*\"errors\":\\{\\}\\}"));
  EXPECT_EQ(Sbctl({"bench", "publisher", "--publishers=0"}).exit_code, 2);
  EXPECT_EQ(Sbctl({"bench", "publisher", "--max_attempts=0"}).exit_code, 2);
}

TEST_F(SbctlTest, BenchConsumeConsumesExactlyWhatItPrepublished) {
  // A topic of its own: the group would also see anything else published there.
  testing::RunResult bench = Sbctl({"bench", "consume", "--topic=bench-consume", "--group=b",
                                    "--streams=3", "--messages=5000", "--duration=60"});
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  EXPECT_THAT(LastLine(bench.stdout_text),
              MatchesRegex("\\{\"mode\":\"consume\",.*\"msgs\":5000,.*\"errors\":\\{\\}\\}"));
}

TEST_F(SbctlTest, BenchLatencyReceivesEveryMessageItPublished) {
  // 200 msgs/s for 1 s is 200 messages by the schedule, however late the pacing.
  const std::vector<std::pair<std::string, std::vector<std::string>>> receivers = {
      {"consume", {"--topic=bench-latency", "--group=g"}}, {"subscribe", {"--topic=news.latency"}}};
  for (const auto& [receiver, receiver_args] : receivers) {
    std::vector<std::string> args = {"bench", "latency", "--rate=200", "--duration=1"};
    args.insert(args.end(), receiver_args.begin(), receiver_args.end());
    testing::RunResult bench = Sbctl(args);
    ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
    EXPECT_THAT(LastLine(bench.stdout_text),
                MatchesRegex(absl::StrCat("\\{\"mode\":\"latency\",\"receiver\":\"", receiver,
                                          "\",\"rate\":200.0,\"size\":100,\"published\":200,.*"
                                          "\"msgs\":200,.*\"p50_us\":[0-9]+,\"p99_us\":[0-9]+,"
                                          "\"max_us\":[0-9]+,\"errors\":\\{\\}\\}")));
  }
}

// Upstream `chain` answers every call with kResult; upstream `failing` with a
// JSON-RPC error object. Both are real nginx servers without a rate limit.
class SbctlCallTest : public SbctlTest {
 protected:
  static constexpr char kResult[] = R"({"slot":42})";
  static constexpr char kError[] = R"({"code":-32601,"message":"Method not found"})";

  void SetUp() override {
    testing::NginxServer::Options answering;
    answering.answer = absl::StrCat(R"({"jsonrpc":"2.0","result":)", kResult, R"(,"id":1})");
    absl::StatusOr<std::unique_ptr<testing::NginxServer>> chain =
        testing::NginxServer::Start(answering);
    ASSERT_TRUE(chain.ok()) << chain.status();
    chain_ = *std::move(chain);
    testing::NginxServer::Options failing;
    failing.answer = absl::StrCat(R"({"jsonrpc":"2.0","error":)", kError, R"(,"id":1})");
    absl::StatusOr<std::unique_ptr<testing::NginxServer>> failing_server =
        testing::NginxServer::Start(failing);
    ASSERT_TRUE(failing_server.ok()) << failing_server.status();
    failing_ = *std::move(failing_server);
    StartServer(absl::StrCat("upstreams:\n  - name: chain\n    urls: [\"", chain_->url(),
                             "\"]\n  - name: failing\n    urls: [\"", failing_->url(), "\"]\n"));
  }

  std::unique_ptr<testing::NginxServer> chain_;
  std::unique_ptr<testing::NginxServer> failing_;
};

TEST_F(SbctlCallTest, CallPrintsTheResult) {
  testing::RunResult call = Sbctl({"call", "chain", "getSlot", "[]"});
  ASSERT_EQ(call.exit_code, 0) << call.stderr_text;
  EXPECT_EQ(call.stdout_text, absl::StrCat(kResult, "\n"));
}

TEST_F(SbctlCallTest, CallOfAJsonRpcErrorPrintsTheErrorAndExitsOne) {
  testing::RunResult call = Sbctl({"call", "failing", "getSlot"});
  EXPECT_EQ(call.exit_code, 1);
  EXPECT_EQ(call.stdout_text, "");
  EXPECT_EQ(call.stderr_text, absl::StrCat(kError, "\n"));
}

TEST_F(SbctlCallTest, CallOfAnUnknownUpstreamFailsWithTheServersStatus) {
  testing::RunResult call = Sbctl({"call", "nowhere", "getSlot"});
  EXPECT_EQ(call.exit_code, 1);
  EXPECT_THAT(call.stderr_text, StartsWith("NOT_FOUND"));
}

TEST_F(SbctlCallTest, BenchCallEndsWithItsJsonSummaryAndCoalescesNothing) {
  size_t logged = 0;  // Upstream requests so far, by the provider's access log.
  for (const std::string transport : {"unary", "stream"}) {
    SCOPED_TRACE(transport);
    std::vector<std::string> args = {
        "bench", "call", "--upstream=chain", "--method=getSlot", "--concurrency=8", "--duration=1"};
    if (transport == "stream") args.push_back("--stream");
    testing::RunResult bench = Sbctl(args);
    ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
    const std::string summary = LastLine(bench.stdout_text);
    EXPECT_THAT(summary, MatchesRegex(absl::StrCat(
                             "\\{\"mode\":\"call\",\"upstream\":\"chain\",\"method\":\"getSlot\","
                             "\"params\":\"counter\",\"transport\":\"",
                             transport,
                             "\",\"concurrency\":8,\"rate\":0.0,.*"
                             "\"calls\":[1-9][0-9]*,\"calls_per_sec\":[0-9.]+,.*\"p50_us\":[0-9]+,"
                             "\"p99_us\":[0-9]+,\"max_us\":[0-9]+,\"errors\":\\{\\}\\}")));
    EXPECT_THAT(bench.stderr_text, HasSubstr("calls/s"));
    // Every call counted made its own upstream request: none was coalesced.
    const std::vector<std::string> calls_field =
        absl::StrSplit(summary.substr(summary.find("\"calls\":") + 8), ',');
    int64_t calls = 0;
    ASSERT_TRUE(absl::SimpleAtoi(calls_field.front(), &calls)) << summary;
    logged += static_cast<size_t>(calls);
    EXPECT_TRUE(chain_->WaitForAccessLog(logged).ok());
  }
}

TEST_F(SbctlCallTest, BenchCallWithARateMakesExactlyThatManyCalls) {
  // 200 calls/s for 1 s is 200 calls by the schedule, however late the pacing.
  testing::RunResult bench = Sbctl({"bench", "call", "--upstream=chain", "--method=getSlot",
                                    "--params=[]", "--rate=200", "--duration=1"});
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  EXPECT_THAT(
      LastLine(bench.stdout_text),
      MatchesRegex(
          "\\{\"mode\":\"call\",.*\"params\":\"fixed\",\"transport\":\"unary\",\"concurrency\":0,"
          "\"rate\":200.0,.*\"calls\":200,.*\"errors\":\\{\\}\\}"));
}

TEST_F(SbctlCallTest, BenchCallCountsErrorsByCode) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--upstream=nowhere", "NOT_FOUND"}, {"--upstream=failing", "JSON_RPC_ERROR"}};
  for (const auto& [upstream, code] : cases) {
    for (const std::string transport : {"--stream=false", "--stream"}) {
      testing::RunResult bench = Sbctl({"bench", "call", upstream, "--method=getSlot",
                                        "--concurrency=2", "--duration=0.3", transport});
      ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
      EXPECT_THAT(LastLine(bench.stdout_text),
                  MatchesRegex(absl::StrCat(".*\"calls\":0,.*\"errors\":\\{\"", code,
                                            "\":[1-9][0-9]*\\}\\}")));
    }
  }
}

TEST_F(SbctlCallTest, BenchCallUsageErrorsExitTwo) {
  EXPECT_EQ(Sbctl({"bench", "call", "--method=getSlot"}).exit_code, 2);  // No --upstream.
  EXPECT_EQ(Sbctl({"bench", "call", "--upstream=chain"}).exit_code, 2);  // No --method.
  EXPECT_EQ(
      Sbctl({"bench", "call", "--upstream=chain", "--method=getSlot", "--concurrency=0"}).exit_code,
      2);
  EXPECT_EQ(Sbctl({"bench", "call", "--upstream=chain", "--method=getSlot", "--rate=0"}).exit_code,
            2);
}

}  // namespace
TEST_F(SbctlTest, LimitShowsAnUpstreamsLocalLimit) {
  StartServer(R"yaml(
upstreams:
  - name: provider
    urls: ["http://127.0.0.1:1/"]
    rate_limit: {requests_per_second: 50, burst: 5}
  - name: unlimited
    urls: ["http://127.0.0.1:1/"]
)yaml");
  testing::RunResult limit = Sbctl({"limit", "provider"});
  ASSERT_EQ(limit.exit_code, 0) << limit.stderr_text;
  EXPECT_EQ(limit.stdout_text,
            "upstream: provider\nscope: local\nconfigured_rate: 50\nrate: 50\nburst: 5\n"
            "queue_depth: 0\nin_flight: 0\n");
  testing::RunResult unlimited = Sbctl({"limit", "unlimited"});
  ASSERT_EQ(unlimited.exit_code, 0) << unlimited.stderr_text;
  EXPECT_THAT(unlimited.stdout_text, ::testing::HasSubstr("scope: none\n"));
  testing::RunResult unknown = Sbctl({"limit", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.stderr_text,
              ::testing::HasSubstr("NOT_FOUND: upstream: no upstream named \"nope\""));
  testing::RunResult empty = Sbctl({"limit", ""});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.stderr_text, ::testing::HasSubstr("INVALID_ARGUMENT: upstream:"));
}

}  // namespace switchboard
