// http::HttpServer over real loopback sockets: keep-alive and pipelining in
// request order, bodies by Content-Length, the bounds that refuse a request,
// 100-continue, and a Responder used from another thread or dropped.
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// How long a test waits for bytes it expects: generous for a loaded machine.
constexpr absl::Duration kPatience = absl::Seconds(10);

class NoObserver final : public HttpServerObserver {
 public:
  void OnOpened() override {}
  void OnClosed() override {}
  void OnRefused() override {}
};

// A blocking loopback client that reads whole responses.
class Client {
 public:
  explicit Client(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    const timeval timeout{static_cast<time_t>(absl::ToInt64Seconds(kPatience)), 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~Client() { close(fd_); }

  bool connected() const { return connected_; }

  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }

  void Send(const std::string& bytes) {
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  // The next whole response (head and Content-Length body), or what came
  // before the server closed or went quiet.
  std::string ReadResponse() {
    for (;;) {
      const size_t head_end = buffer_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t length = 0;
        const size_t at = buffer_.find("Content-Length: ");
        if (at != std::string::npos && at < head_end) {
          const size_t value = at + 16;
          EXPECT_TRUE(absl::SimpleAtoi(buffer_.substr(value, buffer_.find("\r\n", value) - value),
                                       &length));
        }
        if (buffer_.size() >= head_end + 4 + length) {
          std::string response = buffer_.substr(0, head_end + 4 + length);
          buffer_.erase(0, head_end + 4 + length);
          return response;
        }
      }
      if (!ReadMore()) return std::exchange(buffer_, "");
    }
  }

  // The next `n` bytes, or fewer when the server closed or went quiet.
  std::string Read(size_t n) {
    while (buffer_.size() < n && ReadMore()) {
    }
    std::string bytes = buffer_.substr(0, n);
    buffer_.erase(0, bytes.size());
    return bytes;
  }

  // True when the server closed the connection (after what it had sent).
  bool ClosedByServer() {
    while (ReadMore()) {
    }
    return eof_;
  }

 private:
  bool ReadMore() {
    char chunk[4096];
    const ssize_t n = read(fd_, chunk, sizeof(chunk));
    if (n == 0) eof_ = true;
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  const int fd_;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

std::string Post(absl::string_view path, absl::string_view body,
                 absl::string_view extra_headers = "") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nContent-Length: ", body.size(),
                      "\r\n", extra_headers, "\r\n", body);
}

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() : dispatcher_("http-server-test", common::RealClock::Get()) {
    dispatcher_.Start();
  }
  ~HttpServerTest() override {
    std::vector<std::thread> answerers;
    {
      absl::MutexLock lock(&mu_);
      answerers.swap(answerers_);
    }
    for (std::thread& thread : answerers) thread.join();
    testing::RunOnDispatcher(dispatcher_, [this] {
      for (bufferevent* bev : upgraded_) bufferevent_free(bev);
    });
    server_.reset();
    dispatcher_.Shutdown();
  }

