// example_notification_subscriber (seed 003's dedicated subscriber) as a
// real process against a real `switchboard` process on the memory broker:
// it prints every notification published while it is subscribed, subscribes
// again by itself after the server was killed and restarted, exits 0 after
// --count messages, and exits 1 with a clear message on a durable topic.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/examples/example_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kConfigYaml[] = R"(
topics:
  - {name: notifications, kind: ephemeral, buffer: 1000}
)";
constexpr int kNotifications = 50;
constexpr char kLive[] = "subscribed to notifications";

// Publishes `payloads` to `topic` in one call, on a channel of its own (the
// server may have restarted since any other was made).
void Publish(const std::string& target, const std::string& topic,
             const std::vector<std::string>& payloads) {
  client::ClientOptions options;
  options.target = target;
  client::Client client(options);
  std::vector<v1::OutgoingMessage> messages;
  for (const std::string& payload : payloads) messages.emplace_back().set_payload(payload);
  ASSERT_THAT(client.Publish(topic, std::move(messages)), IsOk());
}

TEST(ExampleNotificationSubscriberTest, SubscribesAgainAfterARestartAndPrintsEveryNotification) {
  SwitchboardProcess switchboard(SWITCHBOARD_BINARY, kConfigYaml);
  ASSERT_THAT(switchboard.Start(), IsOk());
  absl::StatusOr<Subprocess> subscriber =
      StartExample(EXAMPLE_NOTIFICATION_SUBSCRIBER_BINARY, switchboard.target(),
                   {absl::StrCat("--count=", kNotifications), "--max_backoff=200ms"});
  ASSERT_THAT(subscriber, IsOk());
  ASSERT_TRUE(WaitForStderr(*subscriber, kLive)) << subscriber->stderr_text();

  // The stream ends with the server; the subscriber retries with backoff
  // while it is down, and is live again soon after it is back.
  ASSERT_THAT(switchboard.Kill(), IsOk());
  ASSERT_TRUE(WaitForStderr(*subscriber, "subscribing again")) << subscriber->stderr_text();
  ASSERT_THAT(switchboard.Start(), IsOk());
  ASSERT_TRUE(WaitForStderr(*subscriber, kLive, 2)) << subscriber->stderr_text();

  std::vector<std::string> notifications;
  for (int i = 0; i < kNotifications; ++i) {
    notifications.push_back(absl::StrCat(R"({"event":"order.shipped","order":)", i, "}"));
  }
  ASSERT_NO_FATAL_FAILURE(Publish(switchboard.target(), "notifications", notifications));
  ASSERT_EQ(subscriber->Wait(kExampleTimeout), std::optional<int>(0)) << subscriber->stderr_text();

  // Stdout: the payloads in order, then the summary.
  std::vector<std::string> lines = absl::StrSplit(subscriber->stdout_text(), '\n');
  ASSERT_THAT(lines, SizeIs(kNotifications + 2));  // And the empty string after the last '\n'.
  EXPECT_THAT(std::vector<std::string>(lines.begin(), lines.begin() + kNotifications),
              ElementsAreArray(notifications));
  const auto summaries = KeyValueLines(subscriber->stdout_text(), "summary:");
  ASSERT_THAT(summaries, SizeIs(1));
  EXPECT_EQ(IntField(summaries[0], "received"), kNotifications);
  EXPECT_EQ(IntField(summaries[0], "lost"), 0);
  EXPECT_EQ(IntField(summaries[0], "subscriptions"), 2);
  EXPECT_EQ(summaries[0].at("stopped_by"), "count");
}

TEST(ExampleNotificationSubscriberTest, ExitsWithTheReasonWhenTheTopicIsDurable) {
  SwitchboardProcess switchboard(SWITCHBOARD_BINARY, kConfigYaml);
  ASSERT_THAT(switchboard.Start(), IsOk());
  const RunResult run =
      testing::Run({EXAMPLE_NOTIFICATION_SUBSCRIBER_BINARY,
                    absl::StrCat("--server=", switchboard.target()), "--topic=jobs"},
                   std::nullopt, kExampleTimeout);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("the server refused the subscription to jobs: "
                                         "FAILED_PRECONDITION"));
}

}  // namespace
}  // namespace switchboard::testing
