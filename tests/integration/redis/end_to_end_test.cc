// Issue 3's acceptance, end to end (the harness: end_to_end_harness.h):
// many worker streams over few Redis connections, dead letters, metrics,
// health and the SIGTERM drain. Each test asserts exact counts, and reads
// what Redis stored from Redis itself. How soon things happen (the drain) is
// recorded as a property, which tests/perf/bench_timing.sh holds to its
// bound. The faults (Redis, a consumer or a replica killed) are in
// end_to_end_fault_test.cc; the broker-level versions in
// redis_broker_test.cc.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/redis/end_to_end_harness.h"

namespace switchboard::end_to_end {
namespace {

TEST_F(EndToEndTest, HundredWorkerStreamsShareFourRedisConnections) {
  constexpr int kPublishers = 40;
  constexpr int kSubscribers = 30;
  constexpr int kConsumers = 30;
  constexpr int kFeeds = 5;
  constexpr int kRounds = 3;
  // Each round, every publisher sends one message to "work" and one to its
  // feed. Each group reads every work message; with exactly that many
  // credits in all, each of its consumers ends up holding max_in_flight.
  constexpr uint32_t kMaxInFlight = kPublishers * kRounds / (kConsumers / 2);
  static_assert(kMaxInFlight * (kConsumers / 2) == kPublishers * kRounds);
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(R"(
topics:
  - {name: "feed.*", kind: ephemeral, buffer: 100}
  - {name: work, ack_deadline_ms: 600000}
)"));
  const auto feed = [](int i) { return absl::StrCat("feed.", i % kFeeds); };
  const auto group = [](int i) { return i % 2 == 0 ? "even" : "odd"; };

  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;  // One per stream.
  const auto new_context = [&contexts]() -> grpc::ClientContext& {
    return *contexts.emplace_back(std::make_unique<grpc::ClientContext>());
  };
  std::vector<std::unique_ptr<SubscribeStream>> subscribers;
  for (int i = 0; i < kSubscribers; ++i) {
    subscribers.push_back(OpenSubscribe(*stub_, new_context(), feed(i)));
  }
  std::vector<std::unique_ptr<ConsumeStream>> consumers;
  for (int i = 0; i < kConsumers; ++i) {
    consumers.push_back(OpenConsume(*stub_, new_context(), "work", group(i), kMaxInFlight));
  }
  std::vector<std::unique_ptr<PublishStream>> publishers;
  for (int i = 0; i < kPublishers; ++i) {
    grpc::ClientContext& context = new_context();
    context.set_deadline(testing::Deadline());
    publishers.push_back(stub_->PublishStream(&context));
  }

  std::set<std::string> work_payloads;
  std::map<std::string, std::set<std::string>> feed_payloads;
  for (int round = 0; round < kRounds; ++round) {
    for (int p = 0; p < kPublishers; ++p) {
      for (const bool to_work : {true, false}) {
        v1::PublishStreamRequest request;
        request.set_request_id(static_cast<uint64_t>(2 * round + (to_work ? 0 : 1)));
        request.set_topic(to_work ? "work" : feed(p));
        const std::string payload = absl::StrCat(to_work ? "w" : "f", p, "-", round);
        request.add_messages()->set_payload(payload);
        (to_work ? work_payloads : feed_payloads[feed(p)]).insert(payload);
        ASSERT_TRUE(publishers[p]->Write(request)) << "publisher " << p;
      }
    }
  }
  for (int p = 0; p < kPublishers; ++p) {
    std::set<uint64_t> answered;
    for (int answer = 0; answer < 2 * kRounds; ++answer) {
      v1::PublishStreamResponse response;
      ASSERT_TRUE(publishers[p]->Read(&response)) << "publisher " << p;
      EXPECT_FALSE(response.has_error()) << response.error().message();
      EXPECT_EQ(response.message_ids_size(), 1);
      answered.insert(response.request_id());
    }
    EXPECT_EQ(answered.size(), 2u * kRounds) << "publisher " << p;
  }
  for (int i = 0; i < kSubscribers; ++i) {
    const std::set<std::string>& published = feed_payloads[feed(i)];
    std::set<std::string> heard;
    for (size_t m = 0; m < published.size(); ++m) {
      v1::SubscribeResponse response;
      ASSERT_TRUE(subscribers[i]->Read(&response)) << "subscriber " << i;
      EXPECT_EQ(response.message().topic(), feed(i));
      heard.insert(response.message().payload());
    }
    EXPECT_EQ(heard, published) << "subscriber " << i;
  }
  std::map<std::string, std::multiset<std::string>> held_by_group;
  for (int i = 0; i < kConsumers; ++i) {
    const std::vector<v1::Delivery> deliveries = ReadDeliveries(*consumers[i], kMaxInFlight);
    EXPECT_EQ(deliveries.size(), kMaxInFlight) << "consumer " << i;
    for (const std::string& payload : Payloads(deliveries)) held_by_group[group(i)].insert(payload);
  }
  for (const char* name : {"even", "odd"}) {
    EXPECT_THAT(held_by_group[name], UnorderedElementsAreArray(work_payloads)) << name;
  }

  // Every stream is still open: the server counts them, and Redis sees this.
  for (const auto& [method, open] : std::map<std::string, int>{
           {"PublishStream", kPublishers}, {"Subscribe", kSubscribers}, {"Consume", kConsumers}}) {
    EXPECT_THAT(ScrapeMetric(server_.metrics_port,
                             absl::StrCat(R"(switchboard_grpc_streams_open{client="anonymous",)",
                                          R"(method=")", method, R"("})")),
                IsOkAndHolds(open))
        << method;
  }
  // At most 4 switchboard connections: command, subscriber, a reader per group.
  EXPECT_THAT(
      redis_->ClientNameCounts(),
      IsOkAndHolds(std::map<std::string, int>{
          {"switchboard:command", 1}, {"switchboard:reader", 2}, {"switchboard:subscriber", 1}}));
  for (auto& context : contexts) context->TryCancel();
}

// Seed 003's critical test over gRPC: Redis (appendonly, fsync always) is
// SIGKILLed under publish load and restarted on the same port and data,
// while Switchboard keeps running.

// Issue 15: a publish retried through another replica with the same
// dedup_id (its first attempt's outcome unknown to the worker) is stored once.
TEST_F(EndToEndTest, ARetriedPublishWithTheSameDedupIdIsStoredOnceAcrossReplicas) {
  Replica first;
  Replica second;
  ASSERT_NO_FATAL_FAILURE(StartReplicasOfJobs(absl::Seconds(30), first, second));
  v1::PublishRequest request;
  request.set_topic("jobs");
  for (int i = 0; i < 3; ++i) {
    v1::OutgoingMessage& message = *request.add_messages();
    message.set_payload(absl::StrCat("job-", i));
    message.set_dedup_id(absl::StrCat("worker-7:job-", i));
  }
  std::vector<v1::PublishResponse> answers(2);
  for (int attempt = 0; attempt < 2; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(testing::Deadline());
    Replica& replica = attempt == 0 ? first : second;
    const grpc::Status status = replica.stub->Publish(&context, request, &answers[attempt]);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_EQ(answers[0].message_ids_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(answers[1].message_ids(i), answers[0].message_ids(i));
  }
  EXPECT_THAT(redis_->Command({"XLEN", "jobs"}), IsOkAndHolds("3"));
}

TEST_F(EndToEndTest, PoisonMessageLandsInTheDeadLetterStreamAndIsAcked) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(R"(
topics:
  - {name: fragile, ack_deadline_ms: 600000, max_delivery_attempts: 3}
)"));
  const std::vector<std::string> ids = Publish("fragile", {"poison"});
  ASSERT_EQ(ids.size(), 1u);
  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(*stub_, context, "fragile", "g", 1);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 1);
    ASSERT_EQ(deliveries.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(deliveries[0].message().message_id(), ids[0]);
    EXPECT_EQ(deliveries[0].delivery_attempt(), attempt);
    v1::ConsumeRequest nack;
    nack.add_nack_ids(deliveries[0].ack_id());
    ASSERT_TRUE(stream->Write(nack));
  }

