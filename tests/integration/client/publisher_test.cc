// Publisher and PublishStream against an in-process server with the memory
// broker: batching triggers, flow control, errors, and that what was
// published is what a consumer gets.
#include "switchboard/client/publisher.h"

#include <future>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/client/publish_stream.h"
#include "tests/integration/client/collector.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;
using IdFuture = std::future<absl::StatusOr<std::string>>;

constexpr absl::Duration kNever = absl::Hours(1);

v1::OutgoingMessage Message(std::string payload) {
  v1::OutgoingMessage message;
  message.set_payload(std::move(payload));
  return message;
}

ClientOptions At(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

const std::size_t kDefaultMessages = PublisherOptions().max_batch_messages;
const std::size_t kDefaultBytes = PublisherOptions().max_batch_bytes;

PublisherOptions Batching(std::size_t messages, std::size_t bytes, absl::Duration delay) {
  PublisherOptions options;
  options.max_batch_messages = messages;
  options.max_batch_bytes = bytes;
  options.max_batch_delay = delay;
  return options;
}

// Batches wait for Flush(); at most `messages` may be outstanding.
PublisherOptions OutstandingAtMost(std::size_t messages) {
  PublisherOptions options = Batching(kDefaultMessages, kDefaultBytes, kNever);
  options.max_outstanding_messages = messages;
  return options;
}

ConsumerOptions ReadBack() {
  ConsumerOptions options;
  options.group = "readback";
  return options;
}

bool IsReady(const IdFuture& future) {
  return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

bool ResolvesInTime(const IdFuture& future) {
  return future.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
}

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<Client>(At(server_.target));
  }

  // Consumes `count` payloads of `topic` as group `group`.
  std::vector<std::string> ConsumePayloads(const std::string& topic, std::size_t count) {
    Collector payloads;
    Consumer consumer(*client_, topic, ReadBack(), [&payloads](const v1::Delivery& delivery) {
      payloads.Add(delivery.message().payload());
      return absl::OkStatus();
    });
    EXPECT_TRUE(payloads.AwaitCount(count));
    return payloads.items();
  }

  testing::InProcessServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(PublisherTest, PublishesEveryMessageOnceWithDistinctIds) {
  std::vector<IdFuture> futures;
  std::vector<std::string> payloads;
  {
    Publisher publisher(*client_, "orders", Batching(7, kDefaultBytes, absl::Milliseconds(5)));
    for (int i = 0; i < 250; ++i) {
      payloads.push_back(absl::StrCat("m", i));
      futures.push_back(publisher.Publish(Message(payloads.back())));
    }
    publisher.Flush();
  }
  std::set<std::string> ids;
  for (IdFuture& future : futures) {
    absl::StatusOr<std::string> id = future.get();
    ASSERT_THAT(id, IsOk());
    ids.insert(*id);
  }
  EXPECT_THAT(ids, SizeIs(250));
  // Batches are sent in order, but the server may complete pipelined batches
  // in any order (PublishStream answers in completion order).
  EXPECT_THAT(ConsumePayloads("orders", 250), UnorderedElementsAreArray(payloads));
}

TEST_F(PublisherTest, AFullBatchIsSentWithoutWaitingForTheDelay) {
  Publisher publisher(*client_, "orders", Batching(3, kDefaultBytes, kNever));
  std::vector<IdFuture> futures;
  for (int i = 0; i < 3; ++i) futures.push_back(publisher.Publish(Message("full")));
  for (IdFuture& future : futures) {
    ASSERT_TRUE(ResolvesInTime(future));
    EXPECT_THAT(future.get(), IsOk());
  }
}

TEST_F(PublisherTest, AFullBatchByBytesIsSentWithoutWaitingForTheDelay) {
  Publisher publisher(*client_, "orders", Batching(kDefaultMessages, 2000, kNever));
  IdFuture first = publisher.Publish(Message(std::string(1500, 'a')));
  IdFuture second = publisher.Publish(Message(std::string(1500, 'b')));
  ASSERT_TRUE(ResolvesInTime(first));
  ASSERT_TRUE(ResolvesInTime(second));
  EXPECT_THAT(first.get(), IsOk());
  EXPECT_THAT(second.get(), IsOk());
}

TEST_F(PublisherTest, TheDelaySendsAPartialBatch) {
  Publisher publisher(*client_, "orders",
                      Batching(kDefaultMessages, kDefaultBytes, absl::Milliseconds(1)));
  IdFuture future = publisher.Publish(Message("late"));
  ASSERT_TRUE(ResolvesInTime(future));
  EXPECT_THAT(future.get(), IsOk());
}

TEST_F(PublisherTest, FlushReturnsOnceEveryMessageHasItsOutcome) {
  Publisher publisher(*client_, "orders", Batching(kDefaultMessages, kDefaultBytes, kNever));
  IdFuture first = publisher.Publish(Message("a"));
  IdFuture second = publisher.Publish(Message("b"));
  publisher.Flush();
  ASSERT_TRUE(IsReady(first));
  ASSERT_TRUE(IsReady(second));
  EXPECT_THAT(first.get(), IsOk());
  EXPECT_THAT(second.get(), IsOk());
}

TEST_F(PublisherTest, TheDestructorFlushes) {
  std::vector<IdFuture> futures;
  {
    Publisher publisher(*client_, "orders", Batching(kDefaultMessages, kDefaultBytes, kNever));
    for (int i = 0; i < 5; ++i) futures.push_back(publisher.Publish(Message("d")));
  }
  for (IdFuture& future : futures) {
    ASSERT_TRUE(IsReady(future));
    EXPECT_THAT(future.get(), IsOk());
  }
}

TEST_F(PublisherTest, ABadTopicFailsEveryMessageOfTheBatchNamingTheField) {
  Publisher publisher(*client_, "", Batching(kDefaultMessages, kDefaultBytes, kNever));
  std::vector<IdFuture> futures;
  for (int i = 0; i < 3; ++i) futures.push_back(publisher.Publish(Message("x")));
  publisher.Flush();
  for (IdFuture& future : futures) {
    EXPECT_THAT(future.get(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topic")));
  }
}

TEST_F(PublisherTest, PastTheOutstandingBoundPublishFailsAtOnceWithResourceExhausted) {
  Publisher publisher(*client_, "orders", OutstandingAtMost(2));
  IdFuture first = publisher.Publish(Message("1"));
  IdFuture second = publisher.Publish(Message("2"));
  IdFuture refused = publisher.Publish(Message("3"));
  ASSERT_TRUE(IsReady(refused));
  EXPECT_THAT(refused.get(), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("max_outstanding_messages=2")));
  publisher.Flush();
  EXPECT_THAT(first.get(), IsOk());
  EXPECT_THAT(second.get(), IsOk());
  // Answered messages free their room.
  IdFuture after = publisher.Publish(Message("4"));
  publisher.Flush();
  EXPECT_THAT(after.get(), IsOk());
}

TEST_F(PublisherTest, PublishStreamAnswersEachRequestAndRefusesSendsAfterClose) {
  PublishStream stream(*client_);
  Collector answers;
  const auto record = [&answers](absl::StatusOr<std::vector<std::string>> ids) {
    answers.Add(ids.ok() ? absl::StrCat(ids->size(), " ids") : ids.status().ToString());
  };
  std::vector<v1::OutgoingMessage> two = {Message("a"), Message("b")};
  std::vector<v1::OutgoingMessage> bad = {Message("c")};
  ASSERT_THAT(stream.Send("orders", std::move(two), record), IsOk());
  ASSERT_THAT(stream.Send("", std::move(bad), record), IsOk());
  EXPECT_THAT(stream.Close(), IsOk());
  ASSERT_TRUE(answers.AwaitCount(2));
  EXPECT_THAT(answers.items(), ::testing::UnorderedElementsAre(
                                   "2 ids", ::testing::StartsWith("INVALID_ARGUMENT: topic")));

  std::vector<v1::OutgoingMessage> late = {Message("d")};
  EXPECT_THAT(stream.Send("orders", std::move(late), record),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(late, SizeIs(1));  // Left to the caller.
}

}  // namespace
}  // namespace switchboard::client
