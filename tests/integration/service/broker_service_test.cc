// The Broker service end to end over real gRPC: an in-process server on a
// loopback port, generated stubs, the embedded memory broker. Each test
// asserts exact counts.
#include <grpcpp/grpcpp.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"

namespace switchboard {
namespace {

using ::switchboard::testing::Ack;
using ::switchboard::testing::ConsumeStream;
using ::switchboard::testing::Deadline;
using ::switchboard::testing::Numbered;
using ::switchboard::testing::ReadDeliveries;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTopicsYaml[] = R"(
topics:
  - name: "news.*"
    kind: ephemeral
    buffer: 100
  - name: jobs
    kind: durable
    ack_deadline_ms: 30000
)";

class BrokerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(kTopicsYaml); }

  void StartServer(absl::string_view yaml) {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer(yaml);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_.target, grpc::InsecureChannelCredentials());
    stub_ = v1::Broker::NewStub(channel_);
  }

  grpc::Status Publish(const std::string& topic, const std::vector<std::string>& payloads,
                       v1::PublishResponse* response, const std::string& token = "") {
    return testing::Publish(*stub_, topic, payloads, response, token);
  }

  std::unique_ptr<ConsumeStream> OpenConsume(grpc::ClientContext& context, const std::string& topic,
                                             const std::string& group, uint32_t max_in_flight) {
    return testing::OpenConsume(*stub_, context, topic, group, max_in_flight);
  }

  testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
};

TEST_F(BrokerServiceTest, PublishedBatchIsConsumedExactlyOnceInOrder) {
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("orders", Numbered("m", 100), &published).ok());
  ASSERT_EQ(published.message_ids_size(), 100);

  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(context, "orders", "g", 10);
  std::vector<std::string> received;
  while (received.size() < 100) {
    std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 1);
    ASSERT_FALSE(deliveries.empty());
    for (const v1::Delivery& delivery : deliveries) {
      EXPECT_EQ(delivery.delivery_attempt(), 1);
      EXPECT_EQ(delivery.message().message_id(), published.message_ids(received.size()));
      received.push_back(delivery.message().payload());
    }
    ASSERT_TRUE(Ack(*stream, deliveries));
  }
  EXPECT_EQ(received, Numbered("m", 100));
  context.TryCancel();
}

TEST_F(BrokerServiceTest, OrderingKeysTravelWithTheMessageAndHoldBackTheKeysNextMessage) {
  v1::PublishRequest request;
  request.set_topic("orders");
  for (const auto& [key, payload] : std::vector<std::pair<std::string, std::string>>{
           {"acct-1", "first"}, {"acct-1", "second"}, {"", "unkeyed"}}) {
    v1::OutgoingMessage& message = *request.add_messages();
    message.set_payload(payload);
    message.set_ordering_key(key);
  }
  v1::PublishResponse published;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Publish(&context, request, &published).ok());
  }
  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(context, "orders", "g", 10);
  std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 2);
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].message().payload(), "first");
  EXPECT_EQ(deliveries[0].message().ordering_key(), "acct-1");
  EXPECT_EQ(deliveries[1].message().payload(), "unkeyed");
  EXPECT_EQ(deliveries[1].message().ordering_key(), "");
  ASSERT_TRUE(Ack(*stream, {deliveries[0]}));
  deliveries = ReadDeliveries(*stream, 1);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].message().payload(), "second");

  // A key over 256 bytes is refused, naming the field.
  request.mutable_messages(1)->set_ordering_key(std::string(257, 'k'));
  grpc::ClientContext refused_context;
  const grpc::Status refused = stub_->Publish(&refused_context, request, &published);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error_message(),
            "messages[1].ordering_key: 257 bytes exceeds the limit of 256");

  // So is a message with more than 100 attributes.
  request.mutable_messages(1)->set_ordering_key("acct-1");
  for (int i = 0; i <= 100; ++i) {
    (*request.mutable_messages(1)->mutable_attributes())[absl::StrCat("a", i)] = "v";
  }
  grpc::ClientContext too_many_context;
  const grpc::Status too_many = stub_->Publish(&too_many_context, request, &published);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(too_many.error_message(),
            "messages[1].attributes: 101 attributes exceed the limit of 100");
  context.TryCancel();
}

