// WebSocketConnection, both sides of one connection: a client-side and a
// server-side connection over the two ends of a socket pair, on one real
// dispatcher (the handshake is the client's and the server's business, not
// the connection's).
#include "server/ws/websocket_connection.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::ws {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::RunOnDispatcher;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records what a connection tells its handler; read from the test thread.
// Waits on a CondVar, not Mutex::Await: Debian's Abseil is not
// TSan-instrumented, and Await evaluates its condition inside it.
class Recorder final : public WebSocketHandler {
 public:
  void OnText(absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    texts_.emplace_back(message);
    changed_.SignalAll();
    if (echo_ != nullptr) echo_->SendText(message).IgnoreError();
  }
  void OnClosed(absl::Status why) override {
    absl::MutexLock lock(&mu_);
    closed_ = std::move(why);
    changed_.SignalAll();
  }

  // Waits until `count` texts came; returns them.
  std::vector<std::string> AwaitTexts(size_t count) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (texts_.size() < count && !changed_.WaitWithDeadline(&mu_, deadline)) {
    }
    return texts_;
  }

  // Waits until OnClosed ran; returns its status (OK if it did not).
  absl::Status AwaitClosed() {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!closed_.has_value() && !changed_.WaitWithDeadline(&mu_, deadline)) {
    }
    return closed_.value_or(absl::OkStatus());
  }

  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_.has_value();
  }

  // Answers each text with itself on `connection` (dispatcher thread).
  void EchoOn(WebSocketConnection* connection) { echo_ = connection; }

 private:
  absl::Mutex mu_;
  std::vector<std::string> texts_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
  absl::CondVar changed_;
  WebSocketConnection* echo_ = nullptr;
};

class WebSocketConnectionTest : public ::testing::Test {
 protected:
  WebSocketConnectionTest() : dispatcher_("ws-test", common::RealClock::Get()) {
    dispatcher_.Start();
  }

  ~WebSocketConnectionTest() override {
    RunOnDispatcher(dispatcher_, [&] {
      client_.reset();
      server_.reset();
    });
  }

  // Opens both sides with `client_options` and `server_options`.
  void Open(WebSocketConnectionOptions client_options = {},
            WebSocketConnectionOptions server_options = {}) {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    RunOnDispatcher(dispatcher_, [&] {
      bufferevent* client_bev =
          bufferevent_socket_new(dispatcher_.base(), fds[0], BEV_OPT_CLOSE_ON_FREE);
      bufferevent* server_bev =
          bufferevent_socket_new(dispatcher_.base(), fds[1], BEV_OPT_CLOSE_ON_FREE);
      absl::StatusOr<std::unique_ptr<WebSocketConnection>> client =
          WebSocketConnection::Open(dispatcher_, client_bev, WebSocketConnection::Role::kClient,
                                    "client", client_options, client_seen_);
      absl::StatusOr<std::unique_ptr<WebSocketConnection>> server =
          WebSocketConnection::Open(dispatcher_, server_bev, WebSocketConnection::Role::kServer,
                                    "server", server_options, server_seen_);
      ASSERT_THAT(client, IsOk());
      ASSERT_THAT(server, IsOk());
      server_bev_ = server_bev;
      client_ = *std::move(client);
      server_ = *std::move(server);
    });
  }

  absl::Status SendFromClient(const std::string& text) {
    absl::Status sent;
    RunOnDispatcher(dispatcher_, [&] { sent = client_->SendText(text); });
    return sent;
  }

  event::DispatcherImpl dispatcher_;
  Recorder client_seen_;
  Recorder server_seen_;
  std::unique_ptr<WebSocketConnection> client_;
  std::unique_ptr<WebSocketConnection> server_;
  bufferevent* server_bev_ = nullptr;  // server_'s.
};

