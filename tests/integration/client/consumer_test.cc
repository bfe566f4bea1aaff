// Consumer against an in-process server with the memory broker: every
// message handled and acked once, nacks redelivered, bounded concurrency,
// stopping (also from the handler), and permanent errors.
#include "switchboard/client/consumer.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/client/collector.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr char kTopicsYaml[] = R"(
topics:
  - name: "news.*"
    kind: ephemeral
)";

std::vector<std::string> Numbered(const std::string& prefix, int count) {
  std::vector<std::string> payloads;
  for (int i = 0; i < count; ++i) payloads.push_back(absl::StrCat(prefix, i));
  return payloads;
}

ClientOptions At(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

ConsumerOptions Group(std::string group, uint32_t max_in_flight = 100, int concurrency = 1) {
  ConsumerOptions options;
  options.group = std::move(group);
  options.max_in_flight = max_in_flight;
  options.concurrency = concurrency;
  return options;
}

class ConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer(kTopicsYaml);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<Client>(At(server_.target));
  }

  void Publish(const std::string& topic, const std::vector<std::string>& payloads) {
    std::vector<v1::OutgoingMessage> messages;
    for (const std::string& payload : payloads) messages.emplace_back().set_payload(payload);
    ASSERT_THAT(client_->Publish(topic, std::move(messages)), IsOk());
  }

  testing::InProcessServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ConsumerTest, HandlesEveryMessageOnceAndAcksIt) {
  Publish("jobs", Numbered("j", 100));
  Collector handled;
  {
    Consumer consumer(*client_, "jobs", Group("g", 10, 4),
                      [&handled](const v1::Delivery& delivery) {
                        EXPECT_EQ(delivery.delivery_attempt(), 1);
                        handled.Add(delivery.message().payload());
                        return absl::OkStatus();
                      });
    ASSERT_TRUE(handled.AwaitCount(100));
    consumer.Stop();
    EXPECT_THAT(consumer.Wait(), IsOk());
  }
  EXPECT_THAT(handled.items(), UnorderedElementsAreArray(Numbered("j", 100)));

  // Had any ack been lost, its message would come back to the group now.
  Publish("jobs", {"marker"});
  Collector after;
  Consumer next(*client_, "jobs", Group("g"), [&after](const v1::Delivery& delivery) {
    after.Add(delivery.message().payload());
    return absl::OkStatus();
  });
  ASSERT_TRUE(after.AwaitCount(1));
  EXPECT_THAT(after.items(), ElementsAre("marker"));
}

TEST_F(ConsumerTest, AFailedHandlerNacksAndTheMessageComesBack) {
  Publish("jobs", Numbered("n", 5));
  Collector attempts;
  Consumer consumer(*client_, "jobs", Group("g"), [&attempts](const v1::Delivery& delivery) {
    attempts.Add(absl::StrCat(delivery.message().payload(), "#", delivery.delivery_attempt()));
    return delivery.delivery_attempt() == 1 ? absl::InternalError("first try fails")
                                            : absl::OkStatus();
  });
  ASSERT_TRUE(attempts.AwaitCount(10));
  std::vector<std::string> expected;
  for (const std::string& payload : Numbered("n", 5)) {
    expected.push_back(payload + "#1");
    expected.push_back(payload + "#2");
  }
  EXPECT_THAT(attempts.items(), UnorderedElementsAreArray(expected));
}

TEST_F(ConsumerTest, NoMoreThanConcurrencyHandlersRunAtOnce) {
  Publish("jobs", Numbered("c", 10));
  absl::Mutex mu;
  int running = 0;
  int peak = 0;
  bool released = false;
  Collector done;
  Consumer consumer(*client_, "jobs", Group("g", 10, 3), [&](const v1::Delivery& delivery) {
    absl::MutexLock lock(&mu);
    peak = std::max(peak, ++running);
    mu.Await(absl::Condition(&released));
    --running;
    done.Add(delivery.message().payload());
    return absl::OkStatus();
  });
  {
    absl::MutexLock lock(&mu);
    const auto three_running = [&] { return running == 3; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&three_running), absl::Seconds(10)));
    released = true;
  }
  ASSERT_TRUE(done.AwaitCount(10));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(peak, 3);
}

TEST_F(ConsumerTest, TheHandlerCanStopItsConsumerAndTheRestGoesToTheGroup) {
  Publish("jobs", Numbered("s", 5));
  Collector first;
  {
    Consumer consumer(*client_, "jobs", Group("g", 1), [&](const v1::Delivery& delivery) {
      first.Add(delivery.message().payload());
      if (first.items().size() == 3) consumer.Stop();
      return absl::OkStatus();
    });
    EXPECT_THAT(consumer.Wait(), IsOk());
  }
  EXPECT_THAT(first.items(), ElementsAre("s0", "s1", "s2"));

  Collector rest;
  Consumer consumer(*client_, "jobs", Group("g"), [&rest](const v1::Delivery& delivery) {
    rest.Add(delivery.message().payload());
    return absl::OkStatus();
  });
  ASSERT_TRUE(rest.AwaitCount(2));
  EXPECT_THAT(rest.items(), ::testing::UnorderedElementsAre("s3", "s4"));
}

TEST_F(ConsumerTest, AnEphemeralTopicStopsTheConsumerWithFailedPrecondition) {
  Consumer consumer(*client_, "news.eu", Group("g"), [](const v1::Delivery&) {
    ADD_FAILURE() << "no delivery expected";
    return absl::OkStatus();
  });
  EXPECT_THAT(consumer.Wait(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ephemeral")));
}

TEST_F(ConsumerTest, AnInvalidGroupStopsTheConsumerWithInvalidArgument) {
  Consumer consumer(*client_, "jobs", Group(""), [](const v1::Delivery&) {
    ADD_FAILURE() << "no delivery expected";
    return absl::OkStatus();
  });
  EXPECT_THAT(consumer.Wait(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group")));
}

}  // namespace
}  // namespace switchboard::client
