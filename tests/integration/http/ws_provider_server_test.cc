// The scripted WebSocket provider harness itself (WsProviderServer and
// tests/testing/ws_provider.py), driven by a small Python WebSocket client
// run as a subprocess: subscribes are recorded with their params, path and
// Authorization header; notifications arrive byte for byte; refusals,
// unsubscribes, abrupt and clean closes, freezing (a client's keepalive times
// out) and Reset() behave as the header says. One provider serves the suite,
// reset before each test.
#include "tests/testing/ws_provider_server.h"

#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

// A WebSocket client: argv is url, Authorization ("" for none), keepalive
// ping interval in seconds (0: none), then steps: ">text" sends a frame
// ("$SUB" in it becomes the JSON of the last answer's result), "<" prints
// the next frame received as "< frame". A closed connection prints
// "CLOSED <code received>" (1006: no close frame), then " sent <code>" when
// the client sent a close frame, and exits 3; no frame within 10 s prints "TIMEOUT" and
// exits 4.
constexpr char kClientScript[] = R"(
import asyncio, json, sys, websockets
async def main(url, auth, ping, steps):
    out = sys.stdout.buffer
    ping = float(ping) or None
    headers = {"Authorization": auth} if auth else {}
    last = None
    async with websockets.connect(url, extra_headers=headers, ping_interval=ping,
                                  ping_timeout=ping, close_timeout=1) as ws:
        try:
            for step in steps:
                if step.startswith(">"):
                    await ws.send(step[1:].replace("$SUB", json.dumps(last)))
                else:
                    frame = await asyncio.wait_for(ws.recv(), 10)
                    last = json.loads(frame).get("result")
                    out.write(b"< " + frame.encode("utf-8") + b"\n")
                    out.flush()
        except websockets.ConnectionClosed as closed:
            sent = b" sent %d" % closed.sent.code if closed.sent else b""
            out.write(b"CLOSED %d%s\n" % (closed.code, sent))
            return 3
        except asyncio.TimeoutError:
            out.write(b"TIMEOUT\n")
            return 4
    return 0
sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])))
)";

struct ClientOutput {
  int exit_code = -1;  // -1: still running after the wait.
  std::vector<std::string> lines;
  std::string stderr_text;
};

class WsProviderServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<WsProviderServer>> started = WsProviderServer::Start();
    if (started.ok()) {
      provider_ = started->release();
    } else {
      *start_error_ = started.status().ToString();
    }
  }

  static void TearDownTestSuite() {
    delete provider_;
    provider_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(provider_, nullptr) << *start_error_;
    ASSERT_THAT(provider_->Reset(), IsOk());
  }

  static absl::StatusOr<Subprocess> StartClient(std::vector<std::string> steps,
                                                absl::string_view path = "/",
                                                absl::string_view authorization = "",
                                                absl::string_view ping_seconds = "0") {
    std::vector<std::string> argv = {WsProviderServer::PythonBinary(),
                                     "-c",
                                     kClientScript,
                                     absl::StrCat(provider_->url(), path),
                                     std::string(authorization),
                                     std::string(ping_seconds)};
    argv.insert(argv.end(), steps.begin(), steps.end());
    return Subprocess::Start(std::move(argv));
  }

  static ClientOutput Finish(Subprocess& client, absl::Duration timeout = absl::Seconds(20)) {
    ClientOutput output;
    output.exit_code = client.Wait(timeout).value_or(-1);
    output.lines = absl::StrSplit(client.stdout_text(), '\n', absl::SkipEmpty());
    output.stderr_text = client.stderr_text();
    return output;
  }

  static inline WsProviderServer* provider_ = nullptr;
  static inline std::string* const start_error_ = new std::string;
};

constexpr char kSlotSubscribe[] = R"(>{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})";

TEST_F(WsProviderServerTest, SubscribeIsRecordedWithParamsPathAndAuthorization) {
  absl::StatusOr<Subprocess> client = StartClient(
      {R"(>{"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":["Acc1", {"encoding":"base64"}]})",
       "<", R"(>{"jsonrpc":"2.0","id":"two","method":"getSlot"})", "<"},
      "/token/abc", "Bearer secret");
  ASSERT_THAT(client, IsOk());
  const ClientOutput output = Finish(*client);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;

  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1);
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  const WsSubscribe& subscribe = stats->subscribes[0];
  EXPECT_EQ(subscribe.conn, 1);
  EXPECT_EQ(subscribe.method, "accountSubscribe");
  EXPECT_EQ(subscribe.params, R"(["Acc1",{"encoding":"base64"}])");
  EXPECT_TRUE(std::regex_match(subscribe.sub, std::regex("[1-9][0-9]{3,}"))) << subscribe.sub;
  EXPECT_THAT(
      output.lines,
      ElementsAre(
          absl::StrCat(R"(< {"jsonrpc":"2.0","result":)", subscribe.sub, R"(,"id":1})"),
          R"(< {"jsonrpc":"2.0","id":"two","error":{"code":-32601,"message":"Method not found"}})"));
  EXPECT_THAT(stats->paths, ElementsAre(Pair(1, "/token/abc")));
  EXPECT_THAT(stats->authorizations, ElementsAre(Pair(1, "Bearer secret")));
}

