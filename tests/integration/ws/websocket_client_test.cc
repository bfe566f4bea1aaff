// ws::WebSocketClient against the scripted WebSocket provider
// (tests/testing/ws_provider.py through WsProviderServer), on a real
// dispatcher thread: the upgrade with its path and headers, JSON-RPC
// answers and notifications byte for byte, closes by either side, the
// ping/pong keepalive, the message and queue limits, connect failures, and
// wss:// with certificate and name verification (certificates from
// TestCertificates). Each suite has one provider, reset before each test.
//
// The client lives on the dispatcher thread: the test drives it there with
// RunOnDispatcher and waits for the observer's callbacks through Recorder.
// No gRPC here, so the TSan stage of scripts/test.sh runs these too.
#include "server/ws/websocket_client.h"

#include <unistd.h>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/ws_provider_server.h"

namespace switchboard::ws {
namespace {

using ::switchboard::testing::BindRefusingPort;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::ListenOnLoopback;
using ::switchboard::testing::LoopbackSocket;
using ::switchboard::testing::RunOnDispatcher;
using ::switchboard::testing::StatusIs;
using ::switchboard::testing::TestCertificates;
using ::switchboard::testing::WsProviderOptions;
using ::switchboard::testing::WsProviderServer;
using ::switchboard::testing::WsProviderStats;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::StartsWith;

// The bound on anything that should happen at once: generous, for a loaded
// machine or a TSan build. Waits end as soon as the awaited thing happens.
constexpr absl::Duration kWait = absl::Seconds(20);

// What the provider puts around a Solana notification's result.
constexpr absl::string_view kSlotNotificationPrefix =
    R"({"jsonrpc":"2.0","method":"slotNotification","params":{"result":)";

std::string SlotNotification(absl::string_view result, absl::string_view sub) {
  return absl::StrCat(kSlotNotificationPrefix, result, ",\"subscription\":", sub, "}}");
}

std::string SlotSubscribe(int id) {
  return absl::StrCat(R"({"jsonrpc":"2.0","id":)", id, R"(,"method":"slotSubscribe"})");
}

std::string ResultAnswer(absl::string_view result, int id) {
  return absl::StrCat(R"({"jsonrpc":"2.0","result":)", result, R"(,"id":)", id, "}");
}

// The observer: records each callback (made on the dispatcher thread) for
// the test's thread to wait for. The optional hooks run on the dispatcher
// thread after the callback is recorded, outside the lock; set them before
// connecting.
class Recorder final : public WebSocketObserver {
 public:
  std::function<void()> on_open;
  std::function<void(absl::string_view)> on_text;
  std::function<void(const absl::Status&)> on_closed;

  void OnOpen() override {
    {
      absl::MutexLock lock(&mu_);
      ++opens_;
      changed_.SignalAll();
    }
    if (on_open) on_open();
  }

  void OnText(absl::string_view message) override {
    {
      absl::MutexLock lock(&mu_);
      texts_.emplace_back(message);
      changed_.SignalAll();
    }
    if (on_text) on_text(message);
  }

  void OnClosed(absl::Status why) override {
    {
      absl::MutexLock lock(&mu_);
      closes_.push_back(why);
      changed_.SignalAll();
    }
    if (on_closed) on_closed(why);
  }

  // OK once OnOpen ran; the status of an OnClosed that came instead;
  // DEADLINE_EXCEEDED after kWait.
  absl::Status WaitForOpen() {
    absl::MutexLock lock(&mu_);
    Await([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return opens_ > 0 || !closes_.empty(); },
          kWait);
    if (opens_ > 0) return absl::OkStatus();
    if (!closes_.empty()) return closes_.front();
    return absl::DeadlineExceededError(
        absl::StrCat("no OnOpen within ", absl::FormatDuration(kWait)));
  }

  // The first OnClosed's status, once it ran; nullopt when none came within
  // `timeout`.
  std::optional<absl::Status> WaitForClosed(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    Await([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !closes_.empty(); }, timeout);
    if (closes_.empty()) return std::nullopt;
    return closes_.front();
  }

  // The messages so far, once there are `count` of them (or an OnClosed
  // came, or kWait passed: then fewer).
  std::vector<std::string> WaitForTexts(size_t count) {
    absl::MutexLock lock(&mu_);
    Await([this, count]()
              ABSL_NO_THREAD_SAFETY_ANALYSIS { return texts_.size() >= count || !closes_.empty(); },
          kWait);
    return texts_;
  }

