// Issue 15's drain budget: SIGTERM to a Switchboard with an Rpc.Call in
// flight to a provider that would answer in 60 s. At the gRPC cut-off the
// call is answered UNAVAILABLE and its request cancelled, and the process
// exits 0 within drain_timeout_ms plus a small margin, not when the provider
// answers.
#include <signal.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

constexpr absl::Duration kDrainTimeout = absl::Seconds(3);
// What the process may take beyond drain_timeout_ms to exit (the README's
// stated margin), and more for a loaded machine.
constexpr absl::Duration kExitMargin = absl::Seconds(1);
constexpr absl::Duration kLoadedMachine = absl::Seconds(2);

TEST(RpcDrainTest, ACallWaitingOnASlowProviderDoesNotHoldTheDrainPastItsBudget) {
  absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> provider =
      ScriptedHttpServer::Start(ScriptedHttpServer::Script{});
  ASSERT_THAT(provider, IsOk());
  (*provider)->HoldAnswers();  // The answer would come when the test ends.
  SwitchboardProcess process(
      SWITCHBOARD_BINARY,
      absl::Substitute(R"(
server: {drain_timeout_ms: $0}
upstreams:
  - name: provider
    urls: ["$1"]
    timeout_ms: 60000
)",
                       absl::ToInt64Milliseconds(kDrainTimeout), (*provider)->url()));
  ASSERT_THAT(process.Start(), IsOk());

  std::unique_ptr<client::Client> client = MakeRpcClient(process.target(), absl::Seconds(60));
  CallOutcome outcome;
  std::thread caller([&] { outcome = TimedCall(*client, RpcRequest("provider", "getSlot")); });
  ASSERT_TRUE((*provider)->WaitForRequests(1, absl::Seconds(10)));

  const absl::Time signalled = absl::Now();
  const absl::StatusOr<int> exit_code = process.SignalAndWait(SIGTERM, absl::Seconds(30));
  const absl::Duration drained_in = absl::Now() - signalled;
  caller.join();
  RecordProperty("drained_in_ms", absl::ToInt64Milliseconds(drained_in));
  ASSERT_THAT(exit_code, IsOkAndHolds(0));
  EXPECT_LE(drained_in, kDrainTimeout + kExitMargin + kLoadedMachine);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kUnavailable) << outcome.status;
  (*provider)->ReleaseAnswers();
}

}  // namespace
}  // namespace switchboard::testing