  // The dead-letter topic is durable and consumable, and carries the
  // message's history.
  grpc::ClientContext dead_context;
  std::unique_ptr<ConsumeStream> dead_letters =
      OpenConsume(*stub_, dead_context, "fragile:dlq", "triage", 10);
  const std::vector<v1::Delivery> dead = ReadDeliveries(*dead_letters, 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].message().payload(), "poison");
  const auto& attributes = dead[0].message().attributes();
  EXPECT_EQ((std::map<std::string, std::string>(attributes.begin(), attributes.end())),
            (std::map<std::string, std::string>{{"switchboard.delivery_attempts", "3"},
                                                {"switchboard.original_id", ids[0]},
                                                {"switchboard.original_topic", "fragile"}}));
  // As Redis holds it: one entry in <topic>:dlq, and none pending in the
  // group.
  absl::StatusOr<std::vector<RedisServer::StreamEntry>> entries =
      redis_->StreamEntries("fragile:dlq");
  ASSERT_THAT(entries, IsOk());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].fields,
            (std::map<std::string, std::string>{{"p", "poison"},
                                                {"a:switchboard.delivery_attempts", "3"},
                                                {"a:switchboard.original_id", ids[0]},
                                                {"a:switchboard.original_topic", "fragile"}}));
  EXPECT_THAT(PollRedis(*redis_, {"XPENDING", "fragile", "g"}, kNothingPending),
              IsOkAndHolds(kNothingPending));
  EXPECT_THAT(ScrapeMetric(server_.metrics_port,
                           R"(switchboard_messages_delivered_total{topic="fragile"})"),
              IsOkAndHolds(3));
  EXPECT_THAT(
      PollMetric(server_.metrics_port, R"(switchboard_dead_letters_total{topic="fragile"})", 1),
      IsOkAndHolds(1));
  context.TryCancel();
  dead_context.TryCancel();
}

