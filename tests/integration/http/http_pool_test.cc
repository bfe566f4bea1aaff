// HttpPoolImpl against a real nginx on run-time loopback ports: answers and
// statuses, keep-alive, the connection cap, HTTP/2 multiplexing (over TLS,
// and over cleartext as far as this libcurl allows), TLS verification,
// answers sent before the request was read, Retry-After, transport
// failures as statuses, timeouts (including the wait for a free
// connection), the response size limit, the in-flight limit, cancelling,
// and destroying the pool with requests in flight. Connections are counted
// both by nginx (its access log) and by the pool's observer. An echo server
// shows what each request carried over reused curl handles, and closes
// kept-alive connections as an idle timeout does.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/http/echo_server.h"
#include "tests/integration/http/pool_harness.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::http {

// gtest would print a result as bytes; this is what a failure should show.
void PrintTo(const absl::StatusOr<Response>& response, std::ostream* out) {
  if (!response.ok()) {
    *out << response.status();
    return;
  }
  *out << "HTTP " << response->status << " " << response->body.substr(0, 200);
}

namespace {

using ::switchboard::testing::AccessLog;
using ::switchboard::testing::AccessLogEntry;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::NginxServer;
using ::switchboard::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Le;
using ::testing::Not;
using ::testing::Optional;
using ::testing::Pair;
using ::testing::SizeIs;

// Generous for a loaded 2-core CI machine: how much later than its timeout
// a request may fail, and how long a refused connection may take to fail.
constexpr absl::Duration kLateness = absl::Seconds(2);

std::unique_ptr<NginxServer> StartNginx(NginxServer::Options options = {}) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(std::move(options));
  EXPECT_THAT(nginx, IsOk());
  return nginx.ok() ? *std::move(nginx) : nullptr;
}

Request Post(std::string url, absl::Duration timeout = absl::Seconds(10)) {
  Request request;
  request.url = std::move(url);
  request.body = R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})";
  request.timeout = timeout;
  return request;
}

AccessLog WaitForAccessLog(const NginxServer& nginx, size_t entries) {
  absl::StatusOr<AccessLog> log = nginx.WaitForAccessLog(entries);
  EXPECT_THAT(log, IsOk());
  return log.ok() ? *std::move(log) : AccessLog();
}

MATCHER_P(HasStatus, status, "is an HTTP response with status " + std::to_string(status)) {
  if (!arg.ok()) {
    *result_listener << "failed: " << arg.status();
    return false;
  }
  *result_listener << "status " << arg->status;
  return arg->status == status;
}

std::vector<absl::StatusOr<Response>> Responses(const std::vector<PoolHarness::Result>& results) {
  std::vector<absl::StatusOr<Response>> responses;
  for (const PoolHarness::Result& result : results) responses.push_back(result.response);
  return responses;
}

// Sends `count` requests to `nginx` at once, expects each (and every
// earlier one) answered with 200 and logged, and returns nginx's log.
AccessLog SendAtOnce(PoolHarness& harness, const NginxServer& nginx, int count) {
  const size_t total = harness.results().size() + count;
  harness.Send(Post(nginx.url()), count);
  EXPECT_TRUE(harness.WaitForResults(total));
  EXPECT_THAT(Responses(harness.results()), Each(HasStatus(200)));
  AccessLog log = WaitForAccessLog(nginx, total);
  EXPECT_THAT(log.entries, SizeIs(total));
  return log;
}

// A loopback port whose accept queue is full, so the kernel drops new SYNs
// and a connect to it stays in progress until given up.
class PortThatNeverAccepts {
 public:
  PortThatNeverAccepts() {
    // Backlog 0: full with one connection waiting.
    const testing::LoopbackSocket listener = testing::ListenOnLoopback(0).value();
    listener_ = listener.fd;
    port_ = listener.port;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port_));
    connect(filler_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  }
  ~PortThatNeverAccepts() {
    close(filler_);
    close(listener_);
  }

  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/"); }

 private:
  int listener_ = -1;
  const int filler_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int port_ = 0;
};

