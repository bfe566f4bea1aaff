// amqp_server_tests: the real `switchboard` binary on RabbitMQ
// (broker.url amqp://guest:guest@127.0.0.1:<port>/), against the suite's
// node (rabbitmq_suite.h), driven over gRPC like a worker would:
//   * health serves, and a durable topic's consumer group declared in the
//     configuration (topics[].groups) keeps what was published before its
//     first consumer: 100 messages published, then all consumed and acked;
//   * 100 worker streams (Subscribe on ephemeral topics, Consume on durable
//     ones) share exactly two connections, switchboard:publish and
//     switchboard:consume, with the channels amqp_broker.h documents;
//   * the connection metrics (switchboard_amqp_*), and health, while the
//     node goes away and comes back.
// Each test runs its own process with a name_prefix of its own, so that the
// exchanges and queues of the tests sharing the node keep apart.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "tests/integration/amqp/amqp_client.h"
#include "tests/integration/amqp/rabbitmq_suite.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/poll.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard {
namespace {

using ::switchboard::testing::ConsumeStream;
using ::switchboard::testing::HealthWatch;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::Numbered;
using ::switchboard::testing::OpenConsume;
using ::switchboard::testing::OpenSubscribe;
using ::switchboard::testing::Poll;
using ::switchboard::testing::ReadDeliveries;
using ::switchboard::testing::ScrapeMetric;
using ::switchboard::testing::SubscribeStream;
using ::switchboard::testing::SwitchboardProcess;
using ::testing::UnorderedElementsAreArray;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

constexpr char kBrokerService[] = "switchboard.v1.Broker";
// How long a test waits for something that must happen.
constexpr absl::Duration kWaitTimeout = absl::Seconds(20);

// Scrapes `series` from the metrics page on `port` until it equals `value`.
absl::StatusOr<double> PollMetric(int port, absl::string_view series, double value) {
  return testing::PollMetric(port, series, value, kWaitTimeout);
}

class AmqpServerTest : public testing::RabbitMqSuite {
 protected:
  void TearDown() override {
    // The test's channel first: an idle gRPC client reads the server's
    // GOAWAY only when its backup poller runs (every 5 s), and the server's
    // shutdown waits for the connection to close.
    stub_.reset();
    channel_.reset();
    // Gracefully, so that its connections close before the next test counts
    // connections on the same node.
    if (process_ != nullptr) {
      EXPECT_THAT(process_->SignalAndWait(SIGTERM, absl::Seconds(30)), IsOkAndHolds(0))
          << process_->stderr_text();
    }
  }