TEST_F(BrokerServiceTest, ADedupIdIsCarriedToTheBrokerAndValidated) {
  v1::PublishRequest request;
  request.set_topic("orders");
  v1::OutgoingMessage& message = *request.add_messages();
  message.set_payload("once");
  message.set_dedup_id("order-42:attempt");
  v1::PublishResponse first;
  v1::PublishResponse retried;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Publish(&context, request, &first).ok());
  }
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Publish(&context, request, &retried).ok());
  }
  ASSERT_EQ(first.message_ids_size(), 1);
  EXPECT_EQ(retried.message_ids(0), first.message_ids(0));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {std::string(129, 'd'), "messages[0].dedup_id: 129 bytes exceeds the limit of 128"},
      {"with space",
       "messages[0].dedup_id: character 4 is not printable ASCII (spaces and "
       "control characters are not allowed)"},
      {"tab\t",
       "messages[0].dedup_id: character 3 is not printable ASCII (spaces and control "
       "characters are not allowed)"}};
  for (const auto& [dedup_id, error] : bad) {
    request.mutable_messages(0)->set_dedup_id(dedup_id);
    grpc::ClientContext context;
    const grpc::Status refused = stub_->Publish(&context, request, &retried);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << dedup_id;
    EXPECT_EQ(refused.error_message(), error);
  }
}

TEST_F(BrokerServiceTest, PublishStreamAnswersEveryRequestByItsId) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = stub_->PublishStream(&context);
  for (uint64_t id = 1; id <= 50; ++id) {
    v1::PublishStreamRequest request;
    request.set_request_id(id);
    request.set_topic(id == 25 ? "" : "events");  // One bad request among good ones.
    request.add_messages()->set_payload(absl::StrCat("p", id));
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::set<uint64_t> answered;
  int errors = 0;
  v1::PublishStreamResponse response;
  while (stream->Read(&response)) {
    EXPECT_TRUE(answered.insert(response.request_id()).second);
    if (response.has_error()) {
      ++errors;
      EXPECT_EQ(response.request_id(), 25u);
      EXPECT_EQ(response.error().code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(response.error().message(), StartsWith("topic:"));
    } else {
      EXPECT_EQ(response.message_ids_size(), 1);
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answered.size(), 50u);
  EXPECT_EQ(errors, 1);
}

TEST_F(BrokerServiceTest, PublishStreamStoresPipelinedBatchesInSendOrder) {
  constexpr int kRequests = 200;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = stub_->PublishStream(&context);
  for (int i = 0; i < kRequests; ++i) {
    v1::PublishStreamRequest request;
    request.set_request_id(static_cast<uint64_t>(i));
    request.set_topic("ordered");
    request.add_messages()->set_payload(absl::StrCat("a", i));
    request.add_messages()->set_payload(absl::StrCat("b", i));
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  v1::PublishStreamResponse response;
  int answered = 0;
  while (stream->Read(&response)) ++answered;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(answered, kRequests);

  std::vector<std::string> expected;
  for (int i = 0; i < kRequests; ++i) {
    expected.push_back(absl::StrCat("a", i));
    expected.push_back(absl::StrCat("b", i));
  }
  grpc::ClientContext consume_context;
  auto consume = OpenConsume(consume_context, "ordered", "g", 2 * kRequests);
  std::vector<std::string> stored;
  for (const v1::Delivery& delivery : ReadDeliveries(*consume, 2 * kRequests)) {
    stored.push_back(delivery.message().payload());
  }
  EXPECT_EQ(stored, expected);
  consume_context.TryCancel();
}

TEST_F(BrokerServiceTest, EverySubscriberOfAnEphemeralTopicGetsEveryMessage) {
  constexpr int kSubscribers = 3;
  constexpr int kMessages = 40;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<testing::SubscribeStream>> readers;
  for (int i = 0; i < kSubscribers; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(
        testing::OpenSubscribe(*stub_, *contexts.back(), i == 0 ? "news.*" : "news.sports"));
  }
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("news.sports", Numbered("n", kMessages), &published).ok());
  for (auto& reader : readers) {
    v1::SubscribeResponse response;
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE(reader->Read(&response));
      EXPECT_EQ(response.message().payload(), absl::StrCat("n", i));
      EXPECT_EQ(response.message().topic(), "news.sports");
      EXPECT_EQ(response.dropped_since_last(), 0u);
    }
  }
  for (auto& context : contexts) context->TryCancel();
}

TEST_F(BrokerServiceTest, KindMismatchFailsWithFailedPreconditionNamingTheKind) {
  grpc::ClientContext subscribe_context;
  subscribe_context.set_deadline(Deadline());
  v1::SubscribeRequest subscribe;
  subscribe.set_topic("jobs");
  auto reader = stub_->Subscribe(&subscribe_context, subscribe);
  v1::SubscribeResponse ignored;
  EXPECT_FALSE(reader->Read(&ignored));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("durable"));

  grpc::ClientContext consume_context;
  auto stream = OpenConsume(consume_context, "news.weather", "g", 1);
  v1::ConsumeResponse response;
  EXPECT_FALSE(stream->Read(&response));
  status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("ephemeral"));
}