TEST(HttpPoolTest, AnswersWithTheServersStatusAndBody) {
  NginxServer::Options options;
  options.answer = R"({"jsonrpc":"2.0","result":287163,"id":1})";
  std::unique_ptr<NginxServer> nginx = StartNginx(options);
  ASSERT_NE(nginx, nullptr);
  PoolHarness harness;

  absl::StatusOr<Response> response = harness.Call(Post(nginx->url()));

  ASSERT_THAT(response, HasStatus(200));
  EXPECT_EQ(response->body, options.answer);
  EXPECT_EQ(response->retry_after, std::nullopt);
  const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(outcomes[0].http_status, 200);
  EXPECT_GT(outcomes[0].latency, absl::ZeroDuration());
  const AccessLog log = WaitForAccessLog(*nginx, 1);
  ASSERT_THAT(log.entries, SizeIs(1));
  EXPECT_EQ(log.entries[0].status, 200);
  EXPECT_EQ(log.entries[0].uri, "/");
  EXPECT_EQ(log.entries[0].protocol, "HTTP/1.1");
}

TEST(HttpPoolTest, KeepAliveCarriesSequentialRequestsOverOneConnection) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  PoolHarness harness;
  constexpr size_t kRequests = 100;

  // Each callback sends the next request: a callback may call Send().
  std::vector<absl::StatusOr<Response>> responses;  // I/O thread until `done`.
  absl::Notification done;
  std::function<void()> send_next = [&] {
    harness.pool().Send(Post(nginx->url()), [&](absl::StatusOr<Response> response) {
      responses.push_back(std::move(response));
      if (responses.size() < kRequests) {
        send_next();
      } else {
        done.Notify();
      }
    });
  };
  harness.RunOnIo([&] { send_next(); });

  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kResultTimeout));
  EXPECT_THAT(responses, Each(HasStatus(200)));
  const AccessLog log = WaitForAccessLog(*nginx, kRequests);
  EXPECT_THAT(log.entries, SizeIs(kRequests));
  EXPECT_THAT(log.Connections(), SizeIs(1));
  EXPECT_EQ(harness.observer().opened(), 1);
  EXPECT_EQ(harness.open_connections(), 1);
}

TEST(HttpPoolTest, ReusedHandlesSendEachRequestsOwnBody) {
  EchoServer echo;
  PoolHarness harness;
  const std::string long_body(100 * 1024, 'L');

  // One after another, so every request after the first reuses the curl
  // handle (and the connection) of the one before.
  Request request = Post(echo.url());
  request.body = long_body;
  absl::StatusOr<Response> long_answer = harness.Call(request);
  request.body = "s";
  absl::StatusOr<Response> short_answer = harness.Call(request);
  request.body = "";
  absl::StatusOr<Response> empty_answer = harness.Call(request);

  ASSERT_THAT(long_answer, HasStatus(200));
  EXPECT_EQ(long_answer->body, long_body);
  ASSERT_THAT(short_answer, HasStatus(200));
  EXPECT_EQ(short_answer->body, "s");
  ASSERT_THAT(empty_answer, HasStatus(200));
  EXPECT_EQ(empty_answer->body, "");
  EXPECT_EQ(echo.accepted(), 1);
}

// A request that may repeat hands libcurl its body directly
// (CURLOPT_POSTFIELDS), one that may not through the read callback: a
// reused handle must send each request's own body whichever way the one
// before it went.
TEST(HttpPoolTest, ReusedHandlesSendEachRequestsOwnBodyWhetherItMayRepeatOrNot) {
  EchoServer echo;
  PoolHarness harness;
  const std::string long_body(100 * 1024, 'L');
  const std::vector<std::pair<std::string, bool>> requests = {
      {long_body, true}, {"s", false}, {"t", true}, {"", true}, {"u", false}, {"", false}};
  for (const auto& [body, may_repeat] : requests) {
    Request request = Post(echo.url());
    request.body = body;
    request.may_repeat = may_repeat;
    absl::StatusOr<Response> answer = harness.Call(request);
    ASSERT_THAT(answer, HasStatus(200)) << body.size() << " bytes, may_repeat " << may_repeat;
    EXPECT_EQ(answer->body, body) << body.size() << " bytes, may_repeat " << may_repeat;
  }
  EXPECT_EQ(echo.accepted(), 1);
}