  // The test's own broker.amqp.name_prefix (at most 64 characters, so not
  // the test's name).
  static std::string NamePrefix() {
    return absl::StrCat("sb-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->line());
  }

  // Starts a switchboard process on the suite's node with `topics_yaml`
  // appended to its configuration, and waits until its Broker service
  // serves.
  void StartSwitchboard(absl::string_view topics_yaml) {
    const std::string config = absl::Substitute(R"(
broker:
  url: "$0"
  amqp:
    reconnect_initial_ms: 20
    reconnect_max_ms: 200
    name_prefix: "$1"
$2)",
                                                server().url(), NamePrefix(), topics_yaml);
    process_ = std::make_unique<SwitchboardProcess>(SWITCHBOARD_BINARY, config);
    ASSERT_THAT(process_->Start(absl::Seconds(30)), IsOk());
    channel_ = grpc::CreateChannel(process_->target(), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(HealthWatch(channel_, kBrokerService).WaitFor(HealthResponse::SERVING))
        << process_->stderr_text();
    stub_ = v1::Broker::NewStub(channel_);
  }

  // `rabbitmqctl list_connections channels client_properties`: the channel
  // count of each connection named "switchboard:<role>", by role.
  absl::StatusOr<std::map<std::string, int>> SwitchboardConnections() const {
    absl::StatusOr<std::string> rows = server().Ctl(
        {"-q", "--no-table-headers", "list_connections", "channels", "client_properties"});
    if (!rows.ok()) return rows.status();
    std::map<std::string, int> channels_by_role;
    for (absl::string_view row : absl::StrSplit(*rows, '\n', absl::SkipEmpty())) {
      for (absl::string_view role : {"publish", "consume"}) {
        if (!absl::StrContains(row,
                               absl::StrCat("{\"connection_name\",\"switchboard:", role, "\"}"))) {
          continue;
        }
        int channels = 0;
        if (!absl::SimpleAtoi(row.substr(0, row.find('\t')), &channels)) {
          return absl::InternalError(absl::StrCat("no channel count in: ", row));
        }
        if (!channels_by_role.emplace(role, channels).second) {
          return absl::InternalError(absl::StrCat("two switchboard:", role, " connections"));
        }
      }
      if (absl::StrContains(row, "\"switchboard:") &&
          !absl::StrContains(row, "\"switchboard:publish\"") &&
          !absl::StrContains(row, "\"switchboard:consume\"")) {
        return absl::InternalError(absl::StrCat("another switchboard connection: ", row));
      }
    }
    return channels_by_role;
  }

  // `rabbitmqctl list_queues name messages`: the messages of `queue`
  // (ready and unacked), or NOT_FOUND.
  absl::StatusOr<int> QueueMessages(const std::string& queue) const {
    absl::StatusOr<std::string> rows =
        server().Ctl({"-q", "--no-table-headers", "list_queues", "name", "messages"});
    if (!rows.ok()) return rows.status();
    for (absl::string_view row : absl::StrSplit(*rows, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> columns = absl::StrSplit(row, '\t');
      int messages = 0;
      if (columns.size() == 2 && columns[0] == queue && absl::SimpleAtoi(columns[1], &messages)) {
        return messages;
      }
    }
    return absl::NotFoundError(absl::StrCat("no queue ", queue, " in:\n", *rows));
  }

  std::unique_ptr<SwitchboardProcess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
};

TEST_F(AmqpServerTest, GroupDeclaredInTheConfigKeepsWhatWasPublishedBeforeItsFirstConsumer) {
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(R"(
topics:
  - {name: jobs, groups: [workers], ack_deadline_ms: 60000}
)"));
  // Declared at startup: the group's quorum queue exists before any
  // Consume, bound to the topic.
  const std::string queue = absl::StrCat(NamePrefix(), "/jobs/workers");
  EXPECT_THAT(Poll<int>([&] { return QueueMessages(queue); }, [](const int&) { return true; },
                        kWaitTimeout),
              IsOkAndHolds(0));

  constexpr int kMessages = 100;
  const std::vector<std::string> payloads = Numbered("job-", kMessages);
  std::set<std::string> ids;
  for (int batch = 0; batch < kMessages / 10; ++batch) {
    const std::vector<std::string> some(payloads.begin() + 10 * batch,
                                        payloads.begin() + 10 * (batch + 1));
    v1::PublishResponse response;
    const grpc::Status status = testing::Publish(*stub_, "jobs", some, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.message_ids_size(), 10);
    ids.insert(response.message_ids().begin(), response.message_ids().end());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kMessages)) << "message ids are unique";
  // Counted at once by a passive queue.declare (rabbitmqctl's counts lag by
  // seconds): with no consumer yet, every message is ready.
  absl::StatusOr<std::unique_ptr<testing::AmqpClient>> client =
      testing::AmqpClient::Connect(server().port(), "amqp-server-test");
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->DeclareQuorumQueue(queue, /*passive=*/true), IsOkAndHolds(kMessages));