TEST_F(BrokerServiceTest, BadPublishInputNamesTheField) {
  v1::PublishResponse response;
  grpc::Status status = Publish("", {"x"}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("topic:"));

  status = Publish("bad topic!", {"x"}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("topic:"));

  status = Publish("orders", {"ok", std::string((1 << 20) + 1, 'x')}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("messages[1].payload:"));

  status = Publish("orders", {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("messages:"));

  // A message too large by its attributes names them, not the payload; the
  // payload alone fits the 1 MiB limit in both.
  for (const size_t payload_bytes : {size_t{10}, size_t{1} << 20}) {
    SCOPED_TRACE(payload_bytes);
    v1::PublishRequest request;
    request.set_topic("orders");
    request.add_messages()->set_payload("fine");
    v1::OutgoingMessage& large = *request.add_messages();
    large.set_payload(std::string(payload_bytes, 'p'));
    (*large.mutable_attributes())["trace"] = std::string((1 << 20) - payload_bytes + 1, 'a');
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    status = stub_->Publish(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), StartsWith("messages[1].attributes: "));
  }

  // Nothing of the refused batches was published.
  grpc::ClientContext context;
  auto stream = OpenConsume(context, "orders", "g", 10);
  ASSERT_TRUE(Publish("orders", {"only"}, &response).ok());
  std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 1);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].message().payload(), "only");
  context.TryCancel();
}

// A worker knows its Consume stream is live (validated, joined to its group)
// before the first delivery, as a Subscribe stream is once subscribed.
TEST_F(BrokerServiceTest, ConsumeStreamSendsInitialMetadataOnceJoined) {
  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(context, "quiet", "g", 10);
  // Nothing is published yet: were the metadata held back until the first
  // response, this would wait until the call's deadline ends the stream.
  stream->WaitForInitialMetadata();

  v1::PublishResponse published;
  ASSERT_TRUE(Publish("quiet", {"first"}, &published).ok());
  std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 1);
  ASSERT_EQ(deliveries.size(), 1u) << "the stream ended before any delivery";
  EXPECT_EQ(deliveries[0].message().payload(), "first");
  context.TryCancel();
}

TEST_F(BrokerServiceTest, BadConsumeSubscriptionNamesTheField) {
  grpc::ClientContext context;
  auto stream = OpenConsume(context, "orders", "", 10);
  v1::ConsumeResponse response;
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("subscription.group:"));

  grpc::ClientContext context2;
  auto stream2 = OpenConsume(context2, "orders", "g", 0);
  EXPECT_FALSE(stream2->Read(&response));
  status = stream2->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("subscription.max_in_flight:"));
}

TEST_F(BrokerServiceTest, BadAcksAreReportedPerItemAndTheStreamGoesOn) {
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("jobs", Numbered("j", 4), &published).ok());
  grpc::ClientContext context_a;
  grpc::ClientContext context_b;
  auto stream_a = OpenConsume(context_a, "jobs", "g", 2);
  std::vector<v1::Delivery> held_by_a = ReadDeliveries(*stream_a, 2);
  ASSERT_EQ(held_by_a.size(), 2u);
  auto stream_b = OpenConsume(context_b, "jobs", "g", 2);
  std::vector<v1::Delivery> held_by_b = ReadDeliveries(*stream_b, 2);
  ASSERT_EQ(held_by_b.size(), 2u);

  // One request mixing a valid ack with three bad ones, then the same valid
  // ack again (its lease has ended).
  v1::ConsumeRequest request;
  request.add_ack_ids(held_by_b[0].ack_id());
  request.add_ack_ids("no-such-lease");
  request.add_ack_ids(held_by_a[0].ack_id());
  request.add_ack_ids("");
  ASSERT_TRUE(stream_b->Write(request));
  v1::ConsumeRequest repeat;
  repeat.add_ack_ids(held_by_b[0].ack_id());
  ASSERT_TRUE(stream_b->Write(repeat));

  std::map<std::string, int> codes;  // "ack_ids[i]" of each request -> code.
  int failures = 0;
  v1::ConsumeResponse response;
  while (failures < 4 && stream_b->Read(&response)) {
    EXPECT_EQ(response.deliveries_size(), 0);  // Nothing left to deliver.
    for (const v1::AckFailure& failure : response.ack_failures()) {
      ++failures;
      const std::string field = failure.status().message().substr(0, 10);
      codes[failures == 4 ? "repeat " + field : field] = failure.status().code();
    }
  }
  EXPECT_EQ(failures, 4);
  EXPECT_EQ(codes, (std::map<std::string, int>{
                       {"ack_ids[1]", grpc::StatusCode::INVALID_ARGUMENT},
                       {"ack_ids[2]", grpc::StatusCode::PERMISSION_DENIED},
                       {"ack_ids[3]", grpc::StatusCode::INVALID_ARGUMENT},
                       {"repeat ack_ids[0]", grpc::StatusCode::NOT_FOUND},
                   }));

  // The valid ack freed one credit on B, and A's leases were untouched: the
  // next message goes to B (A has no credit), and A can still ack its own.
  ASSERT_TRUE(Publish("jobs", {"after"}, &published).ok());
  std::vector<v1::Delivery> next = ReadDeliveries(*stream_b, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].message().payload(), "after");
  ASSERT_TRUE(Ack(*stream_a, held_by_a));
  ASSERT_TRUE(Publish("jobs", {"for-a"}, &published).ok());
  next = ReadDeliveries(*stream_a, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].message().payload(), "for-a");
  context_a.TryCancel();
  context_b.TryCancel();
}