TEST(HttpPoolTest, CountsAKeptAliveConnectionTheServerClosed) {
  EchoServer echo;
  PoolHarness harness;

  ASSERT_THAT(harness.Call(Post(echo.url())), HasStatus(200));
  EXPECT_EQ(harness.open_connections(), 1);
  // The provider's idle timeout: curl finds the connection dead when it
  // next wants it, closes it and opens another.
  ASSERT_TRUE(echo.CloseIdleConnection());
  ASSERT_THAT(harness.Call(Post(echo.url())), HasStatus(200));

  EXPECT_EQ(echo.accepted(), 2);
  EXPECT_EQ(harness.observer().opened(), 2);
  EXPECT_EQ(harness.observer().closed(), 1);
  EXPECT_EQ(harness.open_connections(), 1);
  harness.DestroyPool();
  EXPECT_EQ(harness.observer().closed(), 2);
}

TEST(HttpPoolTest, ConnectionCapHoldsUnderTwoHundredConcurrentRequests) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.max_connections_per_host = 2;
  PoolHarness harness(options);
  constexpr int kRequests = 200;

  const AccessLog log = SendAtOnce(harness, *nginx, kRequests);

  EXPECT_THAT(log.CountByStatus(), ElementsAre(Pair(200, kRequests)));
  // The cap is reached and never passed, by nginx's count and the pool's.
  EXPECT_THAT(log.Connections(), SizeIs(2));
  EXPECT_EQ(harness.observer().peak_open(), 2);
  EXPECT_EQ(harness.observer().opened(), 2);
}

TEST(HttpPoolTest, Http2OverTlsMultiplexesConcurrentRequestsOverOneConnection) {
  NginxServer::Options nginx_options;
  nginx_options.tls = true;
  nginx_options.http2 = true;
  std::unique_ptr<NginxServer> nginx = StartNginx(nginx_options);
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.http2 = true;
  options.max_connections_per_host = 4;
  options.ca_file = nginx->ca_file();  // Verified, against the server's own certificate.
  PoolHarness harness(options);
  constexpr int kRequests = 50;

  // A burst onto a connection still being set up can lose a response to
  // libcurl 7.88 (http_pool_impl.h): the connection is made first.
  absl::StatusOr<Response> first = harness.Call(Post(nginx->url()));
  ASSERT_THAT(first, HasStatus(200));
  EXPECT_EQ(first->http_version, 2);

  const AccessLog log = SendAtOnce(harness, *nginx, kRequests);

  EXPECT_THAT(log.entries, Each(Field(&AccessLogEntry::protocol, "HTTP/2.0")));
  EXPECT_THAT(log.Connections(), SizeIs(1));
  EXPECT_EQ(harness.observer().opened(), 1);
}

TEST(HttpPoolTest, Http2OnCleartextNeedsCurl8ElseSpeaksHttp11) {
  // Cleartext HTTP/2 (prior knowledge) where this libcurl can reuse such
  // connections; HTTP/1.1 to a server that speaks it otherwise.
  const bool h2c = CleartextHttp2Supported();
  NginxServer::Options nginx_options;
  nginx_options.http2 = h2c;
  std::unique_ptr<NginxServer> nginx = StartNginx(nginx_options);
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.http2 = true;
  options.max_connections_per_host = 2;
  PoolHarness harness(options);
  constexpr int kRequests = 50;

  const AccessLog log = SendAtOnce(harness, *nginx, kRequests);

  EXPECT_THAT(log.entries, Each(Field(&AccessLogEntry::protocol, h2c ? "HTTP/2.0" : "HTTP/1.1")));
  EXPECT_THAT(log.Connections(), SizeIs(h2c ? 1 : 2));
}

TEST(HttpPoolTest, TlsVerificationRefusesAnUntrustedCertificate) {
  NginxServer::Options nginx_options;
  nginx_options.tls = true;
  std::unique_ptr<NginxServer> nginx = StartNginx(nginx_options);
  ASSERT_NE(nginx, nullptr);
  PoolHarness verifying;  // The default: the system's authorities only.
  HttpPoolOptions trusting_options;
  trusting_options.verify_tls = false;
  PoolHarness trusting(trusting_options);

  EXPECT_THAT(verifying.Call(Post(nginx->url())),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate")));
  EXPECT_THAT(trusting.Call(Post(nginx->url())), HasStatus(200));
}

TEST(HttpPoolTest, TooManyRequestsIsAResponseWithRetryAfter) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  PoolHarness harness;
  ASSERT_THAT(nginx->SetPushback(true), IsOk());

  absl::StatusOr<Response> pushed_back = harness.Call(Post(nginx->url()));

  ASSERT_THAT(pushed_back, HasStatus(429));
  EXPECT_EQ(pushed_back->body, NginxServer::kPushbackAnswer);
  EXPECT_THAT(pushed_back->retry_after, Optional(absl::Seconds(1)));

  // The next response on the same connection carries no Retry-After.
  ASSERT_THAT(nginx->SetPushback(false), IsOk());
  absl::StatusOr<Response> answered = harness.Call(Post(nginx->url()));
  ASSERT_THAT(answered, HasStatus(200));
  EXPECT_EQ(answered->retry_after, std::nullopt);
  EXPECT_EQ(harness.observer().opened(), 1);
}