TEST_F(WebSocketConnectionTest, TextsGoBothWaysByteForByteAndInOrder) {
  Open();
  RunOnDispatcher(dispatcher_, [&] { server_seen_.EchoOn(server_.get()); });
  const std::string big(200 * 1024, 'x');  // Several frames' worth of socket writes.
  ASSERT_THAT(SendFromClient(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})"), IsOk());
  ASSERT_THAT(SendFromClient(""), IsOk());
  ASSERT_THAT(SendFromClient(big), IsOk());
  ASSERT_THAT(SendFromClient("\xc3\xa9 last"), IsOk());
  EXPECT_THAT(server_seen_.AwaitTexts(4),
              ElementsAre(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})", "", big,
                          "\xc3\xa9 last"));
  EXPECT_THAT(client_seen_.AwaitTexts(4),
              ElementsAre(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})", "", big,
                          "\xc3\xa9 last"));
  EXPECT_FALSE(client_seen_.closed());
  EXPECT_FALSE(server_seen_.closed());
}

TEST_F(WebSocketConnectionTest, ACloseReachesThePeerWithItsCodeAndNoCallbackFollowsOnTheCloser) {
  Open();
  RunOnDispatcher(dispatcher_, [&] { server_->Close(kCloseGoingAway); });
  EXPECT_THAT(client_seen_.AwaitClosed(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("client: the peer closed the WebSocket connection (1001)")));
  // The closer was told nothing: it asked.
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_FALSE(server_seen_.closed());
  absl::Status sent;
  RunOnDispatcher(dispatcher_, [&] { sent = server_->SendText("late"); });
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(WebSocketConnectionTest, AMessageOverTheLimitEndsTheConnection) {
  WebSocketConnectionOptions server_options;
  server_options.max_message_bytes = 1024;
  Open({}, server_options);
  ASSERT_THAT(SendFromClient(std::string(1024, 'a')), IsOk());
  ASSERT_THAT(server_seen_.AwaitTexts(1), ElementsAre(std::string(1024, 'a')));
  ASSERT_THAT(SendFromClient(std::string(1025, 'b')), IsOk());
  EXPECT_THAT(server_seen_.AwaitClosed(), StatusIs(absl::StatusCode::kUnavailable));
  // The client learns of it through the close frame (1009, message too big).
  EXPECT_THAT(client_seen_.AwaitClosed(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("(1009)")));
}

TEST_F(WebSocketConnectionTest, SendTextBeyondMaxQueuedBytesIsRefused) {
  WebSocketConnectionOptions client_options;
  client_options.max_queued_bytes = 64 * 1024;
  Open(client_options);
  // Nothing is written while the dispatcher runs this closure, so the
  // queue only grows.
  absl::Status first;
  absl::Status second;
  RunOnDispatcher(dispatcher_, [&] {
    first = client_->SendText(std::string(60 * 1024, 'a'));
    second = client_->SendText(std::string(8 * 1024, 'b'));
  });
  EXPECT_THAT(first, IsOk());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("more than 65536 bytes are waiting")));
}

TEST_F(WebSocketConnectionTest, KeepalivePingsAreAnsweredSoAnIdleConnectionStaysOpen) {
  WebSocketConnectionOptions fast;
  fast.ping_interval = absl::Milliseconds(20);
  fast.pong_timeout = absl::Milliseconds(200);
  Open(fast, fast);
  // Many ping rounds on both sides with no message: each side's pings are
  // answered by the other, so neither gives up.
  ASSERT_THAT(SendFromClient("before"), IsOk());
  ASSERT_THAT(server_seen_.AwaitTexts(1), ElementsAre("before"));
  absl::SleepFor(absl::Milliseconds(300));  // Not synchronisation: idle time to survive.
  ASSERT_THAT(SendFromClient("after"), IsOk());
  EXPECT_THAT(server_seen_.AwaitTexts(2), ElementsAre("before", "after"));
  EXPECT_FALSE(client_seen_.closed());
  EXPECT_FALSE(server_seen_.closed());
}

TEST_F(WebSocketConnectionTest, APeerThatStopsAnsweringPingsIsGivenUp) {
  WebSocketConnectionOptions fast;
  fast.ping_interval = absl::Milliseconds(20);
  fast.pong_timeout = absl::Milliseconds(100);
  Open(fast);
  // The server side stops reading, its socket open: only the missing pong
  // can tell.
  RunOnDispatcher(dispatcher_, [&] { bufferevent_disable(server_bev_, EV_READ); });
  EXPECT_THAT(client_seen_.AwaitClosed(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("client: no answer to a WebSocket ping within 100ms")));
}

}  // namespace
}  // namespace switchboard::ws
