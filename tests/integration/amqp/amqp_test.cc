// The RabbitMQ test harness (RabbitMqServer) and rabbitmq-c against a real
// node, over real AMQP: the ground the RabbitMQ backend stands on. Durable
// topic exchanges, quorum queues and their delivery count, publisher
// confirms, the connection name rabbitmqctl shows, and confirmed messages
// surviving a broker killed and restarted.
//
// One node serves the whole suite (it takes seconds to boot); each test
// declares exchanges and queues named after itself.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/amqp/amqp_client.h"
#include "tests/integration/amqp/rabbitmq_suite.h"
#include "tests/testing/rabbitmq_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;

class AmqpTest : public RabbitMqSuite {
 protected:
  static void TearDownTestSuite() {
    if (has_node()) {
      // The graceful way out (rabbitmqctl stop), which fault tests use less.
      const absl::Time start = absl::Now();
      const absl::Status stopped = server().Stop();
      EXPECT_TRUE(stopped.ok()) << stopped;
      std::fprintf(stderr, "RabbitMqServer::Stop() took %s\n",
                   absl::FormatDuration(absl::Now() - start).c_str());
    }
    RabbitMqSuite::TearDownTestSuite();  // Kills what is left, removes its directory.
  }

  void TearDown() override {
    if (HasFailure() && has_node()) {
      std::fprintf(stderr, "The end of the RabbitMQ node's log:\n%s\n",
                   LogTail(server().log(), 40).c_str());
      for (const std::vector<std::string>& ctl :
           {std::vector<std::string>{"-q", "list_bindings", "source_name", "destination_name",
                                     "routing_key"},
            std::vector<std::string>{"-q", "list_queues", "name", "messages", "leader"}}) {
        absl::StatusOr<std::string> out = server().Ctl(ctl);
        std::fprintf(stderr, "rabbitmqctl %s:\n%s\n", ctl[1].c_str(),
                     out.ok() ? out->c_str() : out.status().ToString().c_str());
      }
    }
  }

  // A name for this test's exchange or queue, unique within the suite's node.
  static std::string Unique(absl::string_view what) {
    return absl::StrCat("sbtest.", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                        ".", what);
  }

  // A connection named after the test, "switchboard:<test name>", unless
  // told otherwise.
  absl::StatusOr<std::unique_ptr<AmqpClient>> Connect(std::string connection_name = "") {
    if (connection_name.empty()) {
      connection_name = absl::StrCat(
          "switchboard:", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    }
    return AmqpClient::Connect(server().port(), connection_name);
  }

  // Declares this test's durable topic exchange and a quorum queue bound to
  // it with `binding_key`, on a channel in confirm mode.
  void DeclareTopology(AmqpClient& client, const std::string& exchange, const std::string& queue,
                       const std::string& binding_key) {
    ASSERT_THAT(client.ConfirmSelect(), IsOk());
    ASSERT_THAT(client.DeclareDurableTopicExchange(exchange), IsOk());
    absl::StatusOr<uint32_t> count = client.DeclareQuorumQueue(queue);
    ASSERT_THAT(count.status(), IsOk());
    ASSERT_EQ(*count, 0u);
    ASSERT_THAT(client.Bind(queue, exchange, binding_key), IsOk());
  }
};

// Bytes of every value, past one frame (frame_max 131072): the body comes
// back in several body frames.
std::string BinaryPayload(size_t size) {
  std::mt19937 random(7);
  std::string payload;
  for (int byte = 0; byte < 256; ++byte) payload.push_back(static_cast<char>(byte));
  while (payload.size() < size) payload.push_back(static_cast<char>(random() & 0xff));
  return payload;
}

TEST_F(AmqpTest, ConfirmedPublishToTopicExchangeComesBackByteExactFromQuorumQueue) {
  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Connect();
  ASSERT_THAT(client.status(), IsOk());
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareTopology(**client, exchange, queue, "orders.*"));

  const std::string payload = BinaryPayload(300 * 1000);
  ASSERT_THAT((*client)->PublishConfirmed(exchange, "orders.created", payload, "message-1"),
              IsOk());
  // Confirmed, yet routed nowhere: the binding does not match.
  ASSERT_THAT((*client)->PublishConfirmed(exchange, "payments.created", "elsewhere", "message-2"),
              IsOk());

  absl::StatusOr<std::optional<Delivery>> got = (*client)->Get(queue);
  ASSERT_THAT(got.status(), IsOk());
  ASSERT_TRUE(got->has_value());
  const Delivery& delivery = **got;
  EXPECT_EQ(delivery.body.size(), payload.size());
  EXPECT_TRUE(delivery.body == payload) << "the body differs";
  EXPECT_EQ(delivery.message_id, "message-1");
  EXPECT_FALSE(delivery.redelivered);
  ASSERT_THAT((*client)->Ack(delivery.delivery_tag), IsOk());

  absl::StatusOr<std::optional<Delivery>> empty = (*client)->Get(queue);
  ASSERT_THAT(empty.status(), IsOk());
  EXPECT_FALSE(empty->has_value());

  // The node agrees on what was declared.
  absl::StatusOr<std::string> queues =
      server().Ctl({"-q", "--no-table-headers", "list_queues", "name", "type", "durable"});
  ASSERT_THAT(queues.status(), IsOk());
  EXPECT_THAT(*queues, HasSubstr(absl::StrCat(queue, "\tquorum\ttrue")));
}

