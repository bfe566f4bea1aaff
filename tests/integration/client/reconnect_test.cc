// The client library across a server crash: a real `switchboard` process is
// killed (SIGKILL) and started again on the same port. The Consumer must
// resume on its own; the Publisher must fail what was in flight and work again
// once the server is back.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/client/publisher.h"
#include "tests/integration/client/collector.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;

constexpr absl::Duration kTimeout = absl::Seconds(10);

ClientOptions FastReconnect(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.max_reconnect_backoff = absl::Milliseconds(500);
  return options;
}

// Publishes on a Client of its own: a fresh channel, connected on first use.
void Publish(const std::string& target, const std::vector<std::string>& payloads) {
  std::vector<v1::OutgoingMessage> messages;
  for (const std::string& payload : payloads) messages.emplace_back().set_payload(payload);
  ASSERT_THAT(Client(FastReconnect(target)).Publish("jobs", std::move(messages)), IsOk());
}

TEST(ReconnectTest, TheConsumerResumesAfterTheServerRestarts) {
  testing::SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(kTimeout), IsOk());
  const Client client(FastReconnect(server.target()));
  Collector handled;
  ConsumerOptions options;
  options.group = "g";
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(500);
  Consumer consumer(client, "jobs", options, [&handled](const v1::Delivery& delivery) {
    handled.Add(delivery.message().payload());
    return absl::OkStatus();
  });
  ASSERT_NO_FATAL_FAILURE(Publish(server.target(), {"a0", "a1", "a2"}));
  ASSERT_TRUE(handled.AwaitCount(3));

  ASSERT_THAT(server.Kill(kTimeout), IsOk());
  ASSERT_THAT(server.Start(kTimeout), IsOk());
  // The memory broker starts empty: only these come after the restart.
  ASSERT_NO_FATAL_FAILURE(Publish(server.target(), {"b0", "b1", "b2"}));
  ASSERT_TRUE(handled.AwaitCount(6));
  EXPECT_THAT(handled.items(), ElementsAre("a0", "a1", "a2", "b0", "b1", "b2"));

  consumer.Stop();
  EXPECT_THAT(consumer.Wait(), IsOk());
}

TEST(ReconnectTest, ThePublisherFailsWhatWasInFlightAndWorksAgainAfterARestart) {
  testing::SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(kTimeout), IsOk());
  const Client client(FastReconnect(server.target()));
  Publisher publisher(client, "jobs");
  auto before = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(before.get(), IsOk());

  ASSERT_THAT(server.Kill(kTimeout), IsOk());
  auto during = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(during.get(), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_THAT(server.Start(kTimeout), IsOk());
  ASSERT_TRUE(client.channel()->WaitForConnected(absl::ToChronoTime(absl::Now() + kTimeout)));
  auto after = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(after.get(), IsOk());
}

}  // namespace
}  // namespace switchboard::client
