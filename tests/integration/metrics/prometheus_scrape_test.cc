// Issue 5's "Real Prometheus scrape": Debian's prometheus scrapes a running
// Switchboard (Redis backend, an nginx upstream) while workers publish,
// consume and call the JSON-RPC proxy; through Prometheus' HTTP API the test
// reads back `up` and the publish, delivery, upstream-request and rate-limit
// families, each with the exact count of what the test did. And scrapes go on
// while idle and slowloris connections hold the metrics port.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "switchboard/v1/rpc.grpc.pb.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/prometheus_server.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

constexpr char kJob[] = "switchboard";
constexpr int kMessages = 25;
// The upstream's limiter: one call each 100 ms, no burst beyond one.
constexpr int kRateLimit = 10;
constexpr int kPatientCalls = 3;
constexpr absl::Duration kPatientDeadline = absl::Seconds(5);
// Right behind the patient calls, these cannot be admitted in time: each is
// refused at once.
constexpr int kHurriedCalls = 8;
constexpr absl::Duration kHurriedDeadline = absl::Milliseconds(30);
// Prometheus scrapes every second; what it shows may lag by a few scrapes.
constexpr absl::Duration kScrapeWait = absl::Seconds(30);

// Queries `expr` until it equals `expected` or kScrapeWait passes; returns
// the last answer.
absl::StatusOr<double> QueryUntil(const PrometheusServer& prometheus, absl::string_view expr,
                                  double expected) {
  const absl::Time deadline = absl::Now() + kScrapeWait;
  absl::StatusOr<double> value = prometheus.Query(expr);
  while (!(value.ok() && *value == expected) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(250));
    value = prometheus.Query(expr);
  }
  return value;
}

grpc::Status CallRpc(v1::Rpc::Stub& stub, absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  v1::CallRequest request;
  request.set_upstream("provider");
  request.set_method("getSlot");
  v1::CallResponse response;
  return stub.Call(&context, request, &response);
}