TEST_F(AmqpTest, QuorumQueueCountsDeliveriesAfterRejectWithRequeue) {
  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Connect();
  ASSERT_THAT(client.status(), IsOk());
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareTopology(**client, exchange, queue, "jobs.#"));
  ASSERT_THAT((*client)->PublishConfirmed(exchange, "jobs.a.b", "job", "message-1"), IsOk());

  absl::StatusOr<std::optional<Delivery>> first = (*client)->Get(queue);
  ASSERT_THAT(first.status(), IsOk());
  ASSERT_TRUE(first->has_value());
  EXPECT_FALSE((*first)->redelivered);
  EXPECT_EQ((*first)->delivery_count, 0);  // RabbitMQ 3.10 sends it from the first.
  ASSERT_THAT((*client)->Reject((*first)->delivery_tag, /*requeue=*/true), IsOk());

  absl::StatusOr<std::optional<Delivery>> second = (*client)->Get(queue);
  ASSERT_THAT(second.status(), IsOk());
  ASSERT_TRUE(second->has_value());
  EXPECT_TRUE((*second)->redelivered);
  EXPECT_EQ((*second)->delivery_count, 1);
  EXPECT_EQ((*second)->body, "job");
  EXPECT_EQ((*second)->message_id, "message-1");
  ASSERT_THAT((*client)->Ack((*second)->delivery_tag), IsOk());
}

TEST_F(AmqpTest, RabbitmqctlListsTheConnectionByItsName) {
  const std::string name = "switchboard:test";
  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Connect(name);
  ASSERT_THAT(client.status(), IsOk());

  // One row per connection: its channel count, then its client properties,
  // which hold connection_name (the `name` column does not show it on
  // RabbitMQ 3.10: it says "127.0.0.1:<port> -> 127.0.0.1:<port>").
  absl::StatusOr<std::string> connections = server().Ctl(
      {"-q", "--no-table-headers", "list_connections", "channels", "client_properties"});
  ASSERT_THAT(connections.status(), IsOk());
  std::vector<std::string> ours;
  for (absl::string_view row : absl::StrSplit(*connections, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(row, absl::StrCat("{\"connection_name\",\"", name, "\"}"))) {
      ours.emplace_back(row);
    }
  }
  ASSERT_EQ(ours.size(), 1u) << *connections;
  EXPECT_TRUE(absl::StartsWith(ours[0], "1\t")) << "one channel: " << ours[0];

  absl::StatusOr<std::string> channels =
      server().Ctl({"-q", "--no-table-headers", "list_channels", "number", "confirm"});
  ASSERT_THAT(channels.status(), IsOk());
  EXPECT_THAT(*channels, HasSubstr("1\tfalse"));
}

// Last: it restarts the suite's node (the tests after it would run on the
// restarted one).
TEST_F(AmqpTest, ConfirmedMessagesAndDurableTopologySurviveKillAndRestart) {
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  const std::vector<std::string> bodies = {"first", std::string("\0second\xff", 8),
                                           BinaryPayload(200 * 1000)};
  {
    absl::StatusOr<std::unique_ptr<AmqpClient>> client = Connect();
    ASSERT_THAT(client.status(), IsOk());
    ASSERT_NO_FATAL_FAILURE(DeclareTopology(**client, exchange, queue, "events.created"));
    for (size_t i = 0; i < bodies.size(); ++i) {
      ASSERT_THAT((*client)->PublishConfirmed(exchange, "events.created", bodies[i],
                                              absl::StrCat("message-", i)),
                  IsOk());
    }
    // Or the binding, even the queue, may not survive (see SyncMetadata()).
    ASSERT_THAT(server().SyncMetadata(), IsOk());
    server().Kill();
  }
  ASSERT_THAT(server().Restart(), IsOk());
  std::fprintf(stderr, "RabbitMQ restart after SIGKILL took %s\n",
               absl::FormatDuration(server().startup_time()).c_str());

  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Connect();
  ASSERT_THAT(client.status(), IsOk());
  // The queue elects its leader after the node accepts connections (about
  // 0.5 s later on RabbitMQ 3.10): until then a passive declare counts 0
  // messages. Wait for the count, bounded.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::StatusOr<uint32_t> count;
  while (true) {
    count = (*client)->DeclareQuorumQueue(queue, /*passive=*/true);
    ASSERT_THAT(count.status(), IsOk());
    if (*count >= bodies.size() || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(*count, bodies.size()) << "after 30 s";
  for (size_t i = 0; i < bodies.size(); ++i) {
    absl::StatusOr<std::optional<Delivery>> got = (*client)->Get(queue);
    ASSERT_THAT(got.status(), IsOk());
    ASSERT_TRUE(got->has_value()) << "message " << i << " lost";
    EXPECT_TRUE((*got)->body == bodies[i]) << "message " << i << " differs";
    EXPECT_EQ((*got)->message_id, absl::StrCat("message-", i));
    ASSERT_THAT((*client)->Ack((*got)->delivery_tag), IsOk());
  }
  absl::StatusOr<std::optional<Delivery>> empty = (*client)->Get(queue);
  ASSERT_THAT(empty.status(), IsOk());
  EXPECT_FALSE(empty->has_value());

  // The durable exchange survived with its binding: a new publish routes.
  ASSERT_THAT((*client)->ConfirmSelect(), IsOk());
  ASSERT_THAT((*client)->PublishConfirmed(exchange, "events.created", "after", "message-after"),
              IsOk());
  absl::StatusOr<std::optional<Delivery>> after = (*client)->Get(queue);
  ASSERT_THAT(after.status(), IsOk());
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ((*after)->body, "after");
}

}  // namespace
}  // namespace switchboard::testing
