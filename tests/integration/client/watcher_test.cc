// Watcher against an in-process server whose upstream `sol` has ws_urls on a
// scripted WebSocket provider (tests/testing/ws_provider.py, started once for
// the suite): delivery byte for byte with sequences, the end statuses
// (unknown upstream, no ws_urls, the provider's refusal), the flag after
// Switchboard subscribed again, and stopping from the handler, from another
// thread and by the destructor while a handler runs.
#include "switchboard/client/watcher.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/client/collector.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/ws_provider_test.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::StatusIs;
using ::switchboard::testing::WsProviderServer;
using ::switchboard::testing::WsProviderStats;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::Duration kLiveTimeout = absl::Seconds(10);

v1::RpcSubscribeRequest Request(const std::string& upstream, const std::string& method,
                                const std::string& params = "") {
  v1::RpcSubscribeRequest request;
  request.set_upstream(upstream);
  request.set_method(method);
  request.set_params_json(params);
  return request;
}

class WatcherTest : public testing::WsProviderTest {
 protected:
  void SetUp() override {
    testing::WsProviderTest::SetUp();
    if (HasFatalFailure()) return;
    // Upstream `sol` on the provider; `plain` without ws_urls.
    absl::StatusOr<testing::InProcessServer> server =
        testing::StartInProcessServer(absl::Substitute(R"(
upstreams:
  - name: sol
    urls: ["http://127.0.0.1:1/"]
    ws_urls: ["$0"]
    subscriptions: {linger_ms: 50, reconnect_initial_ms: 10, reconnect_max_ms: 100}
  - {name: plain, urls: ["http://127.0.0.1:1/"]}
)",
                                                       provider_->url()));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    ClientOptions options;
    options.target = server_.target;
    client_ = std::make_unique<Client>(options);
  }

  void Notify(const std::string& method, const std::string& result) {
    ASSERT_THAT(provider_->Notify(method, result), IsOkAndHolds(1));
  }

  testing::InProcessServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(WatcherTest, DeliversEachResultByteForByteInOrderWithItsSequence) {
  Collector received;
  Watcher watcher(
      *client_, Request("sol", "slotSubscribe"),
      [&received](const v1::RpcNotification& notification) {
        EXPECT_FALSE(notification.after_resubscribe());
        EXPECT_EQ(notification.dropped_since_last(), 0u);
        received.Add(absl::StrCat(notification.sequence(), " ", notification.result_json()));
      });
  ASSERT_THAT(watcher.WaitUntilLive(kLiveTimeout), IsOk());
  Notify("slotSubscribe", R"({"parent":18446744073709551615,"root":1.50,"slot":7})");
  Notify("slotSubscribe", R"({ "slot" : "é\u00e9" })");
  Notify("slotSubscribe", "[1, 2 ,3]");
  ASSERT_TRUE(received.AwaitCount(3));
  EXPECT_THAT(received.items(),
              ElementsAre(R"(1 {"parent":18446744073709551615,"root":1.50,"slot":7})",
                          R"(2 { "slot" : "é\u00e9" })", "3 [1, 2 ,3]"));

  watcher.Stop();
  EXPECT_THAT(watcher.Wait(), StatusIs(absl::StatusCode::kCancelled));
  // The stream's end released the provider subscription (after the linger).
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                         absl::Seconds(10), "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->unsubscribes, SizeIs(1)) << stats->DebugString();
  EXPECT_EQ(stats->unsubscribes[0].method, "slotUnsubscribe");
}

TEST_F(WatcherTest, TheParamsAndTheUnsubscribeMethodGoToTheProvider) {
  v1::RpcSubscribeRequest request = Request("sol", "accountSubscribe", R"(["Acc1", {"x": 1}])");
  // Not the derived accountUnsubscribe.
  request.set_unsubscribe_method("accountWatchUnsubscribe");
  Collector received;
  auto watcher = std::make_unique<Watcher>(
      *client_, request,
      [&received](const v1::RpcNotification& n) { received.Add(n.result_json()); });
  ASSERT_THAT(watcher->WaitUntilLive(kLiveTimeout), IsOk());
  ASSERT_THAT(provider_->Notify("accountSubscribe", "41", R"(["Acc2",{"x":1}])"), IsOkAndHolds(0));
  ASSERT_THAT(provider_->Notify("accountSubscribe", "42", R"(["Acc1",{"x":1}])"), IsOkAndHolds(1));
  ASSERT_TRUE(received.AwaitCount(1));
  EXPECT_THAT(received.items(), ElementsAre("42"));

  watcher.reset();
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                         absl::Seconds(10), "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].params, R"(["Acc1",{"x":1}])");
  EXPECT_EQ(stats->unsubscribes[0].method, "accountWatchUnsubscribe");
  EXPECT_TRUE(stats->unsubscribes[0].known);
}