TEST_F(BrokerServiceTest, DelayedNacksAreCheckedPerItemAndAValidOneRedeliversLater) {
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("jobs", Numbered("d", 2), &published).ok());
  grpc::ClientContext context;
  auto stream = OpenConsume(context, "jobs", "g", 2);
  std::vector<v1::Delivery> held = ReadDeliveries(*stream, 2);
  ASSERT_EQ(held.size(), 2u);

  v1::ConsumeRequest request;
  v1::Nack* too_long = request.add_nacks();
  too_long->set_ack_id(held[0].ack_id());
  too_long->set_delay_ms(3600001);
  request.add_nacks()->set_delay_ms(10);  // No ack id.
  v1::Nack* valid = request.add_nacks();
  valid->set_ack_id(held[1].ack_id());
  valid->set_delay_ms(200);
  const absl::Time nacked_at = absl::Now();
  ASSERT_TRUE(stream->Write(request));

  std::map<std::string, std::string> failures;  // Field -> message.
  v1::ConsumeResponse response;
  while (failures.size() < 2 && stream->Read(&response)) {
    EXPECT_EQ(response.deliveries_size(), 0);
    for (const v1::AckFailure& failure : response.ack_failures()) {
      EXPECT_EQ(failure.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
      const std::string& message = failure.status().message();
      failures[message.substr(0, message.find(':'))] = message;
    }
  }
  EXPECT_EQ(failures,
            (std::map<std::string, std::string>{
                {"nacks[0].delay_ms", "nacks[0].delay_ms: must be 0 to 3600000, got 3600001"},
                {"nacks[1].ack_id", "nacks[1].ack_id: must not be empty"},
            }));

  // The valid nack: back after its delay, as the second attempt; the first
  // message's lease is untouched by the refused nack and can still be acked.
  std::vector<v1::Delivery> again = ReadDeliveries(*stream, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GE(absl::Now() - nacked_at, absl::Milliseconds(200));
  EXPECT_EQ(again[0].message().message_id(), held[1].message().message_id());
  EXPECT_EQ(again[0].delivery_attempt(), 2);
  ASSERT_TRUE(Ack(*stream, {held[0], again[0]}));
  context.TryCancel();
}

TEST_F(BrokerServiceTest, KilledConsumersLeasesGoToTheOtherConsumerWithAttemptTwo) {
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("jobs", Numbered("k", 5), &published).ok());
  grpc::ClientContext killed_context;
  auto killed = OpenConsume(killed_context, "jobs", "workers", 5);
  std::vector<v1::Delivery> in_flight = ReadDeliveries(*killed, 5);
  ASSERT_EQ(in_flight.size(), 5u);

  grpc::ClientContext survivor_context;
  auto survivor = OpenConsume(survivor_context, "jobs", "workers", 10);
  killed_context.TryCancel();  // The worker dies with five messages in flight.

  std::vector<v1::Delivery> redelivered = ReadDeliveries(*survivor, 5);
  ASSERT_EQ(redelivered.size(), 5u);
  std::set<std::string> payloads;
  for (const v1::Delivery& delivery : redelivered) {
    EXPECT_EQ(delivery.delivery_attempt(), 2);
    payloads.insert(delivery.message().payload());
  }
  EXPECT_EQ(payloads, (std::set<std::string>{"k0", "k1", "k2", "k3", "k4"}));
  survivor_context.TryCancel();
}

