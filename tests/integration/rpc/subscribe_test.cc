// Issue 14's provider subscriptions: Rpc.Subscribe streams of several
// workers share one WebSocket connection and one upstream subscription at a
// scripted WebSocket JSON-RPC provider (tests/testing/ws_provider.py), which
// this suite starts once. Each test starts its own Switchboard and resets
// the provider.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/v1/rpc.grpc.pb.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/ws_provider_test.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// One worker's view of one Rpc.Subscribe stream.
struct Watch {
  std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<grpc::ClientReader<v1::RpcNotification>> reader;
};

class RpcSubscribeTest : public WsProviderTest {
 protected:
  // Starts Switchboard with upstream `sol` on the provider, its
  // `subscriptions:` block set to `subscriptions`, and upstream `plain`
  // without ws_urls.
  // `sol_extra`, when given, adds keys to `sol` (", rate_limit: {...}").
  void StartSwitchboard(absl::string_view subscriptions = "{linger_ms: 200}",
                        absl::string_view sol_extra = "") {
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
upstreams:
  - {name: sol, urls: ["http://127.0.0.1:1/"], ws_urls: ["$0/key123"], subscriptions: $1$2}
  - {name: plain, urls: ["http://127.0.0.1:1/"]}
)",
        provider_->url(), subscriptions, sol_extra));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
  }

  // A gRPC channel of its own: one worker process.
  std::unique_ptr<v1::Rpc::Stub> NewWorker() {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // Its own connection.
    // A stream's HTTP/2 window stays at its initial size, so a stream that
    // is not read holds back Switchboard's writes soon.
    arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    return v1::Rpc::NewStub(
        grpc::CreateCustomChannel(server_.target, grpc::InsecureChannelCredentials(), arguments));
  }

  static Watch Subscribe(v1::Rpc::Stub& worker, absl::string_view method, absl::string_view params,
                         absl::string_view upstream = "sol") {
    v1::RpcSubscribeRequest request;
    request.set_upstream(std::string(upstream));
    request.set_method(std::string(method));
    request.set_params_json(std::string(params));
    Watch watch;
    watch.context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    watch.reader = worker.Subscribe(watch.context.get(), request);
    return watch;
  }

  // Subscribes and waits until the provider accepted the subscription.
  static Watch SubscribeLive(v1::Rpc::Stub& worker, absl::string_view method,
                             absl::string_view params) {
    Watch watch = Subscribe(worker, method, params);
    watch.reader->WaitForInitialMetadata();
    return watch;
  }

  // The status a stream that must fail ends with.
  static grpc::Status Refusal(v1::Rpc::Stub& worker, absl::string_view upstream,
                              absl::string_view method, absl::string_view params) {
    Watch watch = Subscribe(worker, method, params, upstream);
    v1::RpcNotification notification;
    while (watch.reader->Read(&notification)) {
    }
    return watch.reader->Finish();
  }

  InProcessServer server_;
};

TEST_F(RpcSubscribeTest, FiftyStreamsOfFiveWorkersShareOneConnectionAndOneSubscription) {
  StartSwitchboard();
  std::vector<std::unique_ptr<v1::Rpc::Stub>> workers;
  std::vector<Watch> watches;
  for (int w = 0; w < 5; ++w) {
    workers.push_back(NewWorker());
    for (int s = 0; s < 10; ++s)
      watches.push_back(SubscribeLive(*workers.back(), "slotSubscribe", ""));
  }
  // And five worker processes: sbctl watch, until three notifications.
  std::vector<RunResult> watched(5);
  std::vector<std::thread> processes;
  for (RunResult& result : watched) {
    processes.emplace_back([this, &result] {
      result = testing::Run({SBCTL_BINARY, absl::StrCat("--server=", server_.target), "watch",
                             "sol", "slotSubscribe", "--count=3"},
                            std::nullopt, absl::Seconds(60));
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ScrapeMetric(server_.metrics_port, R"(switchboard_ws_subscribers{upstream="sol"})")
                 .value_or(0) < 55 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));  // Polls for the 55 streams.
  }
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1) << stats->DebugString();
  ASSERT_THAT(stats->subscribes, SizeIs(1)) << stats->DebugString();
  EXPECT_EQ(stats->subscribes[0].method, "slotSubscribe");
  EXPECT_EQ(stats->paths[1], "/key123");

  const std::vector<std::string> results = {
      R"({"parent":18446744073709551615,"root":1.50,"slot":7})",
      R"({"parent":8,"root":"é\u00e9","slot":9})", R"([1, 2 ,3])"};
  for (const std::string& result : results) {
    ASSERT_THAT(provider_->Notify("slotSubscribe", result), IsOkAndHolds(1));
  }
  for (Watch& watch : watches) {
    for (size_t i = 0; i < results.size(); ++i) {
      v1::RpcNotification notification;
      ASSERT_TRUE(watch.reader->Read(&notification));
      EXPECT_EQ(notification.result_json(), results[i]);
      EXPECT_EQ(notification.sequence(), i + 1);
      EXPECT_FALSE(notification.after_resubscribe());
      EXPECT_EQ(notification.dropped_since_last(), 0u);
    }
  }
  for (std::thread& process : processes) process.join();
  for (const RunResult& result : watched) {
    EXPECT_EQ(result.exit_code, 0) << result.stderr_text;
    EXPECT_EQ(result.stdout_text,
              absl::StrCat(results[0], "\n", results[1], "\n", results[2], "\n"));
  }
}