TEST(HttpPoolTest, EarlyAnswerToALargeRequestComesBackAtOnce) {
  // nginx's `return` answers before reading the request body, as RFC 9113
  // §8.1 allows. With a body larger than HTTP/2's initial stream window
  // (64 KiB) the rest of it is never read; the answer must still come back
  // at once, not at the timeout.
  for (const bool http2 : {false, true}) {
    SCOPED_TRACE(http2 ? "HTTP/2" : "HTTP/1.1");
    NginxServer::Options nginx_options;
    nginx_options.tls = true;
    nginx_options.http2 = http2;
    std::unique_ptr<NginxServer> nginx = StartNginx(nginx_options);
    ASSERT_NE(nginx, nullptr);
    HttpPoolOptions options;
    options.http2 = http2;
    options.ca_file = nginx->ca_file();
    PoolHarness harness(options);
    Request request = Post(nginx->url());
    request.body = absl::StrCat(R"({"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":[")",
                                std::string(256 * 1024, 'A'), R"("]})");

    absl::StatusOr<Response> response = harness.Call(request);

    ASSERT_THAT(response, HasStatus(200));
    EXPECT_EQ(response->body, nginx_options.answer);
    EXPECT_EQ(response->http_version, http2 ? 2 : 1);
    const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
    ASSERT_THAT(outcomes, SizeIs(1));
    EXPECT_LT(outcomes[0].latency, kLateness);  // The timeout is 10 s.
    const AccessLog log = WaitForAccessLog(*nginx, 1);
    ASSERT_THAT(log.entries, SizeIs(1));
    EXPECT_EQ(log.entries[0].protocol, http2 ? "HTTP/2.0" : "HTTP/1.1");
  }
}

TEST(HttpPoolTest, RetryAfterAsAnHttpDateIsTheDelayUntilThen) {
  NginxServer::Options options;
  options.pushback_retry_after = absl::FormatTime(
      "%a, %d %b %Y %H:%M:%S GMT", absl::Now() + absl::Seconds(30), absl::UTCTimeZone());
  std::unique_ptr<NginxServer> nginx = StartNginx(options);
  ASSERT_NE(nginx, nullptr);
  ASSERT_THAT(nginx->SetPushback(true), IsOk());
  PoolHarness harness;

  absl::StatusOr<Response> response = harness.Call(Post(nginx->url()));

  ASSERT_THAT(response, HasStatus(429));
  // The date has whole seconds; the margin covers a slow start.
  EXPECT_THAT(response->retry_after,
              Optional(AllOf(Ge(absl::Seconds(30) - kLateness), Le(absl::Seconds(30)))));
}

TEST(HttpPoolTest, RefusedConnectionIsUnavailableAtOnce) {
  // Bound, never listening, held through the call: refused, and no other
  // server can take the port meanwhile.
  absl::StatusOr<testing::LoopbackSocket> refusing = testing::BindRefusingPort();
  ASSERT_THAT(refusing, IsOk());
  const int refusing_port = refusing->port;
  PoolHarness harness;

  absl::StatusOr<Response> response =
      harness.Call(Post(absl::StrCat("http://127.0.0.1:", refusing_port, "/v2/secret-key")));
  close(refusing->fd);

  EXPECT_THAT(
      response,
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr(absl::StrCat("POST http://127.0.0.1:", refusing_port, "/***/***: ")),
                     Not(HasSubstr("secret-key")))));
  const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].code, absl::StatusCode::kUnavailable);
  EXPECT_LT(outcomes[0].latency, kLateness);
  // The failed attempt's socket was opened and closed.
  EXPECT_EQ(harness.observer().opened(), 1);
  EXPECT_EQ(harness.observer().closed(), 1);
  EXPECT_EQ(harness.open_connections(), 0);
}