  grpc::ClientContext context;
  std::unique_ptr<ConsumeStream> stream = OpenConsume(*stub_, context, "jobs", "workers", 200);
  const std::vector<v1::Delivery> deliveries = ReadDeliveries(*stream, kMessages);
  ASSERT_EQ(deliveries.size(), static_cast<size_t>(kMessages));
  std::vector<std::string> received;
  std::set<std::string> received_ids;
  for (const v1::Delivery& delivery : deliveries) {
    received.push_back(delivery.message().payload());
    received_ids.insert(delivery.message().message_id());
    EXPECT_EQ(delivery.message().topic(), "jobs");
  }
  EXPECT_THAT(received, UnorderedElementsAreArray(payloads));
  EXPECT_EQ(received_ids, ids);
  ASSERT_TRUE(testing::Ack(*stream, deliveries));
  // Acked: RabbitMQ drops them from the group's queue.
  EXPECT_THAT(Poll<int>([&] { return QueueMessages(queue); },
                        [](const int& messages) { return messages == 0; }, kWaitTimeout),
              IsOkAndHolds(0));
  stream->WritesDone();
  context.TryCancel();
}

TEST_F(AmqpServerTest, HundredWorkerStreamsShareTwoConnections) {
  constexpr int kSubscribers = 50;
  constexpr int kConsumers = 50;
  constexpr int kFeeds = 5;
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard(R"(
topics:
  - {name: "feed.*", kind: ephemeral, buffer: 100}
  - {name: work, groups: [even, odd], ack_deadline_ms: 60000}
  - {name: audit, ack_deadline_ms: 60000}
)"));
  const auto feed = [](int i) { return absl::StrCat("feed.", i % kFeeds); };

  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;  // One per stream.
  const auto new_context = [&contexts]() -> grpc::ClientContext& {
    return *contexts.emplace_back(std::make_unique<grpc::ClientContext>());
  };
  std::vector<std::unique_ptr<SubscribeStream>> subscribers;
  for (int i = 0; i < kSubscribers; ++i) {
    subscribers.push_back(OpenSubscribe(*stub_, new_context(), feed(i)));
  }
  // 40 on "work" in two groups, 10 on "audit" in one (made on first
  // Consume): three consumer groups.
  std::vector<std::unique_ptr<ConsumeStream>> consumers;
  for (int i = 0; i < kConsumers; ++i) {
    if (i < 40) {
      consumers.push_back(
          OpenConsume(*stub_, new_context(), "work", i % 2 == 0 ? "even" : "odd", 10));
    } else {
      consumers.push_back(OpenConsume(*stub_, new_context(), "audit", "all", 10));
    }
  }
  constexpr int kGroups = 3;

  // Every AmqpConnection opens its declaration channel (1) and its confirm
  // channel (2), whether it publishes or not (amqp_connection.cc), so
  // switchboard:publish has 2 and switchboard:consume those 2 plus one per
  // consumer: the subscriber queue's and one per consumer group with a
  // stream here. (amqp_broker.h and the README count one fewer on
  // switchboard:consume: they leave out its idle channel 2.)
  constexpr int kPublishChannels = 2;
  constexpr int kConsumeChannels = 2 + 1 + kGroups;
  const std::map<std::string, int> expected = {{"publish", kPublishChannels},
                                               {"consume", kConsumeChannels}};
  absl::StatusOr<std::map<std::string, int>> connections = Poll<std::map<std::string, int>>(
      [&] { return SwitchboardConnections(); },
      [&](const std::map<std::string, int>& seen) { return seen == expected; }, kWaitTimeout);
  ASSERT_THAT(connections.status(), IsOk());
  EXPECT_EQ(connections->size(), 2u);
  EXPECT_EQ(connections->at("publish"), kPublishChannels);
  EXPECT_LE(connections->at("consume"), kConsumeChannels);
  EXPECT_EQ(*connections, expected);
  absl::StatusOr<std::string> channels =
      server().Ctl({"-q", "--no-table-headers", "list_channels", "name"});
  ASSERT_THAT(channels.status(), IsOk());
  const std::vector<absl::string_view> channel_rows =
      absl::StrSplit(*channels, '\n', absl::SkipEmpty());
  EXPECT_LE(channel_rows.size(), static_cast<size_t>(kPublishChannels + kConsumeChannels))
      << *channels;

  // The streams are live: each feed's message reaches its 10 subscribers.
  for (int f = 0; f < kFeeds; ++f) {
    v1::PublishResponse response;
    const grpc::Status status =
        testing::Publish(*stub_, feed(f), {absl::StrCat("news-", f)}, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  for (int i = 0; i < kSubscribers; ++i) {
    v1::SubscribeResponse response;
    ASSERT_TRUE(subscribers[i]->Read(&response)) << "subscriber " << i;
    EXPECT_EQ(response.message().payload(), absl::StrCat("news-", i % kFeeds));
  }

  for (auto& context : contexts) context->TryCancel();
}

TEST_F(AmqpServerTest, MetricsShowBothConnectionsReady) {
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard("topics:\n  - {name: jobs, groups: [workers]}\n"));
  const int port = process_->metrics_port();
  for (absl::string_view role : {"publish", "consume"}) {
    EXPECT_THAT(
        PollMetric(
            port, absl::StrCat("switchboard_amqp_connections{role=\"", role, "\",state=\"ready\"}"),
            1),
        IsOkAndHolds(1))
        << role;
    EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_amqp_connections{role=\"", role,
                                                "\",state=\"connecting\"}")),
                IsOkAndHolds(0))
        << role;
    EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_amqp_connections{role=\"", role,
                                                "\",state=\"down\"}")),
                IsOkAndHolds(0))
        << role;
    EXPECT_THAT(
        ScrapeMetric(port, absl::StrCat("switchboard_amqp_reconnects_total{role=\"", role, "\"}")),
        IsOkAndHolds(0))
        << role;
  }
  v1::PublishResponse response;
  ASSERT_TRUE(testing::Publish(*stub_, "jobs", Numbered("m", 10), &response).ok());
  // Answered once confirmed: none is left unconfirmed.
  EXPECT_THAT(ScrapeMetric(port, "switchboard_amqp_unconfirmed_publishes"), IsOkAndHolds(0));
}