TEST_F(WatcherTest, RefusalsEndTheStreamWithPreciseStatuses) {
  const auto end_of = [this](const v1::RpcSubscribeRequest& request) {
    Watcher watcher(*client_, request, [](const v1::RpcNotification&) {
      ADD_FAILURE() << "no notification expected";
    });
    const absl::Status live = watcher.WaitUntilLive(kLiveTimeout);
    const absl::Status ended = watcher.Wait();
    EXPECT_EQ(live, ended);
    return ended;
  };
  EXPECT_THAT(end_of(Request("nope", "slotSubscribe")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("upstream: ")));
  EXPECT_THAT(end_of(Request("plain", "slotSubscribe")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ws_urls")));
  EXPECT_THAT(end_of(Request("sol", "accountSubscribe", "[not json")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("params_json")));
  // The provider's own error object passes through in the message.
  ASSERT_THAT(provider_->Refuse("rootSubscribe", R"({"code":-32601,"message":"no roots here"})"),
              IsOk());
  EXPECT_THAT(end_of(Request("sol", "rootSubscribe")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(R"({"code":-32601,"message":"no roots here"})")));
}

TEST_F(WatcherTest, TheFirstNotificationAfterSwitchboardSubscribedAgainIsFlagged) {
  Collector received;
  Watcher watcher(*client_, Request("sol", "slotSubscribe"),
                  [&received](const v1::RpcNotification& n) {
                    received.Add(absl::StrCat(n.result_json(), " seq=", n.sequence(),
                                              " after_resubscribe=", n.after_resubscribe()));
                  });
  ASSERT_THAT(watcher.WaitUntilLive(kLiveTimeout), IsOk());
  Notify("slotSubscribe", "1");
  ASSERT_TRUE(received.AwaitCount(1));
  ASSERT_THAT(provider_->Close(), IsOkAndHolds(1));
  ASSERT_THAT(provider_->WaitFor([](const WsProviderStats& s) { return s.subscribes.size() == 2; },
                                 absl::Seconds(10), "the resubscribe"),
              IsOk());
  Notify("slotSubscribe", "2");
  Notify("slotSubscribe", "3");
  ASSERT_TRUE(received.AwaitCount(3));
  EXPECT_THAT(received.items(),
              ElementsAre("1 seq=1 after_resubscribe=0", "2 seq=2 after_resubscribe=1",
                          "3 seq=3 after_resubscribe=0"));
  // The stream itself lived on through it.
  watcher.Stop();
  EXPECT_THAT(watcher.Wait(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(WatcherTest, TheHandlerCanStopItsWatcher) {
  std::atomic<int> handled{0};
  Watcher watcher(*client_, Request("sol", "slotSubscribe"), [&](const v1::RpcNotification&) {
    if (++handled == 2) watcher.Stop();
  });
  ASSERT_THAT(watcher.WaitUntilLive(kLiveTimeout), IsOk());
  for (int i = 1; i <= 5; ++i) Notify("slotSubscribe", absl::StrCat(i));
  EXPECT_THAT(watcher.Wait(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(handled.load(), 2);
}

TEST_F(WatcherTest, StopFromAnotherThreadLetsTheRunningHandlerFinishAndCallsItNoMore) {
  absl::Notification entered;
  absl::Notification release;
  std::atomic<int> handled{0};
  Watcher watcher(*client_, Request("sol", "slotSubscribe"), [&](const v1::RpcNotification&) {
    ++handled;
    entered.Notify();
    release.WaitForNotification();
  });
  ASSERT_THAT(watcher.WaitUntilLive(kLiveTimeout), IsOk());
  // The later two reach this client while the handler holds the first.
  for (int i = 1; i <= 3; ++i) Notify("slotSubscribe", absl::StrCat(i));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  watcher.Stop();  // Returns at once, the handler still running.
  release.Notify();
  EXPECT_THAT(watcher.Wait(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(handled.load(), 1);
}

TEST_F(WatcherTest, TheDestructorWaitsForTheRunningHandlerAndNoneRunsAfterIt) {
  absl::Notification entered;
  absl::Notification release;
  std::atomic<bool> handler_returned{false};
  std::atomic<int> handled{0};
  auto watcher = std::make_unique<Watcher>(*client_, Request("sol", "slotSubscribe"),
                                           [&](const v1::RpcNotification&) {
                                             if (++handled > 1) return;
                                             entered.Notify();
                                             release.WaitForNotification();
                                             handler_returned = true;
                                           });
  // A second watcher of the same subscription, which goes on.
  Collector other;
  Watcher witness(*client_, Request("sol", "slotSubscribe"),
                  [&other](const v1::RpcNotification& n) { other.Add(n.result_json()); });
  ASSERT_THAT(watcher->WaitUntilLive(kLiveTimeout), IsOk());
  ASSERT_THAT(witness.WaitUntilLive(kLiveTimeout), IsOk());
  Notify("slotSubscribe", "1");
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));

  bool returned_before_destructor = false;
  std::thread destroyer([&] {
    watcher.reset();
    returned_before_destructor = handler_returned.load();
  });
  release.Notify();
  destroyer.join();
  EXPECT_TRUE(returned_before_destructor);

  // Notifications after the destruction reach the other watcher only.
  Notify("slotSubscribe", "2");
  ASSERT_TRUE(other.AwaitCount(2));
  EXPECT_THAT(other.items(), ElementsAre("1", "2"));
  EXPECT_EQ(handled.load(), 1);
}

}  // namespace
}  // namespace switchboard::client