TEST_F(EndToEndTest, MetricsShowConnectionsReconnectsAndConsumerLag) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(R"(
topics:
  - {name: lagging, ack_deadline_ms: 600000}
)"));
  const int port = server_.metrics_port;
  EXPECT_THAT(PollMetric(port, kCommandConnectionReady, 1), IsOkAndHolds(1));

  // Lag is what the group has not read: a consumer without credits left
  // holds 3 of 10 entries, so 7; acking frees 3 credits, 3 more are read.
  constexpr char kLag[] = R"(switchboard_consumer_lag{group="g",topic="lagging"})";
  Publish("lagging", Numbered("l", 10));
  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(*stub_, context, "lagging", "g", 3);
  const std::vector<v1::Delivery> first = ReadDeliveries(*stream, 3);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_THAT(PollMetric(port, kLag, 7), IsOkAndHolds(7));
  ASSERT_TRUE(Ack(*stream, first));
  ASSERT_EQ(ReadDeliveries(*stream, 3).size(), 3u);
  EXPECT_THAT(PollMetric(port, kLag, 4), IsOkAndHolds(4));
  context.TryCancel();

  HealthWatch health(channel_, kBrokerService);
  ASSERT_TRUE(health.WaitFor(HealthResponse::SERVING));
  redis_->Kill();
  ASSERT_TRUE(health.WaitFor(HealthResponse::NOT_SERVING));
  EXPECT_THAT(PollMetric(port, kCommandConnectionReady, 0), IsOkAndHolds(0));
  ASSERT_THAT(redis_->Restart(), IsOk());
  ASSERT_TRUE(health.WaitFor(HealthResponse::SERVING));
  EXPECT_THAT(PollMetric(port, kCommandConnectionReady, 1), IsOkAndHolds(1));
  EXPECT_THAT(ScrapeMetric(port, R"(switchboard_redis_reconnects_total{role="command"})"),
              IsOkAndHolds(Gt(0)));
}