  int opens() {
    absl::MutexLock lock(&mu_);
    return opens_;
  }
  std::vector<std::string> texts() {
    absl::MutexLock lock(&mu_);
    return texts_;
  }
  std::vector<absl::Status> closes() {
    absl::MutexLock lock(&mu_);
    return closes_;
  }

 private:
  // A CondVar loop rather than Mutex::AwaitWithTimeout: Abseil evaluates an
  // absl::Condition inside its own (in TSan builds uninstrumented) code,
  // where tests/testing/tsan_absl_sync.cc cannot show TSan the lock.
  void Await(absl::FunctionRef<bool()> done, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return;  // Timed out.
    }
  }

  absl::Mutex mu_;
  absl::CondVar changed_;  // Signalled with each callback.
  int opens_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> texts_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> closes_ ABSL_GUARDED_BY(mu_);
};

// One provider per suite (suites run one after another, so they share the
// pointer); a dispatcher, a Recorder and at most one client per test.
class WebSocketClientTestBase : public ::testing::Test {
 protected:
  static void StartProvider(const WsProviderOptions& options = WsProviderOptions()) {
    absl::StatusOr<std::unique_ptr<WsProviderServer>> started = WsProviderServer::Start(options);
    if (started.ok()) {
      provider_ = started->release();
    } else {
      start_error_ = started.status().ToString();
    }
  }

  static void StopProvider() {
    delete provider_;
    provider_ = nullptr;
  }

  void SetUp() override {
    dispatcher_.Start();
    ASSERT_NE(provider_, nullptr) << "the WebSocket provider did not start: " << start_error_;
    ASSERT_THAT(provider_->Reset(), IsOk());
  }

  void TearDown() override {
    RunOnDispatcher(dispatcher_, [this] { client_.reset(); });
    dispatcher_.Shutdown();
  }

  WsProviderServer& provider() { return *provider_; }

  // Connect() on the dispatcher thread; the client is kept in client_.
  absl::Status Connect(const std::string& url, WebSocketClientOptions options = {}) {
    absl::Status status;
    RunOnDispatcher(dispatcher_, [&] {
      absl::StatusOr<std::unique_ptr<WebSocketClient>> client =
          WebSocketClient::Connect(dispatcher_, url, std::move(options), recorder_);
      if (client.ok()) {
        client_ = *std::move(client);
      } else {
        status = client.status();
      }
    });
    return status;
  }

  // Connects and waits for OnOpen.
  absl::Status Open(const std::string& url, WebSocketClientOptions options = {}) {
    if (absl::Status connected = Connect(url, std::move(options)); !connected.ok()) {
      return connected;
    }
    return recorder_.WaitForOpen();
  }

  absl::Status Send(std::string message) {
    absl::Status status;
    RunOnDispatcher(dispatcher_, [&] {
      status = client_ == nullptr ? absl::InternalError("the test destroyed the client")
                                  : client_->SendText(message);
    });
    return status;
  }

  size_t QueuedBytes() {
    size_t bytes = 0;
    RunOnDispatcher(dispatcher_, [&] { bytes = client_ == nullptr ? 0 : client_->queued_bytes(); });
    return bytes;
  }

  void CloseClient() {
    RunOnDispatcher(dispatcher_, [this] {
      if (client_ != nullptr) client_->Close();
    });
  }

  // Sends slotSubscribe with `id` and waits until the provider answered it
  // and made it live (a notification can follow); its subscription id as
  // JSON text. The answer is left for the test to check.
  absl::StatusOr<std::string> Subscribe(int id) {
    absl::StatusOr<WsProviderStats> before = provider().Stats();
    if (!before.ok()) return before.status();
    const size_t count = before->subscribes.size();
    if (absl::Status sent = Send(SlotSubscribe(id)); !sent.ok()) return sent;
    absl::StatusOr<WsProviderStats> after = provider().WaitFor(
        [count](const WsProviderStats& stats) { return stats.subscribes.size() > count; }, kWait,
        "the subscribe");
    if (!after.ok()) return after.status();
    return after->subscribes.back().sub;
  }