TEST_F(RpcSubscribeTest, TheLastStreamLeavingUnsubscribesOnceAfterTheLinger) {
  StartSwitchboard("{linger_ms: 300}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  std::vector<Watch> first;
  for (int i = 0; i < 3; ++i) {
    first.push_back(SubscribeLive(*worker, "accountSubscribe", R"(["Acc1"])"));
  }
  Watch second = SubscribeLive(*worker, "accountSubscribe", R"(["Acc2"])");
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(2)) << stats->DebugString();
  const std::string first_sub = stats->subscribes[0].params == R"(["Acc1"])"
                                    ? stats->subscribes[0].sub
                                    : stats->subscribes[1].sub;

  for (Watch& watch : first) watch.context->TryCancel();
  stats = provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                             absl::Seconds(10), "an unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->unsubscribes, SizeIs(1)) << stats->DebugString();
  EXPECT_EQ(stats->unsubscribes[0].method, "accountUnsubscribe");
  EXPECT_EQ(stats->unsubscribes[0].sub, first_sub);
  EXPECT_TRUE(stats->unsubscribes[0].known);

  // The other subscription lives on.
  ASSERT_THAT(provider_->Notify("accountSubscribe", "42", R"(["Acc2"])"), IsOkAndHolds(1));
  v1::RpcNotification notification;
  ASSERT_TRUE(second.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), "42");
  stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_THAT(stats->unsubscribes, SizeIs(1));
}

TEST_F(RpcSubscribeTest, AStreamThatComesBackWithinTheLingerKeepsTheSubscription) {
  StartSwitchboard("{linger_ms: 60000}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  {
    Watch leaving = SubscribeLive(*worker, "slotSubscribe", "");
    leaving.context->TryCancel();
    v1::RpcNotification notification;
    EXPECT_FALSE(leaving.reader->Read(&notification));
  }
  Watch back = SubscribeLive(*worker, "slotSubscribe", "");
  ASSERT_THAT(provider_->Notify("slotSubscribe", "1"), IsOkAndHolds(1));
  v1::RpcNotification notification;
  ASSERT_TRUE(back.reader->Read(&notification));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_THAT(stats->subscribes, SizeIs(1)) << stats->DebugString();
  EXPECT_THAT(stats->unsubscribes, SizeIs(0)) << stats->DebugString();
}

TEST_F(RpcSubscribeTest, AKilledConnectionIsResubscribedAndTheNextNotificationFlagged) {
  StartSwitchboard("{linger_ms: 200, reconnect_initial_ms: 10, reconnect_max_ms: 100}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch slot = SubscribeLive(*worker, "slotSubscribe", "");
  Watch logs = SubscribeLive(*worker, "logsSubscribe", R"(["all"])");
  ASSERT_THAT(provider_->Notify("slotSubscribe", "1"), IsOkAndHolds(1));
  v1::RpcNotification notification;
  ASSERT_TRUE(slot.reader->Read(&notification));
  EXPECT_FALSE(notification.after_resubscribe());

  ASSERT_THAT(provider_->Close(), IsOkAndHolds(1));
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 4; },
                         absl::Seconds(10), "two resubscribes");
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 2) << stats->DebugString();
  EXPECT_EQ(stats->subscribes[2].conn, 2);
  EXPECT_EQ(stats->subscribes[3].conn, 2);

  ASSERT_THAT(provider_->Notify("slotSubscribe", "2"), IsOkAndHolds(1));
  ASSERT_THAT(provider_->Notify("slotSubscribe", "3"), IsOkAndHolds(1));
  ASSERT_THAT(provider_->Notify("logsSubscribe", R"({"log":1})"), IsOkAndHolds(1));
  ASSERT_TRUE(slot.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), "2");
  EXPECT_EQ(notification.sequence(), 2u);
  EXPECT_TRUE(notification.after_resubscribe());
  ASSERT_TRUE(slot.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), "3");
  EXPECT_FALSE(notification.after_resubscribe());
  ASSERT_TRUE(logs.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), R"({"log":1})");
  EXPECT_TRUE(notification.after_resubscribe());
}