TEST(PrometheusScrapeTest, PrometheusScrapesEveryFamilyWithTheExactCounts) {
  absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start();
  ASSERT_THAT(redis, IsOk());
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  ASSERT_THAT(nginx, IsOk());
  absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
      R"(
broker: {url: "$0"}
topics:
  - {name: jobs}
upstreams:
  - name: provider
    urls: ["$1"]
    rate_limit: {requests_per_second: $2, burst: 1}
    coalescing: {enabled: false}
)",
      (*redis)->url(), (*nginx)->url(), kRateLimit));
  ASSERT_THAT(server, IsOk());
  absl::StatusOr<std::unique_ptr<PrometheusServer>> prometheus =
      PrometheusServer::Start(kJob, server->metrics_port);
  ASSERT_THAT(prometheus, IsOk());

  // Traffic: publishes, deliveries acked, and upstream calls, some refused.
  const std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(server->target, grpc::InsecureChannelCredentials());
  const std::unique_ptr<v1::Broker::Stub> broker = v1::Broker::NewStub(channel);
  v1::PublishResponse published;
  const grpc::Status publish = Publish(*broker, "jobs", Numbered("job-", kMessages), &published);
  ASSERT_TRUE(publish.ok()) << publish.error_message();
  grpc::ClientContext consume_context;
  std::unique_ptr<ConsumeStream> consume =
      OpenConsume(*broker, consume_context, "jobs", "runners", kMessages);
  const std::vector<v1::Delivery> deliveries = ReadDeliveries(*consume, kMessages);
  ASSERT_EQ(deliveries.size(), static_cast<size_t>(kMessages));
  ASSERT_TRUE(Ack(*consume, deliveries));

  const std::unique_ptr<v1::Rpc::Stub> rpc = v1::Rpc::NewStub(channel);
  for (int i = 0; i < kPatientCalls; ++i) {
    const grpc::Status status = CallRpc(*rpc, kPatientDeadline);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  int refused = 0;
  for (int i = 0; i < kHurriedCalls; ++i) {
    const grpc::Status status = CallRpc(*rpc, kHurriedDeadline);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  ASSERT_GT(refused, 0) << "no call was refused: the test shows nothing about rejections";

  // What Prometheus stored, through its HTTP API.
  EXPECT_THAT(QueryUntil(**prometheus, absl::Substitute(R"(up{job="$0"})", kJob), 1),
              IsOkAndHolds(1))
      << (*prometheus)->log();
  EXPECT_THAT(
      QueryUntil(**prometheus, R"(switchboard_messages_published_total{topic="jobs"})", kMessages),
      IsOkAndHolds(kMessages));
  EXPECT_THAT(
      QueryUntil(**prometheus, R"(switchboard_messages_delivered_total{topic="jobs"})", kMessages),
      IsOkAndHolds(kMessages));
  EXPECT_THAT(QueryUntil(**prometheus, R"(switchboard_acks_total{topic="jobs"})", kMessages),
              IsOkAndHolds(kMessages));
  EXPECT_THAT(
      QueryUntil(**prometheus,
                 R"(switchboard_upstream_requests_total{upstream="provider",method="getSlot",)"
                 R"(outcome="ok"})",
                 kPatientCalls),
      IsOkAndHolds(kPatientCalls));
  EXPECT_THAT(
      QueryUntil(**prometheus, R"(sum(switchboard_upstream_rejections_total{upstream="provider"}))",
                 refused),
      IsOkAndHolds(refused));
  EXPECT_THAT(
      QueryUntil(**prometheus, R"(switchboard_upstream_rate{upstream="provider"})", kRateLimit),
      IsOkAndHolds(kRateLimit));
  EXPECT_THAT(QueryUntil(**prometheus,
                         R"(switchboard_upstream_queue_wait_seconds_count{upstream="provider"})",
                         kPatientCalls),
              IsOkAndHolds(kPatientCalls));
  // The gRPC server's own view (RED), and the process.
  EXPECT_THAT(
      QueryUntil(**prometheus,
                 R"(switchboard_grpc_requests_total{method="/switchboard.v1.Broker/Publish",)"
                 R"(code="OK"})",
                 1),
      IsOkAndHolds(1));
  EXPECT_THAT(QueryUntil(**prometheus,
                         R"(switchboard_grpc_requests_total{method="/switchboard.v1.Rpc/Call",)"
                         R"(code="OK"})",
                         kPatientCalls),
              IsOkAndHolds(kPatientCalls));
  EXPECT_THAT(QueryUntil(**prometheus,
                         R"(switchboard_grpc_request_duration_seconds_count{)"
                         R"(method="/switchboard.v1.Broker/Publish"})",
                         1),
              IsOkAndHolds(1));
  EXPECT_THAT(QueryUntil(**prometheus, R"(count(process_resident_memory_bytes > 0))", 1),
              IsOkAndHolds(1));
  EXPECT_THAT(QueryUntil(**prometheus, R"(count(switchboard_build_info == 1))", 1),
              IsOkAndHolds(1));
  RecordProperty("refused", refused);
  consume_context.TryCancel();
}

// Issue 15: 50 idle and 50 slowloris connections to the metrics port while
// Prometheus scrapes every second: no scrape fails.
TEST(PrometheusScrapeTest, IdleAndSlowlorisConnectionsFailNoScrape) {
  absl::StatusOr<InProcessServer> server = StartInProcessServer("");
  ASSERT_THAT(server, IsOk());
  absl::StatusOr<std::unique_ptr<PrometheusServer>> prometheus =
      PrometheusServer::Start(kJob, server->metrics_port);
  ASSERT_THAT(prometheus, IsOk());
  const std::string up = absl::Substitute(R"(up{job="$0"})", kJob);
  ASSERT_THAT(QueryUntil(**prometheus, up, 1), IsOkAndHolds(1));

  // Each lives until the endpoint's 5-s deadline cuts it.
  std::vector<int> attackers;
  for (int i = 0; i < 100; ++i) {
    const int fd = ConnectToLoopback(server->metrics_port);
    ASSERT_GE(fd, 0);
    if (i % 2 == 1) {
      ASSERT_EQ(write(fd, "GET /metrics HTTP/1.1\r\nX-A: b", 29), 29);
    }
    attackers.push_back(fd);
  }
  const absl::Time attacked = absl::Now();
  // The scrapes since the attack began: their count, and the lowest `up`.
  auto since_attack = [&](absl::string_view function) {
    const int64_t seconds = absl::ToInt64Seconds(absl::Now() - attacked) + 1;
    return (*prometheus)->Query(absl::Substitute("$0($1[$2s])", function, up, seconds));
  };
  absl::StatusOr<double> scrapes = since_attack("count_over_time");
  for (const absl::Time give_up = absl::Now() + kScrapeWait;
       !(scrapes.ok() && *scrapes >= 4) && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(250));
    scrapes = since_attack("count_over_time");
  }
  ASSERT_THAT(scrapes, IsOk());
  EXPECT_GE(*scrapes, 4);
  EXPECT_THAT(since_attack("min_over_time"), IsOkAndHolds(1));
  RecordProperty("scrapes_during_attack", static_cast<int>(*scrapes));
  for (int fd : attackers) close(fd);
}

}  // namespace
}  // namespace switchboard::testing