// Last: it restarts the suite's node.
TEST_F(AmqpServerTest, HealthAndMetricsFollowTheNodeGoingAndComingBack) {
  ASSERT_NO_FATAL_FAILURE(StartSwitchboard("topics:\n  - {name: jobs, groups: [workers]}\n"));
  const int port = process_->metrics_port();
  const auto series = [](absl::string_view family, absl::string_view role,
                         absl::string_view state) {
    return state.empty() ? absl::StrCat(family, "{role=\"", role, "\"}")
                         : absl::StrCat(family, "{role=\"", role, "\",state=\"", state, "\"}");
  };
  HealthWatch health(channel_, kBrokerService, absl::Seconds(120));
  ASSERT_TRUE(health.WaitFor(HealthResponse::SERVING));
  ASSERT_THAT(server().SyncMetadata(), IsOk());

  server().Kill();
  EXPECT_TRUE(health.WaitFor(HealthResponse::NOT_SERVING));
  for (absl::string_view role : {"publish", "consume"}) {
    EXPECT_THAT(PollMetric(port, series("switchboard_amqp_connections", role, "down"), 1),
                IsOkAndHolds(1))
        << role;
    EXPECT_THAT(ScrapeMetric(port, series("switchboard_amqp_connections", role, "ready")),
                IsOkAndHolds(0))
        << role;
  }
  v1::PublishResponse response;
  EXPECT_EQ(testing::Publish(*stub_, "jobs", {"lost"}, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  ASSERT_THAT(server().Restart(), IsOk());
  EXPECT_TRUE(health.WaitFor(HealthResponse::SERVING)) << process_->stderr_text();
  for (absl::string_view role : {"publish", "consume"}) {
    EXPECT_THAT(PollMetric(port, series("switchboard_amqp_connections", role, "ready"), 1),
                IsOkAndHolds(1))
        << role;
    EXPECT_THAT(ScrapeMetric(port, series("switchboard_amqp_connections", role, "down")),
                IsOkAndHolds(0))
        << role;
    // Failed attempts while down are not reconnects; the one that made it is.
    EXPECT_THAT(ScrapeMetric(port, series("switchboard_amqp_reconnects_total", role, "")),
                IsOkAndHolds(1))
        << role;
  }
  // The group's quorum queue elects its leader shortly after the node is
  // back: publishes may time out until then.
  absl::StatusOr<int> code = Poll<int>(
      [&]() -> absl::StatusOr<int> {
        return static_cast<int>(testing::Publish(*stub_, "jobs", {"back"}, &response).error_code());
      },
      [](const int& seen) { return seen == grpc::StatusCode::OK; }, kWaitTimeout);
  EXPECT_THAT(code, IsOkAndHolds(grpc::StatusCode::OK));
}

}  // namespace
}  // namespace switchboard