  // Serves with keep-alive: "/echo" answers the body at once; "/late"
  // answers from another thread after 200 ms; "/drop" drops its responder;
  // "/upgrade" upgrades to a protocol that echoes bytes in upper case.
  void Start(HttpServer::Options options = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    auto handler = [this](HttpRequest request, Responder responder) {
      HttpResponse response;
      response.body = absl::StrCat(request.method, " ", request.path, " ", request.body);
      if (request.path == "/late") {
        {
          absl::MutexLock lock(&mu_);
          answerers_.emplace_back(
              [responder = std::move(responder), response = std::move(response)]() mutable {
                absl::SleepFor(absl::Milliseconds(200));
                responder.Send(std::move(response));
              });
        }
        late_taken_.Notify();
      } else if (request.path == "/upgrade") {
        HttpResponse upgrade;
        upgrade.status = 101;
        upgrade.headers.emplace_back("Upgrade", "shout");
        responder.Upgrade(std::move(upgrade), [this](bufferevent* bev) {
          upgraded_.push_back(bev);
          bufferevent_setcb(bev, &ShoutBack, nullptr, nullptr, nullptr);
          bufferevent_enable(bev, EV_READ | EV_WRITE);
          ShoutBack(bev, nullptr);  // What came with the request.
        });
      } else if (request.path != "/drop") {
        responder.Send(std::move(response));
      }
    };
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start(dispatcher_, options, std::move(handler), observer_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Writes what `bev` read back in upper case.
  static void ShoutBack(bufferevent* bev, void* /*arg*/) {
    char chunk[4096];
    for (;;) {
      const size_t n = bufferevent_read(bev, chunk, sizeof(chunk));
      if (n == 0) return;
      for (size_t i = 0; i < n; ++i) chunk[i] = absl::ascii_toupper(chunk[i]);
      bufferevent_write(bev, chunk, n);
    }
  }

  static HttpServer::Options KeepAlive() {
    HttpServer::Options options;
    options.keep_alive = true;
    options.max_body_bytes = 1024;
    return options;
  }

  event::DispatcherImpl dispatcher_;
  NoObserver observer_;
  std::unique_ptr<HttpServer> server_;
  absl::Mutex mu_;
  std::vector<std::thread> answerers_ ABSL_GUARDED_BY(mu_);
  absl::Notification late_taken_;       // A "/late" request reached the handler (one per test).
  std::vector<bufferevent*> upgraded_;  // Dispatcher thread.
};

TEST_F(HttpServerTest, AnUpgradeHandsTheConnectionOverWithWhatCameAfterTheRequest) {
  Start(KeepAlive());
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  client.Send("GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: shout\r\n\r\nearly ");
  const std::string answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\n\r\n";
  EXPECT_EQ(client.Read(answer.size()), answer);
  EXPECT_EQ(client.Read(6), "EARLY ");
  client.Send("later");
  EXPECT_EQ(client.Read(5), "LATER");
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInTheirOrderOnOneConnection) {
  Start(KeepAlive());
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  // The first is answered 200 ms later, from another thread; the second at
  // once: its answer still comes second.
  client.Send(Post("/late", "one") + Post("/echo", "two"));
  const std::string first = client.ReadResponse();
  EXPECT_THAT(first, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(first, HasSubstr("Connection: keep-alive\r\n"));
  EXPECT_THAT(first, HasSubstr("\r\n\r\nPOST /late one"));
  EXPECT_THAT(client.ReadResponse(), HasSubstr("\r\n\r\nPOST /echo two"));
  client.Send("GET /echo?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(client.ReadResponse(), HasSubstr("\r\n\r\nGET /echo "));
}

TEST_F(HttpServerTest, ConnectionCloseOrHttp10EndsTheConnectionAfterTheAnswer) {
  Start(KeepAlive());
  Client asks_close(server_->port());
  asks_close.Send(Post("/echo", "a", "Connection: close\r\n"));
  EXPECT_THAT(asks_close.ReadResponse(), HasSubstr("Connection: close\r\n"));
  EXPECT_TRUE(asks_close.ClosedByServer());
  Client old(server_->port());
  old.Send("GET /echo HTTP/1.0\r\n\r\n");
  EXPECT_THAT(old.ReadResponse(), StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_TRUE(old.ClosedByServer());
}

TEST_F(HttpServerTest, RequestsBeyondTheBoundsAreRefusedAndTheConnectionCloses) {
  HttpServer::Options options = KeepAlive();
  options.max_head_bytes = 256;
  Start(options);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Post("/echo", std::string(1025, 'x')), "HTTP/1.1 413 Content Too Large\r\n"},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
       "HTTP/1.1 411 Length Required\r\n"},
      {absl::StrCat("GET /echo HTTP/1.1\r\nX-Long: ", std::string(300, 'y'), "\r\n\r\n"),
       "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
      {"GET echo HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
      {"GET /echo HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n"},
      {"GET /echo HTTP/1.1\r\nBad : header\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
  };
  for (const auto& [request, status] : cases) {
    Client client(server_->port());
    client.Send(request);
    EXPECT_THAT(client.ReadResponse(), StartsWith(status)) << request.substr(0, 40);
    EXPECT_TRUE(client.ClosedByServer()) << request.substr(0, 40);
  }
}

TEST_F(HttpServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  Start(KeepAlive());
  Client client(server_->port());
  client.Send("POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(client.ReadResponse(), "HTTP/1.1 100 Continue\r\n\r\n");
  client.Send("hello");
  EXPECT_THAT(client.ReadResponse(), HasSubstr("\r\n\r\nPOST /echo hello"));
}

TEST_F(HttpServerTest, AClientThatClosedItsSideStillGetsItsAnswer) {
  Start(KeepAlive());
  Client client(server_->port());
  client.Send(Post("/late", "then shut"));
  client.ShutdownWrite();
  const std::string answer = client.ReadResponse();
  EXPECT_THAT(answer, HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(answer, HasSubstr("POST /late then shut"));
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_F(HttpServerTest, ADroppedResponderAnswers500) {
  Start(KeepAlive());
  Client client(server_->port());
  client.Send(Post("/drop", ""));
  EXPECT_THAT(client.ReadResponse(), StartsWith("HTTP/1.1 500 Internal Server Error\r\n"));
  client.Send(Post("/echo", "still here"));
  EXPECT_THAT(client.ReadResponse(), HasSubstr("still here"));
}

TEST_F(HttpServerTest, AKeptAliveConnectionClosesWhenTheNextRequestIsLate) {
  HttpServer::Options options = KeepAlive();
  options.request_timeout = absl::Milliseconds(300);
  Start(options);
  Client client(server_->port());
  // No later than the answer, which starts the wait for the next request.
  const absl::Time asked = absl::Now();
  client.Send(Post("/echo", "x"));
  EXPECT_THAT(client.ReadResponse(), HasSubstr("POST /echo x"));
  client.Send("GET /echo HTTP/1.1\r\n");  // Never finished.
  EXPECT_TRUE(client.ClosedByServer());
  // libevent times with the coarse monotonic clock (a tick of a few ms).
  EXPECT_GE(absl::Now() - asked, options.request_timeout - absl::Milliseconds(10));
}

TEST_F(HttpServerTest, StopAcceptingClosesIdleConnectionsAndAnswersWhatIsInFlight) {
  Start(KeepAlive());
  Client idle(server_->port());
  idle.Send(Post("/echo", "before"));
  EXPECT_THAT(idle.ReadResponse(), HasSubstr("Connection: keep-alive\r\n"));
  Client busy(server_->port());
  busy.Send(Post("/late", "in flight"));                               // Answered 200 ms later.
  ASSERT_TRUE(late_taken_.WaitForNotificationWithTimeout(kPatience));  // The handler has it.
  server_->StopAccepting();
  EXPECT_TRUE(idle.ClosedByServer());
  const std::string answer = busy.ReadResponse();
  EXPECT_THAT(answer, HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(answer, HasSubstr("POST /late in flight"));
  EXPECT_TRUE(busy.ClosedByServer());
  Client late(server_->port());
  EXPECT_FALSE(late.connected());
}

}  // namespace
}  // namespace switchboard::http