TEST(HttpPoolTest, CountsConnectionsCutShortWhileConnecting) {
  // libcurl closes these without its close-socket callback; the count must
  // still go back down.
  PortThatNeverAccepts port;
  PoolHarness harness;

  const RequestId cancelled = harness.Send(Post(port.url())).front();
  ASSERT_TRUE(harness.WaitForOpenConnections(1));
  harness.RunOnIo([&] { harness.pool().Cancel(cancelled); });
  EXPECT_EQ(harness.open_connections(), 0);

  EXPECT_THAT(harness.Call(Post(port.url(), absl::Milliseconds(200))),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(harness.open_connections(), 0);

  harness.Send(Post(port.url()));
  ASSERT_TRUE(harness.WaitForOpenConnections(1));
  harness.DestroyPool();

  EXPECT_EQ(harness.observer().opened(), 3);
  EXPECT_EQ(harness.observer().closed(), 3);
}

TEST(HttpPoolTest, SilentServerFailsWithDeadlineExceededAtTheTimeout) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  PoolHarness harness;
  constexpr absl::Duration kTimeout = absl::Milliseconds(300);

  absl::StatusOr<Response> response = harness.Call(Post(nginx->url("/slow"), kTimeout));

  EXPECT_THAT(response,
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no response within 300ms")));
  const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_GE(outcomes[0].latency, kTimeout);
  EXPECT_LT(outcomes[0].latency, kTimeout + kLateness);
}

TEST(HttpPoolTest, TimeoutCountsTheWaitForAFreeConnection) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.max_connections_per_host = 1;
  PoolHarness harness(options);
  constexpr absl::Duration kTimeout = absl::Milliseconds(300);

  // The silent request holds the only connection, so the second waits in
  // the queue until its timeout.
  const RequestId holder = harness.Send(Post(nginx->url("/slow"))).front();
  ASSERT_TRUE(harness.WaitForOpenConnections(1));
  absl::StatusOr<Response> queued = harness.Call(Post(nginx->url(), kTimeout));

  EXPECT_THAT(queued, StatusIs(absl::StatusCode::kDeadlineExceeded));
  const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_GE(outcomes[0].latency, kTimeout);
  EXPECT_LT(outcomes[0].latency, kTimeout + kLateness);
  EXPECT_EQ(harness.observer().opened(), 1);
  bool cancelled = false;
  harness.RunOnIo([&] { cancelled = harness.pool().Cancel(holder); });
  EXPECT_TRUE(cancelled);
  // nginx never saw the queued request (the silent one logs when cut off).
  const AccessLog log = WaitForAccessLog(*nginx, 1);
  EXPECT_THAT(log.entries, ElementsAre(Field(&AccessLogEntry::uri, "/slow")));
}

TEST(HttpPoolTest, ResponseOverTheSizeLimitIsResourceExhausted) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  const std::string large = nginx->LargeAnswer();
  HttpPoolOptions fits;
  fits.max_response_bytes = large.size();
  HttpPoolOptions one_byte_short;
  one_byte_short.max_response_bytes = large.size() - 1;
  PoolHarness fitting(fits);
  PoolHarness short_one(one_byte_short);

  absl::StatusOr<Response> whole = fitting.Call(Post(nginx->url("/large")));
  absl::StatusOr<Response> cut = short_one.Call(Post(nginx->url("/large")));

  ASSERT_THAT(whole, HasStatus(200));
  EXPECT_EQ(whole->body, large);
  EXPECT_THAT(cut,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr(absl::StrCat("exceeds the ", large.size() - 1, "-byte limit"))));
}