TEST_F(BrokerServiceTest, HealthReportsServingPerService) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  // The broker reports its health on its own thread, soon after the start:
  // watch until it does.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("switchboard.v1.Broker");
    auto watch = health->Watch(&context, request);
    grpc::health::v1::HealthCheckResponse response;
    while (watch->Read(&response) &&
           response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    }
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    context.TryCancel();
    watch->Finish();
  }
  for (const char* service : {"", "switchboard.v1.Broker", "switchboard.v1.Rpc"}) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(BrokerServiceTest, MetricsEndpointCountsPublishedAndDelivered) {
  v1::PublishResponse published;
  ASSERT_TRUE(Publish("metered", Numbered("x", 3), &published).ok());
  grpc::ClientContext context;
  auto stream = OpenConsume(context, "metered", "g", 10);
  ASSERT_EQ(ReadDeliveries(*stream, 3).size(), 3u);
  absl::StatusOr<std::string> body = testing::HttpGet(server_.metrics_port, "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("switchboard_messages_published_total{topic=\"metered\"} 3"));
  EXPECT_THAT(*body, HasSubstr("switchboard_messages_delivered_total{topic=\"metered\"} 3"));
  EXPECT_THAT(
      *body, HasSubstr("switchboard_grpc_streams_open{client=\"anonymous\",method=\"Consume\"} 1"));
  context.TryCancel();
}

TEST_F(BrokerServiceTest, ShutdownEndsSubscribersWithUnavailable) {
  grpc::ClientContext context;
  auto reader = testing::OpenSubscribe(*stub_, context, "news.*");
  std::thread shutdown([this] { server_.server->Shutdown(); });
  v1::SubscribeResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  shutdown.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

class AuthenticatedBrokerServiceTest : public BrokerServiceTest {
 protected:
  void SetUp() override {
    StartServer(R"(
clients:
  - {id: billing, token: "s3cret-billing", allowed_topics: ["invoices"]}
  - {id: ops, token: "s3cret-ops"}
)");
  }
};

TEST_F(AuthenticatedBrokerServiceTest, TokensMapToClientsAndWrongOnesAreRefused) {
  v1::PublishResponse response;
  EXPECT_EQ(Publish("invoices", {"x"}, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Publish("invoices", {"x"}, &response, "not-a-token");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.error_message(), ::testing::Not(HasSubstr("not-a-token")));
  EXPECT_TRUE(Publish("invoices", {"x"}, &response, "s3cret-billing").ok());
  grpc::Status denied = Publish("payroll", {"x"}, &response, "s3cret-billing");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), StartsWith("topic:"));
  EXPECT_TRUE(Publish("payroll", {"x"}, &response, "s3cret-ops").ok());
}

TEST_F(AuthenticatedBrokerServiceTest, TwoAuthorizationHeadersAreRefusedAsUnauthenticated) {
  v1::PublishRequest request;
  request.set_topic("invoices");
  request.add_messages()->set_payload("x");
  v1::PublishResponse response;
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer s3cret-billing");
  context.AddMetadata("authorization", "Bearer s3cret-ops");
  const grpc::Status status = stub_->Publish(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "more than one authorization header: send exactly one");
}

TEST_F(AuthenticatedBrokerServiceTest, AnOversizedTokenFailsItsOwnCallNotTheConnection) {
  // A stream of another caller on the same connection.
  grpc::ClientContext stream_context;
  stream_context.AddMetadata("authorization", "Bearer s3cret-ops");
  std::unique_ptr<ConsumeStream> stream = OpenConsume(stream_context, "jobs", "g", 10);
  v1::PublishResponse response;
  ASSERT_TRUE(Publish("jobs", {"before"}, &response, "s3cret-ops").ok());
  ASSERT_EQ(ReadDeliveries(*stream, 1).size(), 1u);

  // 20 KiB: past gRPC's default 8 KiB metadata limit (which ends the whole
  // connection), within Switchboard's 64 KiB.
  const grpc::Status status = Publish("jobs", {"x"}, &response, std::string(20 << 10, 't'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "unknown bearer token");
  ASSERT_TRUE(Publish("jobs", {"after"}, &response, "s3cret-ops").ok());
  std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, 1);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].message().payload(), "after");
  stream_context.TryCancel();
}

}  // namespace
}  // namespace switchboard
