// The client library across a server crash: a real `switchboard` process is
// killed (SIGKILL) and started again on the same port. The Consumer must
// resume on its own; the Publisher must fail what was in flight and work again
// once the server is back.
#include <signal.h>

#include <optional>
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
#include "tests/testing/subprocess.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;

constexpr absl::Duration kTimeout = absl::Seconds(10);

// A `switchboard` process on ports picked once, restartable on the same ports.
class ServerProcess {
 public:
  ServerProcess() : port_(testing::PickUnusedPort()), metrics_port_(testing::PickUnusedPort()) {}

  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }

  void Start() {
    absl::StatusOr<testing::Subprocess> process =
        testing::Subprocess::Start({SWITCHBOARD_BINARY, absl::StrCat("--listen=", target()),
                                    absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_)});
    ASSERT_TRUE(process.ok()) << process.status();
    process_.emplace(*std::move(process));
    ASSERT_TRUE(testing::WaitForPort(port_, kTimeout)) << process_->stderr_text();
  }

  void Kill() {
    process_->Signal(SIGKILL);
    ASSERT_EQ(process_->Wait(kTimeout), 128 + SIGKILL);
    process_.reset();
  }

 private:
  const int port_;
  const int metrics_port_;
  std::optional<testing::Subprocess> process_;
};

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
  ServerProcess server;
  ASSERT_NO_FATAL_FAILURE(server.Start());
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

  ASSERT_NO_FATAL_FAILURE(server.Kill());
  ASSERT_NO_FATAL_FAILURE(server.Start());
  // The memory broker starts empty: only these come after the restart.
  ASSERT_NO_FATAL_FAILURE(Publish(server.target(), {"b0", "b1", "b2"}));
  ASSERT_TRUE(handled.AwaitCount(6));
  EXPECT_THAT(handled.items(), ElementsAre("a0", "a1", "a2", "b0", "b1", "b2"));

  consumer.Stop();
  EXPECT_THAT(consumer.Wait(), IsOk());
}

TEST(ReconnectTest, ThePublisherFailsWhatWasInFlightAndWorksAgainAfterARestart) {
  ServerProcess server;
  ASSERT_NO_FATAL_FAILURE(server.Start());
  const Client client(FastReconnect(server.target()));
  Publisher publisher(client, "jobs");
  auto before = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(before.get(), IsOk());

  ASSERT_NO_FATAL_FAILURE(server.Kill());
  auto during = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(during.get(), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_NO_FATAL_FAILURE(server.Start());
  ASSERT_TRUE(client.channel()->WaitForConnected(absl::ToChronoTime(absl::Now() + kTimeout)));
  auto after = publisher.Publish(v1::OutgoingMessage());
  publisher.Flush();
  EXPECT_THAT(after.get(), IsOk());
}

}  // namespace
}  // namespace switchboard::client