TEST_F(RpcSubscribeTest, ADeadFirstUrlFailsOverToTheNextAndBack) {
  absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
      R"(
upstreams:
  - name: sol
    urls: ["http://127.0.0.1:1/"]
    ws_urls: ["ws://127.0.0.1:1/dead", "$0/fallback"]
    subscriptions: {reconnect_initial_ms: 10, reconnect_max_ms: 50}
)",
      provider_->url()));
  ASSERT_THAT(server, IsOk());
  server_ = *std::move(server);
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch slot = SubscribeLive(*worker, "slotSubscribe", "");
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1) << stats->DebugString();
  EXPECT_EQ(stats->paths[1], "/fallback");
  // Dropped, it tries the dead URL, then comes back here and resubscribes.
  ASSERT_THAT(provider_->Close(), IsOkAndHolds(1));
  stats = provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 2; },
                             absl::Seconds(10), "the resubscribe");
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->paths[2], "/fallback");
  ASSERT_THAT(provider_->Notify("slotSubscribe", "9"), IsOkAndHolds(1));
  v1::RpcNotification notification;
  ASSERT_TRUE(slot.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), "9");
  EXPECT_TRUE(notification.after_resubscribe());
}

TEST_F(RpcSubscribeTest, FiveSubscriptionsAtTwoPerConnectionTakeThreeConnections) {
  StartSwitchboard("{max_subscriptions_per_connection: 2}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  std::vector<Watch> watches;
  for (int i = 0; i < 5; ++i) {
    watches.push_back(
        SubscribeLive(*worker, "accountSubscribe", absl::StrCat(R"([")", i, R"("])")));
  }
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 3) << stats->DebugString();
  EXPECT_THAT(stats->open, SizeIs(3));
  ASSERT_THAT(stats->subscribes, SizeIs(5));
  std::map<int64_t, int> per_connection;
  for (const WsSubscribe& subscribe : stats->subscribes) ++per_connection[subscribe.conn];
  for (const auto& [conn, count] : per_connection) EXPECT_LE(count, 2) << conn;
}

