// Publisher and PublishStream against an in-process server with the memory
// broker: what was published from several threads is what a consumer gets,
// Flush() and the destructor wait for every answer, and errors reach every
// message. The batching itself is counted in publisher_batching_test.cc.
#include "switchboard/client/publisher.h"

#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/client/publish_stream.h"
#include "tests/integration/client/collector.h"
#include "tests/integration/client/publisher_test_util.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;

ClientOptions At(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

ConsumerOptions ReadBack() {
  ConsumerOptions options;
  options.group = "readback";
  return options;
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
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  PublisherOptions small_requests;
  small_requests.max_batch_messages = 7;
  std::vector<std::vector<IdFuture>> futures(kThreads);
  std::vector<std::string> payloads;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) payloads.push_back(absl::StrCat("t", t, "m", i));
  }
  {
    Publisher publisher(*client_, "orders", small_requests);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          futures[t].push_back(publisher.Publish(Message(payloads[t * kPerThread + i])));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    publisher.Flush();
  }
  std::set<std::string> ids;
  for (std::vector<IdFuture>& of_thread : futures) {
    for (IdFuture& future : of_thread) {
      absl::StatusOr<std::string> id = future.get();
      ASSERT_THAT(id, IsOk());
      ids.insert(*id);
    }
  }
  EXPECT_THAT(ids, SizeIs(payloads.size()));
  // Requests leave in order, but the server may complete pipelined requests
  // in any order (PublishStream answers in completion order).
  EXPECT_THAT(ConsumePayloads("orders", payloads.size()), UnorderedElementsAreArray(payloads));
}

TEST_F(PublisherTest, ALoneMessageIsAnsweredWithoutAFlush) {
  Publisher publisher(*client_, "orders");
  IdFuture future = publisher.Publish(Message("alone"));
  ASSERT_TRUE(ResolvesInTime(future));
  EXPECT_THAT(future.get(), IsOk());
}

TEST_F(PublisherTest, FlushReturnsOnceEveryMessageHasItsOutcome) {
  Publisher publisher(*client_, "orders");
  IdFuture first = publisher.Publish(Message("a"));
  IdFuture second = publisher.Publish(Message("b"));
  publisher.Flush();
  ASSERT_TRUE(IsReady(first));
  ASSERT_TRUE(IsReady(second));
  EXPECT_THAT(first.get(), IsOk());
  EXPECT_THAT(second.get(), IsOk());
}

TEST_F(PublisherTest, TheDestructorWaitsForEveryMessage) {
  std::vector<IdFuture> futures;
  {
    Publisher publisher(*client_, "orders");
    for (int i = 0; i < 500; ++i) futures.push_back(publisher.Publish(Message("d")));
  }
  for (IdFuture& future : futures) {
    ASSERT_TRUE(IsReady(future));
    EXPECT_THAT(future.get(), IsOk());
  }
}

TEST_F(PublisherTest, ABadTopicFailsEveryMessageNamingTheField) {
  Publisher publisher(*client_, "");
  std::vector<IdFuture> futures;
  for (int i = 0; i < 3; ++i) futures.push_back(publisher.Publish(Message("x")));
  publisher.Flush();
  for (IdFuture& future : futures) {
    EXPECT_THAT(future.get(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topic")));
  }
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