TEST(HttpPoolTest, CancelledRequestNeverCallsBack) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  PoolHarness harness;
  constexpr absl::Duration kTimeout = absl::Milliseconds(300);

  const RequestId silent = harness.Send(Post(nginx->url("/slow"), kTimeout)).front();
  ASSERT_TRUE(harness.WaitForOpenConnections(1));
  bool first_cancel = false;
  bool second_cancel = true;
  harness.RunOnIo([&] {
    first_cancel = harness.pool().Cancel(silent);
    second_cancel = harness.pool().Cancel(silent);
  });
  // The cancelled request's HTTP/1.1 connection is closed at once.
  EXPECT_EQ(harness.open_connections(), 0);
  // A witness sent after the cancel with the same timeout: its deadline is
  // later, and the pool's deadlines fire in order on its one thread, so by
  // the time the witness has timed out, a callback the cancelled request
  // could still get at its deadline would have come first.
  const RequestId witness = harness.Send(Post(nginx->url("/slow"), kTimeout)).front();
  ASSERT_TRUE(harness.WaitForResults(1));
  // And the pool goes on answering.
  ASSERT_THAT(harness.Call(Post(nginx->url())), HasStatus(200));

  EXPECT_TRUE(first_cancel);
  EXPECT_FALSE(second_cancel);
  const std::vector<PoolHarness::Result> results = harness.results();
  ASSERT_THAT(results, SizeIs(2));
  EXPECT_EQ(results[0].id, witness);
  EXPECT_THAT(results[0].response, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_NE(results[1].id, silent);
  EXPECT_THAT(results[1].response, HasStatus(200));
  const std::vector<RequestOutcome> outcomes = harness.observer().outcomes();
  ASSERT_THAT(outcomes, SizeIs(3));
  EXPECT_EQ(outcomes[0].code, absl::StatusCode::kCancelled);
  EXPECT_EQ(outcomes[1].code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(outcomes[2].code, absl::StatusCode::kOk);
  // Each silent request's connection closed with it; the answer came over
  // a third.
  EXPECT_EQ(harness.observer().opened(), 3);
  EXPECT_EQ(harness.observer().closed(), 2);
}

TEST(HttpPoolTest, RequestsPastTheInFlightLimitFailAfterSendReturns) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.max_requests_in_flight = 2;
  PoolHarness harness(options);

  size_t results_when_sent = 0;
  harness.RunOnIo([&] {
    for (int i = 0; i < 3; ++i) {
      harness.SendOnIo(Post(nginx->url("/slow"), absl::Milliseconds(300)));
    }
    results_when_sent = harness.results().size();
  });

  ASSERT_TRUE(harness.WaitForResults(3));
  EXPECT_EQ(results_when_sent, 0);
  const std::vector<PoolHarness::Result> results = harness.results();
  EXPECT_EQ(results[0].id, 3);
  EXPECT_THAT(results[0].response, StatusIs(absl::StatusCode::kResourceExhausted,
                                            HasSubstr("2 requests in flight already")));
  EXPECT_THAT(results[1].response, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(results[2].response, StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(HttpPoolTest, SchemeOtherThanHttpIsInvalidArgument) {
  PoolHarness harness;

  absl::StatusOr<Response> response = harness.Call(Post("ftp://127.0.0.1:21/key"));

  EXPECT_THAT(response, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("POST ftp://127.0.0.1:21/***")));
  EXPECT_EQ(harness.observer().opened(), 0);
}

TEST(HttpPoolTest, DestroyingThePoolFailsRequestsInFlightAndClosesConnections) {
  std::unique_ptr<NginxServer> nginx = StartNginx();
  ASSERT_NE(nginx, nullptr);
  HttpPoolOptions options;
  options.max_connections_per_host = 4;
  PoolHarness harness(options);
  constexpr int kRequests = 10;
  ASSERT_THAT(harness.Call(Post(nginx->url())), HasStatus(200));  // An idle connection too.
  harness.Send(Post(nginx->url("/slow")), kRequests);
  // Four silent requests hold every connection; the others wait.
  ASSERT_TRUE(harness.WaitForOpenConnections(4));

  harness.DestroyPool();

  // The callbacks ran from the destructor.
  const std::vector<PoolHarness::Result> results = harness.results();
  ASSERT_THAT(results, SizeIs(1 + kRequests));
  for (int i = 1; i <= kRequests; ++i) {
    EXPECT_THAT(results[i].response,
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("the pool was closed")));
  }
  EXPECT_EQ(harness.observer().opened(), 4);
  EXPECT_EQ(harness.observer().closed(), 4);
  EXPECT_THAT(harness.observer().outcomes(), SizeIs(1 + kRequests));
}

}  // namespace
}  // namespace switchboard::http