TEST_F(RpcSubscribeTest, AStalledStreamDropsItsOldestWhileTheOthersGetEverything) {
  StartSwitchboard("{buffer: 4, overflow: drop_oldest}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch fast = SubscribeLive(*worker, "slotSubscribe", "");
  Watch stalled = SubscribeLive(*worker, "slotSubscribe", "");
  // Large enough that the stalled stream's HTTP/2 window fills at once.
  constexpr int kNotifications = 120;
  const std::string padding(32 * 1024, 'x');
  // In lockstep with the stream that reads: it never falls behind.
  v1::RpcNotification read;
  for (int i = 1; i <= kNotifications; ++i) {
    ASSERT_THAT(provider_->Notify("slotSubscribe",
                                  absl::StrCat(R"({"n":)", i, R"(,"pad":")", padding, R"("})")),
                IsOkAndHolds(1));
    ASSERT_TRUE(fast.reader->Read(&read));
    ASSERT_EQ(read.sequence(), static_cast<uint64_t>(i));
    ASSERT_EQ(read.dropped_since_last(), 0u);
  }
  // The stalled stream now reads what is left: every notification it got
  // or was told it lost, the last one among them.
  uint64_t received = 0;
  uint64_t dropped = 0;
  v1::RpcNotification notification;
  while (received + dropped < kNotifications && stalled.reader->Read(&notification)) {
    ++received;
    dropped += notification.dropped_since_last();
  }
  EXPECT_EQ(notification.sequence(), static_cast<uint64_t>(kNotifications));
  EXPECT_EQ(received + dropped, static_cast<uint64_t>(kNotifications));
  EXPECT_GT(dropped, 0u);
  absl::StatusOr<double> counted = WaitForMetric(
      server_.metrics_port, R"(switchboard_ws_notifications_dropped_total{upstream="sol"})",
      [&](double value) { return value == static_cast<double>(dropped); });
  EXPECT_THAT(counted, IsOkAndHolds(static_cast<double>(dropped)));
}

TEST_F(RpcSubscribeTest, BadRequestsGetPreciseCodesAndAProviderRefusalPassesThrough) {
  StartSwitchboard();
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  grpc::Status status = Refusal(*worker, "nope", "slotSubscribe", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  status = Refusal(*worker, "plain", "slotSubscribe", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("ws_urls"));
  status = Refusal(*worker, "sol", "accountSubscribe", "[not json");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("params_json"));
  status = Refusal(*worker, "sol", "getSlot", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("not a subscription method"));

  ASSERT_THAT(provider_->Refuse("rootSubscribe", R"({"code":-32601,"message":"no roots here"})"),
              IsOk());
  Watch other = SubscribeLive(*worker, "slotSubscribe", "");
  status = Refusal(*worker, "sol", "rootSubscribe", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr(R"({"code":-32601,"message":"no roots here"})"));
  // Only that subscription's streams ended.
  ASSERT_THAT(provider_->Notify("slotSubscribe", "5"), IsOkAndHolds(1));
  v1::RpcNotification notification;
  ASSERT_TRUE(other.reader->Read(&notification));
  EXPECT_EQ(notification.result_json(), "5");
}

TEST_F(RpcSubscribeTest, SubscribesCountAgainstTheUpstreamsRateLimit) {
  // One request every 4 s: the first subscribe takes the burst.
  StartSwitchboard("{}", ", rate_limit: {requests_per_second: 0.25, burst: 1}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch first = SubscribeLive(*worker, "accountSubscribe", R"(["A"])");
  // So a call made now cannot be admitted within its second.
  std::unique_ptr<client::Client> caller = MakeRpcClient(server_.target, absl::Seconds(1));
  CallOutcome call = TimedCall(*caller, RpcRequest("sol", "getSlot"));
  EXPECT_EQ(call.status.code(), absl::StatusCode::kResourceExhausted) << call.status;
  EXPECT_THAT(call.status.message(), HasSubstr("rate limit"));
  // And another subscribe waits for the limiter's next token.
  const absl::Time start = absl::Now();
  Watch second = SubscribeLive(*worker, "accountSubscribe", R"(["B"])");
  EXPECT_GE(absl::Now() - start, absl::Seconds(2));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_THAT(stats->subscribes, SizeIs(2)) << stats->DebugString();
}

TEST_F(RpcSubscribeTest, AFirstSubscribeTheRateLimitCannotAdmitInTimeIsRefused) {
  // The next token comes in 20 s, past the subscribe's 1 s.
  StartSwitchboard("{subscribe_timeout_ms: 1000}",
                   ", rate_limit: {requests_per_second: 0.05, burst: 1}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch first = SubscribeLive(*worker, "accountSubscribe", R"(["A"])");
  grpc::Status status = Refusal(*worker, "sol", "accountSubscribe", R"(["B"])");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("upstream sol: accountSubscribe: "));
  EXPECT_THAT(status.error_message(), HasSubstr("rate limit"));
  // The same subscription as a live one needs no subscribe: it is shared.
  Watch shared = SubscribeLive(*worker, "accountSubscribe", R"(["A"])");
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_THAT(stats->subscribes, SizeIs(1)) << stats->DebugString();
}

TEST_F(RpcSubscribeTest, ASubscribeLeftUnansweredEndsItsStreamsWithDeadlineExceeded) {
  StartSwitchboard("{subscribe_timeout_ms: 300, ping_interval_ms: 600000}");
  std::unique_ptr<v1::Rpc::Stub> worker = NewWorker();
  Watch live = SubscribeLive(*worker, "slotSubscribe", "");
  ASSERT_THAT(provider_->Freeze(), IsOkAndHolds(1));
  grpc::Status status = Refusal(*worker, "sol", "rootSubscribe", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("subscriptions.subscribe_timeout_ms"));
}

}  // namespace
}  // namespace switchboard::testing