  // Waits until connection `conn` ended at the provider and returns the
  // close code the client sent (1006: none); 0, failing the test, when it
  // did not end within kWait.
  int CloseCodeAtProvider(int64_t conn) {
    absl::StatusOr<WsProviderStats> stats = provider().WaitFor(
        [conn](const WsProviderStats& s) { return s.close_codes.count(conn) > 0; }, kWait,
        absl::StrCat("the end of connection ", conn));
    if (!stats.ok()) {
      ADD_FAILURE() << stats.status();
      return 0;
    }
    return stats->close_codes.at(conn);
  }

  static WsProviderServer* provider_;
  static std::string start_error_;

  event::DispatcherImpl dispatcher_{"ws-test", common::RealClock::Get()};
  Recorder recorder_;                        // Outlives client_.
  std::unique_ptr<WebSocketClient> client_;  // Dispatcher thread only.
};

WsProviderServer* WebSocketClientTestBase::provider_ = nullptr;
std::string WebSocketClientTestBase::start_error_;

// ws:// (cleartext).
class WebSocketClientTest : public WebSocketClientTestBase {
 protected:
  static void SetUpTestSuite() { StartProvider(); }
  static void TearDownTestSuite() { StopProvider(); }
};

TEST_F(WebSocketClientTest, OpensWithThePathQueryAndHeaders) {
  WebSocketClientOptions options;
  options.headers = {{"Authorization", "Bearer token-1"}};
  ASSERT_THAT(Open(provider().url() + "/v2/key-1?api-key=key-2", options), IsOk());

  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1);
  EXPECT_THAT(stats->paths, ElementsAre(Pair(1, "/v2/key-1?api-key=key-2")));
  EXPECT_THAT(stats->authorizations, ElementsAre(Pair(1, "Bearer token-1")));
  EXPECT_EQ(recorder_.opens(), 1);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, SubscribeAnswerAndNotificationArriveByteForByte) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(7);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 7)));

  // Spacing, escapes and UTF-8 exactly as the provider wrote them.
  const std::string result = R"({ "slot":42,"parent":41, "note":"caf\u00e9 ü \"q\"" })";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(*sub, 7), SlotNotification(result, *sub)));

  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].method, "slotSubscribe");
  EXPECT_EQ(stats->subscribes[0].params, "null");
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, CloseSendsCloseFrame1000AndNoCallbackFollows) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  CloseClient();
  // The provider answers the close frame and ends the TCP connection (after
  // its 2 s close timeout: the client keeps its socket until destroyed).
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
  EXPECT_THAT(Send(SlotSubscribe(1)), StatusIs(absl::StatusCode::kFailedPrecondition));
  // "No callback follows": none within a while after the provider ended
  // the connection, whose end the client sees meanwhile.
  EXPECT_EQ(recorder_.WaitForClosed(absl::Milliseconds(500)), std::nullopt);
  EXPECT_EQ(recorder_.opens(), 1);
}

// DISABLED: fails today. Close() only hands the close frame to the
// bufferevent, which writes from the loop; destroying the client right
// after (as SubscriptionHub's destructor does) frees it unsent, and the
// provider sees no close frame (1006).
TEST_F(WebSocketClientTest, DISABLED_CloseThenDestroyStillSendsTheCloseFrame) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  RunOnDispatcher(dispatcher_, [this] {
    client_->Close();
    client_.reset();
  });
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
}

TEST_F(WebSocketClientTest, SendTextBeforeOpenIsRefused) {
  absl::Status sent;
  RunOnDispatcher(dispatcher_, [&] {
    absl::StatusOr<std::unique_ptr<WebSocketClient>> client =
        WebSocketClient::Connect(dispatcher_, provider().url(), {}, recorder_);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
    // The handshake cannot have ended inside this closure.
    sent = client_->SendText(SlotSubscribe(1));
  });
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open")));
  ASSERT_THAT(recorder_.WaitForOpen(), IsOk());
  EXPECT_THAT(Send(SlotSubscribe(2)), IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(HasSubstr(R"("id":2})")));
}