// DESIGN.md §6: the Broker is NOT_SERVING while Redis is down, but the RPC
// proxy, which needs no broker, still serves.
TEST_F(EndToEndTest, RpcHealthStaysServingWhileTheBrokerIsDown) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(""));
  const auto health_of = [this](const std::string& service) {
    grpc::ClientContext context;
    context.set_deadline(testing::Deadline());
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    HealthResponse response;
    const grpc::Status status =
        grpc::health::v1::Health::NewStub(channel_)->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << service << ": " << status.error_message();
    return response.status();
  };
  HealthWatch broker_health(channel_, kBrokerService);
  ASSERT_TRUE(broker_health.WaitFor(HealthResponse::SERVING));
  EXPECT_EQ(health_of(kRpcService), HealthResponse::SERVING);

  redis_->Kill();
  ASSERT_TRUE(broker_health.WaitFor(HealthResponse::NOT_SERVING));
  EXPECT_EQ(health_of(kRpcService), HealthResponse::SERVING);
  EXPECT_EQ(health_of(kBrokerService), HealthResponse::NOT_SERVING);

  // Back, so the server drains against a live Redis.
  ASSERT_THAT(redis_->Restart(), IsOk());
  ASSERT_TRUE(broker_health.WaitFor(HealthResponse::SERVING));
}

