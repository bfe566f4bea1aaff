// The metrics endpoint on real loopback sockets: what it serves, and that
// idle, slow and surplus connections never hold a scrape up.
#include "server/app/metrics_endpoint.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::app {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// How long a test waits for an answer it expects. A scrape on loopback
// takes microseconds; the margin is for a loaded CI machine.
constexpr absl::Duration kPatience = absl::Seconds(5);

// A connected socket to `port` on loopback that gives up reading after
// kPatience; -1 when the connect fails.
int Connect(int port) {
  const int fd = testing::ConnectToLoopback(port);
  if (fd < 0) return -1;
  const timeval timeout{static_cast<time_t>(absl::ToInt64Seconds(kPatience)), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// Everything the server sends until it closes: empty when it closed at
// once, an error when it said nothing within kPatience.
absl::StatusOr<std::string> ReadToEnd(int fd) {
  std::string response;
  char buffer[16384];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n == 0) return response;
    if (n < 0) return absl::DeadlineExceededError("no answer, and the connection stays open");
    response.append(buffer, static_cast<size_t>(n));
  }
}

// Sends `request` on a new connection and returns the whole response.
absl::StatusOr<std::string> Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return absl::UnavailableError("cannot connect");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("short write");
  }
  absl::StatusOr<std::string> response = ReadToEnd(fd);
  close(fd);
  return response;
}

absl::StatusOr<std::string> Scrape(int port) {
  return Exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  MetricsEndpointTest() : dispatcher_("metrics-test", common::RealClock::Get()) {
    dispatcher_.Start();
    prometheus::BuildCounter()
        .Name("test_scrapes_total")
        .Help("A series to find.")
        .Register(*registry_)
        .Add({})
        .Increment(7);
  }

  void StartEndpoint(MetricsEndpoint::Options options = {}) {
    options.listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(dispatcher_, options, registry_);
    ASSERT_THAT(endpoint, IsOk());
    endpoint_ = *std::move(endpoint);
  }

  // A series of the endpoint's own, read from the registry.
  double Value(const std::string& family) {
    for (const prometheus::MetricFamily& collected : registry_->Collect()) {
      if (collected.name != family) continue;
      const prometheus::ClientMetric& metric = collected.metric.at(0);
      return collected.type == prometheus::MetricType::Gauge ? metric.gauge.value
                                                             : metric.counter.value;
    }
    return -1;
  }

  event::DispatcherImpl dispatcher_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<MetricsEndpoint> endpoint_;
};

TEST_F(MetricsEndpointTest, ServesTheRegistryOnGetMetricsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartEndpoint());
  absl::StatusOr<std::string> page = Scrape(endpoint_->port());
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(*page, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(*page, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(*page, HasSubstr("\ntest_scrapes_total 7\n"));
  EXPECT_THAT(Exchange(endpoint_->port(), "GET /other HTTP/1.1\r\n\r\n"),
              IsOkAndHolds(StartsWith("HTTP/1.1 404 ")));
  EXPECT_THAT(Exchange(endpoint_->port(), "POST /metrics HTTP/1.1\r\n\r\n"),
              IsOkAndHolds(StartsWith("HTTP/1.1 405 ")));
  EXPECT_THAT(
      Exchange(endpoint_->port(),
               absl::StrCat("GET /metrics HTTP/1.1\r\nX: ", std::string(9000, 'x'), "\r\n\r\n")),
      IsOkAndHolds(StartsWith("HTTP/1.1 431 ")));
}

TEST_F(MetricsEndpointTest, IdleAndSlowlorisConnectionsDoNotHoldAScrapeUp) {
  ASSERT_NO_FATAL_FAILURE(StartEndpoint());
  std::vector<int> held;
  for (int i = 0; i < 50; ++i) held.push_back(Connect(endpoint_->port()));  // Idle.
  for (int i = 0; i < 50; ++i) {  // Slowloris: a request head that never ends.
    const int fd = Connect(endpoint_->port());
    ASSERT_EQ(write(fd, "GET /metrics HTTP/1.1\r\nX-A: b", 29), 29);
    held.push_back(fd);
  }
  for (int scrape = 0; scrape < 5; ++scrape) {
    const absl::Time start = absl::Now();
    EXPECT_THAT(Scrape(endpoint_->port()), IsOkAndHolds(StartsWith("HTTP/1.1 200 OK")));
    EXPECT_LT(absl::Now() - start, kPatience);
  }
  // The scrapes' connections close once the server sees the client close.
  for (const absl::Time give_up = absl::Now() + kPatience;
       Value("switchboard_metrics_connections") != 100 && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(Value("switchboard_metrics_connections"), 100);
  for (int fd : held) close(fd);
}

TEST_F(MetricsEndpointTest, AConnectionBeyondTheCapIsClosedAtOnceAndCounted) {
  MetricsEndpoint::Options options;
  options.max_connections = 3;
  ASSERT_NO_FATAL_FAILURE(StartEndpoint(options));
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(Connect(endpoint_->port()));
  // Scraped on the dispatcher, after the three were accepted.
  const int surplus = Connect(endpoint_->port());
  ASSERT_GE(surplus, 0);
  EXPECT_THAT(ReadToEnd(surplus), IsOkAndHolds(""));  // Closed without a word.
  close(surplus);
  EXPECT_EQ(Value("switchboard_metrics_connections_refused_total"), 1);
  close(held.back());
  held.pop_back();
  // A slot is free again once the server saw the close: scrape until then.
  absl::StatusOr<std::string> page = absl::UnavailableError("not tried");
  for (const absl::Time give_up = absl::Now() + kPatience;
       absl::Now() < give_up && !(page.ok() && !page->empty());) {
    page = Scrape(endpoint_->port());
  }
  EXPECT_THAT(page, IsOkAndHolds(StartsWith("HTTP/1.1 200 OK")));
  for (int fd : held) close(fd);
}

TEST_F(MetricsEndpointTest, ADeadlineFromAcceptClosesAConnectionWhateverItSends) {
  MetricsEndpoint::Options options;
  options.request_timeout = absl::Milliseconds(300);
  ASSERT_NO_FATAL_FAILURE(StartEndpoint(options));
  const int fd = Connect(endpoint_->port());
  const absl::Time start = absl::Now();
  ASSERT_EQ(write(fd, "GET /metrics HTTP/1.1\r\n", 23), 23);  // Never finished.
  EXPECT_THAT(ReadToEnd(fd), IsOkAndHolds(""));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300) - absl::Milliseconds(5));
  close(fd);
}

}  // namespace
}  // namespace switchboard::app