TEST_F(WebSocketClientTest, SendTextWorksInsideOnOpenAndOnText) {
  // Inside OnOpen: a subscribe; inside OnText, on its answer: the
  // unsubscribe of the id it carries (the in-read path of SendText).
  recorder_.on_open = [this] { EXPECT_THAT(client_->SendText(SlotSubscribe(1)), IsOk()); };
  recorder_.on_text = [this](absl::string_view message) {
    const absl::string_view prefix = R"({"jsonrpc":"2.0","result":)";
    const absl::string_view suffix = R"(,"id":1})";
    if (!absl::StartsWith(message, prefix) || !absl::EndsWith(message, suffix)) return;
    const absl::string_view sub =
        message.substr(prefix.size(), message.size() - prefix.size() - suffix.size());
    EXPECT_THAT(client_->SendText(absl::StrCat(
                    R"({"jsonrpc":"2.0","id":2,"method":"slotUnsubscribe","params":[)", sub, "]}")),
                IsOk());
  };
  ASSERT_THAT(Connect(provider().url()), IsOk());

  absl::StatusOr<WsProviderStats> stats = provider().WaitFor(
      [](const WsProviderStats& s) { return !s.unsubscribes.empty(); }, kWait, "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  ASSERT_THAT(stats->unsubscribes, SizeIs(1));
  EXPECT_EQ(stats->unsubscribes[0].sub, stats->subscribes[0].sub);
  EXPECT_TRUE(stats->unsubscribes[0].known);
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(stats->subscribes[0].sub, 1), ResultAnswer("true", 2)));
}

TEST_F(WebSocketClientTest, AbruptCloseByTheProviderIsUnavailableOnce) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().Close(), IsOkAndHolds(1));

  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "no OnClosed within " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1")));
  EXPECT_THAT(Send(SlotSubscribe(1)), StatusIs(absl::StatusCode::kFailedPrecondition));
  CloseClient();  // After the end: nothing to do, no callback.
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, CleanCloseByTheProviderNamesItsCode) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));

  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "no OnClosed within " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("(1001)")));
}

// The client answers the provider's close frame with its code. The
// provider waits for the client's TCP close up to its close timeout (2 s):
// the client keeps its socket until destroyed.
TEST_F(WebSocketClientTest, CleanCloseByTheProviderIsAnswered) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1001);
}

// DISABLED: fails today (1006). The answer to the provider's close frame
// waits in the bufferevent's output when OnClosed runs; an observer that
// destroys the client there (as SubscriptionHub does) frees it unsent.
TEST_F(WebSocketClientTest, DISABLED_CleanCloseByTheProviderIsAnsweredWhenDestroyedInOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1001);
}

TEST_F(WebSocketClientTest, ObserverMayDestroyTheClientInsideOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().Close(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  bool destroyed = false;
  RunOnDispatcher(dispatcher_, [&] { destroyed = client_ == nullptr; });
  EXPECT_TRUE(destroyed);
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, KeepaliveKeepsAnAnsweringProviderOpen) {
  // A ping after each quiet 100 ms, answered well within 1.5 s: over 3.5 s
  // at least two pings go out and are answered.
  WebSocketClientOptions options;
  options.ping_interval = absl::Milliseconds(100);
  options.pong_timeout = absl::Milliseconds(1500);
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  EXPECT_EQ(recorder_.WaitForClosed(absl::Milliseconds(3500)), std::nullopt);
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 1)));
}

TEST_F(WebSocketClientTest, KeepaliveEndsAFrozenProvidersConnection) {
  WebSocketClientOptions options;
  options.ping_interval = absl::Milliseconds(200);
  options.pong_timeout = absl::Milliseconds(300);
  // The subscription hub's way: the client goes inside OnClosed, here
  // inside the keepalive timer's own callback.
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  ASSERT_THAT(provider().Freeze(), IsOkAndHolds(1));

  const absl::Time frozen = absl::Now();
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "the frozen connection stayed open for " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                HasSubstr("no answer to a WebSocket ping within 300ms")));
  std::cerr << "closed " << absl::FormatDuration(absl::Now() - frozen)
            << " after the freeze (ping 200ms, pong timeout 300ms)\n";
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, MessageOverMaxMessageBytesClosesWith1009) {
  constexpr size_t kLimit = 64 << 10;
  WebSocketClientOptions options;
  options.max_message_bytes = kLimit;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(recorder_.WaitForTexts(1), SizeIs(1));

  // A JSON string result padded so that the whole message is `size` bytes.
  const auto result_of_size = [&](size_t size) {
    const size_t frame = SlotNotification("\"\"", *sub).size();
    return absl::StrCat("\"", std::string(size - frame, 'x'), "\"");
  };
  const std::string at_limit = result_of_size(kLimit);
  ASSERT_THAT(provider().Notify("slotSubscribe", at_limit), IsOkAndHolds(1));
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_EQ(texts[1].size(), kLimit);
  EXPECT_EQ(texts[1], SlotNotification(at_limit, *sub));

  ASSERT_THAT(provider().Notify("slotSubscribe", result_of_size(kLimit + 1)), IsOkAndHolds(1));
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "a message over the limit did not end the connection";
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable,
                                AnyOf(HasSubstr("1009"), HasSubstr("limit"))));
  EXPECT_THAT(recorder_.texts(), SizeIs(2));  // The large one never came through.
}