// Issue 5's graceful drain (DESIGN.md §3): SIGTERM to a Switchboard that
// serves consumers with messages in flight while publishers keep going. Its
// health turns NOT_SERVING, its Consume streams end with UNAVAILABLE and
// release their leases, it exits 0 within the drain budget; the workers'
// channel (both replicas behind one target, as behind a Kubernetes Service)
// reconnects to the other Switchboard on the same Redis, and every message
// stored is processed, a second time only as a redelivery, and acked.
TEST_F(EndToEndTest, SigtermDrainsConsumersToTheOtherReplicaAndExitsZeroLosingNothing) {
  constexpr absl::Duration kDrainTimeout = absl::Seconds(5);
  // Long leases: a released lease must move at once, not expire.
  constexpr absl::Duration kAckDeadline = absl::Seconds(30);
  // Before the SIGTERM: enough publishes that consumers are busy.
  constexpr size_t kPublishedBeforeDrain = 300;
  // After the drain, through the survivor.
  constexpr size_t kPublishedAfterDrain = 300;
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  const std::string config = absl::StrCat(
      "server: {drain_timeout_ms: ", absl::ToInt64Milliseconds(kDrainTimeout), "}\n",
      RedisConfigYaml(*redis_, absl::StrCat("topics:\n  - {name: jobs, ack_deadline_ms: ",
                                            absl::ToInt64Milliseconds(kAckDeadline), "}\n")));
  testing::SwitchboardProcess draining(SWITCHBOARD_BINARY, config);
  testing::SwitchboardProcess survivor(SWITCHBOARD_BINARY, config);
  ASSERT_THAT(draining.Start(), IsOk());
  ASSERT_THAT(survivor.Start(), IsOk());
  const std::shared_ptr<grpc::Channel> draining_channel =
      grpc::CreateChannel(draining.target(), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(HealthWatch(draining_channel, kBrokerService).WaitFor(HealthResponse::SERVING))
      << draining.stderr_text();
  // One target with both replicas, the first preferred (gRPC's pick_first):
  // every stream goes to `draining` until it stops listening.
  client::ClientOptions options;
  options.target = absl::StrCat("ipv4:", draining.target(), ",", survivor.target());
  options.max_reconnect_backoff = absl::Milliseconds(200);
  client::Client workers(options);

  // What the consumers processed: attempts per payload.
  absl::Mutex mu;
  std::map<std::string, std::vector<int>> attempts;  // Guarded by mu.
  const auto handler = [&](const v1::Delivery& delivery) {
    absl::SleepFor(absl::Milliseconds(2));  // Work, so messages are in flight.
    absl::MutexLock lock(&mu);
    attempts[delivery.message().payload()].push_back(delivery.delivery_attempt());
    return absl::OkStatus();
  };
  client::ConsumerOptions consumer_options;
  consumer_options.group = "runners";
  consumer_options.max_in_flight = 16;
  consumer_options.concurrency = 4;
  consumer_options.initial_backoff = absl::Milliseconds(20);
  consumer_options.max_backoff = absl::Milliseconds(200);
  std::vector<std::unique_ptr<client::Consumer>> consumers;
  for (int i = 0; i < 2; ++i) {
    consumers.push_back(
        std::make_unique<client::Consumer>(workers, "jobs", consumer_options, handler));
  }
  const std::unique_ptr<v1::Broker::Stub> publisher_stub = v1::Broker::NewStub(workers.channel());
  PublishLoad publishers(*publisher_stub, "jobs", 2);
  ASSERT_TRUE(publishers.WaitFor(/*succeeded=*/true, kPublishedBeforeDrain));
  // The draining replica holds leases now.
  ASSERT_THAT(Poll<double>(
                  [&] {
                    return ScrapeMetric(draining.metrics_port(),
                                        R"(switchboard_messages_delivered_total{topic="jobs"})");
                  },
                  [](const double& delivered) { return delivered >= 50; }, kWaitTimeout),
              IsOk());

  HealthWatch health(draining_channel, kBrokerService);
  ASSERT_TRUE(health.WaitFor(HealthResponse::SERVING));
  const absl::Time sigterm = absl::Now();
  absl::StatusOr<int> exit_code = draining.SignalAndWait(SIGTERM, kDrainTimeout + kWaitTimeout);
  const absl::Duration drain_took = absl::Now() - sigterm;
  RecordProperty("drain_ms", absl::ToInt64Milliseconds(drain_took));
  EXPECT_TRUE(health.WaitFor(HealthResponse::NOT_SERVING));
  EXPECT_THAT(exit_code, IsOkAndHolds(0)) << draining.stderr_text();
  // That it fits the budget, even with the Health.Watch call open, is
  // drain_ms: tests/perf/bench_timing.sh holds it to kDrainTimeout (plus the
  // process' exit and this test's wait).
  EXPECT_THAT(draining.stderr_text(), ::testing::HasSubstr("draining"));

  const size_t before_switch = publishers.succeeded();
  ASSERT_TRUE(publishers.WaitFor(/*succeeded=*/true, before_switch + kPublishedAfterDrain));
  const std::vector<PublishLoad::Call> calls = publishers.Stop();

  // Every publish acknowledged is processed; a publish that failed during the
  // switch may or may not have been stored, and is processed if it was.
  std::set<std::string> acknowledged;
  std::set<std::string> attempted;
  for (const PublishLoad::Call& call : calls) {
    attempted.insert(call.payload);
    if (call.status.ok()) acknowledged.insert(call.payload);
  }
  const auto processed_all = [&] {
    for (const std::string& payload : acknowledged) {
      if (attempts.count(payload) == 0) return false;
    }
    return true;
  };
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&processed_all), kWaitTimeout));
  }
  // Every entry of the stream is acked: nothing is left pending in the group.
  EXPECT_THAT(PollRedis(*redis_, {"XPENDING", "jobs", "runners"}, kNothingPending),
              IsOkAndHolds(kNothingPending));
  for (const std::unique_ptr<client::Consumer>& consumer : consumers) consumer->Stop();
  for (const std::unique_ptr<client::Consumer>& consumer : consumers) {
    EXPECT_THAT(consumer->Wait(), IsOk());
  }

  absl::MutexLock lock(&mu);
  EXPECT_THAT(redis_->Command({"XLEN", "jobs"}), IsOkAndHolds(absl::StrCat(attempts.size())));
  int redelivered = 0;
  for (const auto& [payload, seen] : attempts) {
    EXPECT_EQ(attempted.count(payload), 1u) << payload;
    // A message is processed again only as a redelivery, with a higher
    // attempt (a delivery dropped unprocessed by a stream that ended, or
    // released again by the draining replica's next stream, skips one).
    EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end(), std::greater_equal<int>()) ==
                seen.end())
        << payload << ": attempts " << ::testing::PrintToString(seen);
    if (seen.size() > 1) ++redelivered;
  }
  RecordProperty("published", static_cast<int>(acknowledged.size()));
  RecordProperty("redelivered", redelivered);
  EXPECT_GE(acknowledged.size(), kPublishedBeforeDrain + kPublishedAfterDrain);
  // The survivor acked what the drained replica left.
  EXPECT_THAT(ScrapeMetric(survivor.metrics_port(), R"(switchboard_acks_total{topic="jobs"})"),
              IsOkAndHolds(Gt(0)));
}

}  // namespace
}  // namespace switchboard::end_to_end