TEST_F(WsProviderServerTest, NotifyReachesTheSubscriberByteForByte) {
  constexpr char kResult[] = R"({"slot":18446744073709551615,"x":[1.50,"é"]})";
  absl::StatusOr<Subprocess> client = StartClient({kSlotSubscribe, "<", "<", "<"});
  ASSERT_THAT(client, IsOk());
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 1; },
                         absl::Seconds(10), "one subscribe");
  ASSERT_THAT(stats, IsOk());
  const std::string sub = stats->subscribes[0].sub;
  EXPECT_THAT(provider_->Notify("accountSubscribe", "1"), IsOkAndHolds(0));
  EXPECT_THAT(provider_->Notify("slotSubscribe", "1", R"(["other"])"), IsOkAndHolds(0));
  EXPECT_THAT(provider_->Notify("slotSubscribe", kResult), IsOkAndHolds(1));
  EXPECT_THAT(provider_->Notify("slotSubscribe", "2", "null"), IsOkAndHolds(1));

  const ClientOutput output = Finish(*client);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;
  EXPECT_THAT(
      output.lines,
      ElementsAre(absl::StrCat(R"(< {"jsonrpc":"2.0","result":)", sub, R"(,"id":1})"),
                  absl::StrCat(R"(< {"jsonrpc":"2.0","method":"slotNotification",)",
                               R"("params":{"result":)", kResult, R"(,"subscription":)", sub, "}}"),
                  absl::StrCat(R"(< {"jsonrpc":"2.0","method":"slotNotification",)",
                               R"("params":{"result":2,"subscription":)", sub, "}}")));
}

TEST_F(WsProviderServerTest, EthSubscribeGetsAHexIdAndEthSubscriptionNotifications) {
  absl::StatusOr<Subprocess> client = StartClient(
      {R"(>{"jsonrpc":"2.0","id":5,"method":"eth_subscribe","params":["logs",{"address":"0x1"}]})",
       "<", "<"});
  ASSERT_THAT(client, IsOk());
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.subscribes.empty(); },
                         absl::Seconds(10), "a subscribe");
  ASSERT_THAT(stats, IsOk());
  const std::string sub = stats->subscribes[0].sub;
  EXPECT_TRUE(std::regex_match(sub, std::regex(R"("0x[0-9a-f]{32}")"))) << sub;
  // Params compare as JSON: the spacing differs from the subscribe's.
  EXPECT_THAT(provider_->Notify("eth_subscribe", R"({"n": 1})", R"(["logs", {"address": "0x1"}])"),
              IsOkAndHolds(1));

  const ClientOutput output = Finish(*client);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;
  EXPECT_THAT(
      output.lines,
      ElementsAre(absl::StrCat(R"(< {"jsonrpc":"2.0","result":)", sub, R"(,"id":5})"),
                  absl::StrCat(R"(< {"jsonrpc":"2.0","method":"eth_subscription",)",
                               R"("params":{"subscription":)", sub, R"(,"result":{"n": 1}}})")));
}

TEST_F(WsProviderServerTest, RefuseMakesTheSubscribeAnswerCarryTheError) {
  ASSERT_THAT(provider_->Refuse("slotSubscribe", R"({"code":-32000,"message":"too many"})"),
              IsOk());
  absl::StatusOr<Subprocess> refused = StartClient({kSlotSubscribe, "<"});
  ASSERT_THAT(refused, IsOk());
  ClientOutput output = Finish(*refused);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;
  EXPECT_THAT(
      output.lines,
      ElementsAre(R"(< {"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"too many"}})"));

  ASSERT_THAT(provider_->Refuse("slotSubscribe", std::nullopt), IsOk());
  absl::StatusOr<Subprocess> accepted = StartClient({kSlotSubscribe, "<"});
  ASSERT_THAT(accepted, IsOk());
  output = Finish(*accepted);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;
  EXPECT_THAT(output.lines, ElementsAre(::testing::StartsWith(R"(< {"jsonrpc":"2.0","result":)")));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].conn, 2);
}

TEST_F(WsProviderServerTest, UnsubscribeEndsTheSubscriptionOnce) {
  absl::StatusOr<Subprocess> client = StartClient(
      {kSlotSubscribe, "<",
       R"(>{"jsonrpc":"2.0","id":2,"method":"slotUnsubscribe","params":[$SUB]})", "<",
       R"(>{"jsonrpc":"2.0","id":3,"method":"slotUnsubscribe","params":[12345678]})", "<"});
  ASSERT_THAT(client, IsOk());
  const ClientOutput output = Finish(*client);
  ASSERT_EQ(output.exit_code, 0) << output.stderr_text;
  ASSERT_THAT(output.lines, SizeIs(3));
  EXPECT_EQ(output.lines[1], R"(< {"jsonrpc":"2.0","result":true,"id":2})");
  EXPECT_EQ(output.lines[2], R"(< {"jsonrpc":"2.0","result":false,"id":3})");
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  ASSERT_THAT(stats->unsubscribes, SizeIs(2));
  EXPECT_EQ(stats->unsubscribes[0].method, "slotUnsubscribe");
  EXPECT_EQ(stats->unsubscribes[0].sub, stats->subscribes[0].sub);
  EXPECT_TRUE(stats->unsubscribes[0].known);
  EXPECT_EQ(stats->unsubscribes[1].sub, "12345678");
  EXPECT_FALSE(stats->unsubscribes[1].known);
  EXPECT_THAT(provider_->Notify("slotSubscribe", "1"), IsOkAndHolds(0));
}