// The client tells the provider why: close frame 1009.
TEST_F(WebSocketClientTest, MessageOverMaxMessageBytesSends1009) {
  WebSocketClientOptions options;
  options.max_message_bytes = 1024;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(provider().Notify("slotSubscribe", absl::StrCat("\"", std::string(2048, 'x'), "\"")),
              IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1009);
}

// DISABLED: fails today (1006): as above, the close frame 1009 is freed
// unsent when the observer destroys the client inside OnClosed.
TEST_F(WebSocketClientTest, DISABLED_MessageOverMaxMessageBytesSends1009WhenDestroyedInOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  WebSocketClientOptions options;
  options.max_message_bytes = 1024;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(provider().Notify("slotSubscribe", absl::StrCat("\"", std::string(2048, 'x'), "\"")),
              IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1009);
}

TEST_F(WebSocketClientTest, SendTextBeyondMaxQueuedBytesIsRefused) {
  constexpr size_t kLimit = 64 << 10;
  WebSocketClientOptions options;
  options.max_queued_bytes = kLimit;
  ASSERT_THAT(Open(provider().url(), options), IsOk());

  // One message larger than the limit on its own.
  EXPECT_THAT(Send(std::string(kLimit + 1, ' ')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("65536 bytes")));

  // Two that fit alone but not together: the bufferevent writes only from
  // the loop, so within one closure on the dispatcher the first still waits
  // when the second comes.
  const std::string big =
      absl::StrCat(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe",)", R"("params":[{"pad":")",
                   std::string(kLimit - 1024, 'p'), R"("}]})");
  absl::Status first;
  absl::Status second;
  size_t queued = 0;
  RunOnDispatcher(dispatcher_, [&] {
    first = client_->SendText(big);
    queued = client_->queued_bytes();
    second = client_->SendText(SlotSubscribe(2) + std::string(2048, ' '));
  });
  EXPECT_THAT(first, IsOk());
  EXPECT_GE(queued, big.size());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted,
                               AllOf(HasSubstr("65536 bytes"), HasSubstr("waiting"))));

  // Once the provider has read it all (it answered), the queue is empty and
  // SendText takes messages again; the refused one never went out.
  ASSERT_THAT(recorder_.WaitForTexts(1), ElementsAre(HasSubstr(R"("id":1})")));
  EXPECT_EQ(QueuedBytes(), 0u);
  EXPECT_THAT(Send(SlotSubscribe(3)), IsOk());
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_THAT(texts[1], HasSubstr(R"("id":3})"));
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, ConnectionRefusedIsUnavailableWithTheUrlMasked) {
  absl::StatusOr<LoopbackSocket> refusing = BindRefusingPort();
  ASSERT_THAT(refusing, IsOk());
  const std::string host = absl::StrCat("127.0.0.1:", refusing->port);
  ASSERT_THAT(Connect(absl::StrCat("ws://", host, "/v2/secret-key-1?api-key=secret-key-2")),
              IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  close(refusing->fd);
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(absl::StrCat("ws://", host, "/***/***?api-key=***")),
                             Not(HasSubstr("secret")))));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTest, NoUpgradeAnswerWithinConnectTimeoutIsDeadlineExceeded) {
  // A listener that never accepts: the TCP connect succeeds (the kernel
  // queues it), the upgrade is never answered.
  absl::StatusOr<LoopbackSocket> silent = ListenOnLoopback(4);
  ASSERT_THAT(silent, IsOk());
  WebSocketClientOptions options;
  options.connect_timeout = absl::Milliseconds(300);
  ASSERT_THAT(Connect(absl::StrCat("ws://127.0.0.1:", silent->port), options), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  close(silent->fd);
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                HasSubstr("no WebSocket connection within 300ms")));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTest, BadUrlIsRefusedByConnect) {
  EXPECT_THAT(Connect("http://127.0.0.1:1/"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Connect("ws://127.0.0.1:0/"), StatusIs(absl::StatusCode::kInvalidArgument));
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_EQ(recorder_.opens(), 0);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

// wss:// with a certificate for IP:127.0.0.1 from a test CA.
class WebSocketClientTlsTest : public WebSocketClientTestBase {
 protected:
  static void SetUpTestSuite() { StartTlsProvider("/CN=provider", "IP:127.0.0.1"); }

  // Makes a test CA and a certificate for `subject` and `sans`, and starts
  // the provider with it.
  static void StartTlsProvider(const std::string& subject, const std::string& sans) {
    absl::StatusOr<std::unique_ptr<TestCertificates>> certificates = TestCertificates::Create();
    if (!certificates.ok()) {
      start_error_ = certificates.status().ToString();
      return;
    }
    certificates_ = certificates->release();
    absl::StatusOr<TestCertificates::Issued> issued =
        certificates_->Issue("provider", subject, sans);
    if (!issued.ok()) {
      start_error_ = issued.status().ToString();
      return;
    }
    StartProvider(WsProviderOptions{issued->cert_file, issued->key_file});
  }

  static void TearDownTestSuite() {
    StopProvider();
    delete certificates_;
    certificates_ = nullptr;
  }

  static WebSocketClientOptions VerifiedBy(const std::string& ca_file) {
    WebSocketClientOptions options;
    options.ca_file = ca_file;
    return options;
  }

  static TestCertificates* certificates_;
};

TestCertificates* WebSocketClientTlsTest::certificates_ = nullptr;

TEST_F(WebSocketClientTlsTest, VerifiedWithTheTestCaCarriesJsonRpc) {
  ASSERT_THAT(provider().url(), StartsWith("wss://127.0.0.1:"));
  ASSERT_THAT(Open(provider().url() + "/v1", VerifiedBy(certificates_->ca_file())), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  const std::string result = R"({"slot":7})";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), IsOkAndHolds(1));
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(*sub, 1), SlotNotification(result, *sub)));
  CloseClient();
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTlsTest, LargeMessageArrivesWhole) {
  // Many TLS records (16 KiB each) and reads make up one message.
  ASSERT_THAT(Open(provider().url(), VerifiedBy(certificates_->ca_file())), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  std::string result = "\"";
  for (int i = 0; result.size() < (1 << 20); ++i) absl::StrAppend(&result, i, ",");
  result += "\"";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), IsOkAndHolds(1));
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_TRUE(texts[1] == SlotNotification(result, *sub))
      << "got " << texts[1].size() << " bytes, not the " << SlotNotification(result, *sub).size()
      << " sent";
}

