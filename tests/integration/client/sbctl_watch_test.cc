// `sbctl watch` as a real process against an in-process Switchboard whose
// upstream `sol` has ws_urls on a scripted WebSocket provider
// (tests/testing/ws_provider.py, started once for the suite): the exact
// stdout lines and exit code 0 after --count, the params and
// --unsubscribe_method reaching the provider, the note on stderr after
// Switchboard subscribed again, and the failures (exit 1 with the server's
// status on stderr, exit 2 for usage).
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/ws_provider_test.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

// How long a watch that must end may take.
constexpr absl::Duration kExitTimeout = absl::Seconds(30);

class SbctlWatchTest : public WsProviderTest {
 protected:
  void SetUp() override {
    WsProviderTest::SetUp();
    if (HasFatalFailure()) return;
    absl::StatusOr<InProcessServer> server =
        StartInProcessServer(absl::Substitute(R"(
upstreams:
  - name: sol
    urls: ["http://127.0.0.1:1/"]
    ws_urls: ["$0"]
    subscriptions: {linger_ms: 50, reconnect_initial_ms: 10, reconnect_max_ms: 100}
)",
                                              provider_->url()));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
  }

  std::vector<std::string> Argv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SBCTL_BINARY, absl::StrCat("--server=", server_.target)};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Runs sbctl to completion, stdin on /dev/null.
  RunResult Sbctl(const std::vector<std::string>& args) { return testing::Run(Argv(args)); }

  // Starts `sbctl watch ...` and waits until the provider has answered
  // `subscribes` subscribes in all.
  std::optional<Subprocess> StartWatch(const std::vector<std::string>& args,
                                       size_t subscribes = 1) {
    std::vector<std::string> watch_args = {"watch"};
    watch_args.insert(watch_args.end(), args.begin(), args.end());
    absl::StatusOr<Subprocess> watch = Subprocess::Start(Argv(watch_args));
    EXPECT_THAT(watch, IsOk());
    if (!watch.ok()) return std::nullopt;
    absl::StatusOr<WsProviderStats> stats = provider_->WaitFor(
        [subscribes](const WsProviderStats& s) { return s.subscribes.size() >= subscribes; },
        absl::Seconds(10), "sbctl's subscribe");
    EXPECT_THAT(stats, IsOk()) << watch->stderr_text();
    if (!stats.ok()) return std::nullopt;
    return *std::move(watch);
  }

  InProcessServer server_;
};

TEST_F(SbctlWatchTest, PrintsEachResultExactlyOnItsOwnLineAndExitsZeroAfterCount) {
  std::optional<Subprocess> watch = StartWatch({"sol", "slotSubscribe", "--count=3"});
  ASSERT_TRUE(watch.has_value());
  const std::vector<std::string> results = {
      R"({"parent":18446744073709551615,"root":1.50,"slot":7})", R"({ "slot" : "é\u00e9" })",
      "[1, 2 ,3]"};
  for (const std::string& result : results) {
    ASSERT_THAT(provider_->Notify("slotSubscribe", result), IsOkAndHolds(1));
  }
  EXPECT_EQ(watch->Wait(kExitTimeout), 0) << watch->stderr_text();
  EXPECT_EQ(watch->stdout_text(),
            absl::StrCat(results[0], "\n", results[1], "\n", results[2], "\n"));
  EXPECT_EQ(watch->stderr_text(), "");
  // Leaving released the provider subscription (after the linger).
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                         absl::Seconds(10), "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->unsubscribes[0].method, "slotUnsubscribe");
}

TEST_F(SbctlWatchTest, ParamsAndUnsubscribeMethodReachTheProvider) {
  std::optional<Subprocess> watch =
      StartWatch({"sol", "accountSubscribe", R"(["Acc1",{"encoding":"base64"}])", "--count=1",
                  "--unsubscribe_method=accountWatchUnsubscribe"});
  ASSERT_TRUE(watch.has_value());
  ASSERT_THAT(provider_->Notify("accountSubscribe", R"({"lamports":5})",
                                R"(["Acc1",{"encoding":"base64"}])"),
              IsOkAndHolds(1));
  EXPECT_EQ(watch->Wait(kExitTimeout), 0) << watch->stderr_text();
  EXPECT_EQ(watch->stdout_text(), "{\"lamports\":5}\n");
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                         absl::Seconds(10), "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].params, R"(["Acc1",{"encoding":"base64"}])");
  EXPECT_EQ(stats->unsubscribes[0].method, "accountWatchUnsubscribe");
  EXPECT_TRUE(stats->unsubscribes[0].known);
}

TEST_F(SbctlWatchTest, ANotificationAfterAResubscribeIsNotedOnStderrOnly) {
  std::optional<Subprocess> watch = StartWatch({"sol", "slotSubscribe", "--count=1"});
  ASSERT_TRUE(watch.has_value());
  ASSERT_THAT(provider_->Close(), IsOkAndHolds(1));
  ASSERT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 2; },
                                 absl::Seconds(10), "the resubscribe"),
              IsOk());
  ASSERT_THAT(provider_->Notify("slotSubscribe", "8"), IsOkAndHolds(1));
  EXPECT_EQ(watch->Wait(kExitTimeout), 0) << watch->stderr_text();
  EXPECT_EQ(watch->stdout_text(), "8\n");
  EXPECT_THAT(watch->stderr_text(), HasSubstr("subscribed again"));
}

TEST_F(SbctlWatchTest, AnUnknownUpstreamExitsOneNamingTheField) {
  RunResult watch = Sbctl({"watch", "nope", "slotSubscribe", "--count=1"});
  EXPECT_EQ(watch.exit_code, 1);
  EXPECT_EQ(watch.stdout_text, "");
  EXPECT_THAT(watch.stderr_text, StartsWith("NOT_FOUND: upstream: no upstream named \"nope\""));
}

TEST_F(SbctlWatchTest, TheProvidersRefusalExitsOneWithItsError) {
  ASSERT_THAT(provider_->Refuse("rootSubscribe", R"({"code":-32601,"message":"no roots here"})"),
              IsOk());
  RunResult watch = Sbctl({"watch", "sol", "rootSubscribe"});
  EXPECT_EQ(watch.exit_code, 1);
  EXPECT_EQ(watch.stdout_text, "");
  EXPECT_THAT(watch.stderr_text, StartsWith("FAILED_PRECONDITION: "));
  EXPECT_THAT(watch.stderr_text, HasSubstr(R"({"code":-32601,"message":"no roots here"})"));
}

TEST_F(SbctlWatchTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Sbctl({"watch", "sol"}).exit_code, 2);  // No METHOD.
  EXPECT_EQ(Sbctl({"watch", "sol", "slotSubscribe", "[]", "extra"}).exit_code, 2);
  EXPECT_EQ(Sbctl({"watch", "sol", "slotSubscribe", "--count=-1"}).exit_code, 2);
}

}  // namespace
}  // namespace switchboard::testing