TEST_F(WsProviderServerTest, CloseAbortsEveryConnectionWithoutACloseFrame) {
  absl::StatusOr<Subprocess> first = StartClient({kSlotSubscribe, "<", "<"});
  absl::StatusOr<Subprocess> second = StartClient({kSlotSubscribe, "<", "<"});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT(
      provider_->WaitFor(
          [](const WsProviderStats& s) { return s.subscribes.size() == 2 && s.open.size() == 2; },
          absl::Seconds(10), "two subscribed connections"),
      IsOk());
  EXPECT_THAT(provider_->Close(), IsOkAndHolds(2));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_THAT(stats->open, IsEmpty());
  EXPECT_EQ(stats->opened, 2);
  EXPECT_THAT(provider_->Notify("slotSubscribe", "1"), IsOkAndHolds(0));
  for (Subprocess* client : {&*first, &*second}) {
    const ClientOutput output = Finish(*client);
    EXPECT_EQ(output.exit_code, 3) << output.stderr_text;
    EXPECT_THAT(output.lines, ElementsAre(::testing::StartsWith("< "), "CLOSED 1006"));
  }
}

TEST_F(WsProviderServerTest, CloseCleanSendsGoingAwayToThatConnection) {
  absl::StatusOr<Subprocess> client = StartClient({kSlotSubscribe, "<", "<"});
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 1; },
                                 absl::Seconds(10), "a subscribe"),
              IsOk());
  EXPECT_THAT(provider_->CloseClean(2), IsOkAndHolds(0));  // No such connection.
  EXPECT_THAT(provider_->CloseClean(1), IsOkAndHolds(1));
  const ClientOutput output = Finish(*client);
  EXPECT_EQ(output.exit_code, 3) << output.stderr_text;
  EXPECT_THAT(output.lines, ElementsAre(::testing::StartsWith("< "), "CLOSED 1001 sent 1001"));
  EXPECT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.open.empty(); },
                                 absl::Seconds(10), "no open connection"),
              IsOk());
}

TEST_F(WsProviderServerTest, FreezeLetsTheClientKeepaliveTimeOut) {
  // Pings every 0.5 s, each answered within 0.5 s or the client sends a
  // close frame (1011), which goes unanswered too; unfrozen, the client would wait for its second
  // frame until it times out (TIMEOUT).
  absl::StatusOr<Subprocess> client = StartClient({kSlotSubscribe, "<", "<"}, "/", "", "0.5");
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 1; },
                                 absl::Seconds(10), "a subscribe"),
              IsOk());
  EXPECT_THAT(provider_->Freeze(), IsOkAndHolds(1));
  const ClientOutput output = Finish(*client);
  EXPECT_EQ(output.exit_code, 3) << output.stderr_text;
  EXPECT_THAT(output.lines, ElementsAre(::testing::StartsWith("< "), "CLOSED 1006 sent 1011"));
}

TEST_F(WsProviderServerTest, ResetForgetsEverythingAndNumbersConnectionsFromOne) {
  ASSERT_THAT(provider_->Refuse("logsSubscribe", R"({"code":1,"message":"no"})"), IsOk());
  absl::StatusOr<Subprocess> client = StartClient({kSlotSubscribe, "<", "<"});
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 1; },
                                 absl::Seconds(10), "a subscribe"),
              IsOk());
  ASSERT_THAT(provider_->Reset(), IsOk());
  const ClientOutput output = Finish(*client);
  EXPECT_THAT(output.lines, ElementsAre(::testing::StartsWith("< "), "CLOSED 1006"));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 0);
  EXPECT_THAT(stats->open, IsEmpty());
  EXPECT_THAT(stats->subscribes, IsEmpty());
  EXPECT_THAT(stats->paths, IsEmpty());

  absl::StatusOr<Subprocess> next =
      StartClient({R"(>{"jsonrpc":"2.0","id":1,"method":"logsSubscribe","params":["all"]})", "<"});
  ASSERT_THAT(next, IsOk());
  const ClientOutput next_output = Finish(*next);
  ASSERT_EQ(next_output.exit_code, 0) << next_output.stderr_text;
  EXPECT_THAT(next_output.lines,
              ElementsAre(::testing::StartsWith(R"(< {"jsonrpc":"2.0","result":)")));
  stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].conn, 1);
}

TEST_F(WsProviderServerTest, WaitForNamesWhatItAwaited) {
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return s.opened > 0; },
                         absl::Milliseconds(100), "a connection");
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded,
                              ::testing::HasSubstr("did not reach a connection")));
}

}  // namespace
}  // namespace switchboard::testing