TEST_F(WebSocketClientTlsTest, SystemTrustStoreRejectsTheTestCa) {
  ASSERT_THAT(Connect(provider().url(), WebSocketClientOptions()), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 0);
}

TEST_F(WebSocketClientTlsTest, AnotherCaRejectsTheCertificate) {
  absl::StatusOr<std::unique_ptr<TestCertificates>> other =
      TestCertificates::Create("Another Test CA");
  ASSERT_THAT(other, IsOk());
  ASSERT_THAT(Connect(provider().url(), VerifiedBy((*other)->ca_file())), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTlsTest, WithoutVerificationOpens) {
  WebSocketClientOptions options;
  options.tls_verify = false;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 1)));
}

TEST_F(WebSocketClientTlsTest, UnreadableCaFileIsRefusedByConnect) {
  EXPECT_THAT(Connect(provider().url(), VerifiedBy(certificates_->dir() + "/missing.pem")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("trusted certificates")));
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

// wss:// with a certificate from the test CA for DNS:other.example only, so
// the name 127.0.0.1 does not match.
class WebSocketClientTlsNameTest : public WebSocketClientTlsTest {
 protected:
  static void SetUpTestSuite() { StartTlsProvider("/CN=other.example", "DNS:other.example"); }
};

TEST_F(WebSocketClientTlsNameTest, NameMismatchFailsVerification) {
  ASSERT_THAT(Connect(provider().url(), VerifiedBy(certificates_->ca_file())), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 0);
}

TEST_F(WebSocketClientTlsNameTest, NameMismatchOpensWithoutVerification) {
  WebSocketClientOptions options;
  options.tls_verify = false;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
}

}  // namespace
}  // namespace switchboard::ws
