// The nginx harness itself, through the HTTP pool: limit_req answers 429 past
// rate and burst, the access log parses (statuses, connections, rate over a
// window), and Stop() / Restart() serve again on the same port, waiting for
// it while another process holds it.
#include "tests/testing/nginx_server.h"

#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/http/pool_harness.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::switchboard::http::PoolHarness;
using ::switchboard::http::Request;
using ::switchboard::http::Response;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

Request Post(std::string url) {
  Request request;
  request.url = std::move(url);
  request.body = R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})";
  return request;
}

int StatusOf(const absl::StatusOr<Response>& response) {
  return response.ok() ? response->status : -1;
}

std::string ErrorLog(const NginxServer& nginx) {
  std::ifstream in(absl::StrCat(nginx.dir(), "/error.log"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(NginxServerTest, RateLimitAnswers429PastRateAndBurst) {
  NginxServer::Options options;
  options.rate_limit = "6r/m";  // One request per 10 s: none refills during the test.
  options.burst = 2;
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(options);
  ASSERT_THAT(nginx, IsOk());
  PoolHarness harness;

  std::vector<int> statuses;
  for (int i = 0; i < 5; ++i) statuses.push_back(StatusOf(harness.Call(Post((*nginx)->url()))));

  // One at the rate, two in the burst (nodelay), then refused.
  EXPECT_THAT(statuses, ElementsAre(200, 200, 200, 429, 429));
  absl::StatusOr<AccessLog> log = (*nginx)->WaitForAccessLog(5);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(log->CountByStatus(), ElementsAre(Pair(200, 3), Pair(429, 2)));
  // The answers up to the first 429 share one kept-alive connection. nginx
  // may close it after a 429: limit_req answers from the request's headers,
  // and when the body (which the pool sends in a write of its own) arrives
  // later, nginx discards it with a lingering close.
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(log->entries[i].connection, log->entries[0].connection) << "request " << i;
  }
  const absl::Time first = log->entries.front().time;
  EXPECT_DOUBLE_EQ(log->RequestsPerSecond(first, first + absl::Seconds(10)), 0.5);
  EXPECT_DOUBLE_EQ(log->RequestsPerSecond(first - absl::Seconds(10), first), 0.0);
}

TEST(NginxServerTest, RestartServesAgainOnTheSamePort) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  const int port = (*nginx)->port();
  PoolHarness harness;
  ASSERT_EQ(StatusOf(harness.Call(Post((*nginx)->url()))), 200);
  ASSERT_THAT((*nginx)->WaitForAccessLog(1), IsOk());  // Stop() would lose a line to come.

  (*nginx)->Stop();
  EXPECT_THAT(harness.Call(Post((*nginx)->url())), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT((*nginx)->Restart(), IsOk());

  EXPECT_EQ((*nginx)->port(), port);
  EXPECT_EQ(StatusOf(harness.Call(Post((*nginx)->url()))), 200);
  absl::StatusOr<AccessLog> log = (*nginx)->WaitForAccessLog(2);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT(log->CountByStatus(), ElementsAre(Pair(200, 2)));
}

// Another process takes the port while nginx is stopped (a server of a test
// running in parallel, say) and lets it go 3 s later: longer than nginx's own
// bind retries (2.5 s), so the first start fails and Restart() starts it
// again.
TEST(NginxServerTest, RestartWaitsForItsPortWhileAnotherProcessHoldsIt) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  const int port = (*nginx)->port();
  (*nginx)->Stop();
  absl::StatusOr<LoopbackSocket> taker = TakeLoopbackPort(port);
  ASSERT_THAT(taker, IsOk());
  std::thread releaser([fd = taker->fd] {
    absl::SleepFor(absl::Seconds(3));
    close(fd);
  });

  const absl::Status restarted = (*nginx)->Restart();
  releaser.join();

  ASSERT_THAT(restarted, IsOk());
  EXPECT_THAT(ErrorLog(**nginx), HasSubstr("Address already in use"));
  EXPECT_EQ((*nginx)->port(), port);
  PoolHarness harness;
  EXPECT_EQ(StatusOf(harness.Call(Post((*nginx)->url()))), 200);
}

TEST(NginxServerTest, RestartFailsWithNginxsLogWhenItsPortStaysTaken) {
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  (*nginx)->Stop();
  absl::StatusOr<LoopbackSocket> taker = TakeLoopbackPort((*nginx)->port());
  ASSERT_THAT(taker, IsOk());

  EXPECT_THAT((*nginx)->Restart(),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("nginx could not bind its ports again within"),
                             HasSubstr("Address already in use"))));
  close(taker->fd);
}

TEST(NginxServerTest, RefusesAnswersItCannotQuote) {
  NginxServer::Options options;
  options.answer = R"({"result":"it's"})";
  EXPECT_THAT(NginxServer::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.answer = R"({"result":"$5"})";
  EXPECT_THAT(NginxServer::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace switchboard::testing
