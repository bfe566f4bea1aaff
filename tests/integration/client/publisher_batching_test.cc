// The Publisher's auto-batching, counted request by request against a fake
// server that holds every PublishStream request until the test answers it
// (HeldPublishServer): a lone message leaves at once, messages published
// while requests are in flight leave together in the next one, within the
// batch bounds, in Publish() order; errors reach exactly the messages of
// their request; the outstanding bounds count queued messages too. No clock:
// every count below is exact.
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/client/publisher.h"
#include "tests/integration/client/held_publish_server.h"
#include "tests/integration/client/publisher_test_util.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::client {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

PublisherOptions InFlightAtMost(std::size_t requests) {
  PublisherOptions options;
  options.max_in_flight_requests = requests;
  return options;
}

class PublisherBatchingTest : public ::testing::Test {
 protected:
  // Answers whatever is still held before the publisher's destructor waits
  // for it, so that a failed assertion ends the test instead of hanging it.
  void TearDown() override {
    server_.AnswerAll();
    publisher_.reset();
  }

  Publisher& Start(PublisherOptions options) {
    publisher_.emplace(client_, "orders", options);
    return *publisher_;
  }

  // Publishes payloads `first`..`last` (as "m<i>") and returns their futures.
  std::vector<IdFuture> PublishRange(int first, int last) {
    std::vector<IdFuture> futures;
    for (int i = first; i <= last; ++i) futures.push_back(publisher_->Publish(Message(Name(i))));
    return futures;
  }

  static std::string Name(int i) { return absl::StrCat("m", i); }

  HeldPublishServer server_;
  Client client_{server_.client_options()};
  std::optional<Publisher> publisher_;
};

TEST_F(PublisherBatchingTest, ALoneMessageLeavesAtOnceInARequestOfItsOwn) {
  Publisher& publisher = Start(PublisherOptions());
  IdFuture future = publisher.Publish(Message("alone"));
  // Held by the server, so nothing but the publish itself sent it.
  ASSERT_TRUE(server_.AwaitRequests(1));
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1));
  EXPECT_FALSE(IsReady(future));
  server_.AnswerOldest();
  EXPECT_EQ(future.get().value(), "1");
}

TEST_F(PublisherBatchingTest, MessagesPublishedWhileEverySlotIsBusyLeaveTogetherInTheNextRequest) {
  const std::size_t slots = PublisherOptions().max_in_flight_requests;
  Publisher& publisher = Start(PublisherOptions());
  std::vector<IdFuture> futures = PublishRange(0, static_cast<int>(slots) - 1);
  ASSERT_TRUE(server_.AwaitRequests(slots));
  std::vector<IdFuture> queued = PublishRange(static_cast<int>(slots), 40);
  server_.AnswerOldest();  // Frees one slot: the queue leaves in one request.
  ASSERT_TRUE(server_.AwaitRequests(slots + 1));
  server_.AnswerAll();
  publisher.Flush();

  std::vector<std::size_t> sizes(slots, 1);
  sizes.push_back(41 - slots);
  EXPECT_THAT(server_.RequestSizes(), ElementsAreArray(sizes));
  for (IdFuture& future : queued) futures.push_back(std::move(future));
  for (std::size_t i = 0; i < futures.size(); ++i) {
    EXPECT_TRUE(futures[i].get().ok()) << i;
  }
}

TEST_F(PublisherBatchingTest, ARequestHoldsAtMostMaxBatchMessages) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_batch_messages = 2;
  Start(options);
  std::vector<IdFuture> futures = PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  PublishRange(1, 5);
  for (std::size_t answered = 1; answered <= 3; ++answered) {
    server_.AnswerOldest();
    ASSERT_TRUE(server_.AwaitRequests(answered + 1));
  }
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 2, 2, 1));
}

TEST_F(PublisherBatchingTest, ZeroRequestBoundsCountAsOne) {
  PublisherOptions options = InFlightAtMost(0);
  options.max_batch_messages = 0;
  Start(options);
  PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  PublishRange(1, 2);
  for (std::size_t answered = 1; answered <= 2; ++answered) {
    server_.AnswerOldest();
    ASSERT_TRUE(server_.AwaitRequests(answered + 1));
  }
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 1, 1));
}

TEST_F(PublisherBatchingTest, ARequestHoldsAtMostMaxBatchBytesExceptALargerMessageAlone) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_batch_bytes = 2 * Message("m0").ByteSizeLong();
  Publisher& publisher = Start(options);
  PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  PublishRange(1, 3);
  IdFuture large = publisher.Publish(Message(std::string(100, 'x')));
  for (std::size_t answered = 1; answered <= 3; ++answered) {
    server_.AnswerOldest();
    ASSERT_TRUE(server_.AwaitRequests(answered + 1));
  }
  server_.AnswerOldest();
  EXPECT_THAT(large.get(), ::switchboard::testing::IsOk());
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 2, 1, 1));
}

TEST_F(PublisherBatchingTest, RequestsLeaveAndIdsResolveInPublishOrder) {
  server_.AnswerAll();
  Publisher& publisher = Start(PublisherOptions());
  std::vector<IdFuture> futures = PublishRange(1, 300);
  publisher.Flush();
  std::vector<std::string> sent;
  for (const std::vector<std::string>& payloads : server_.Requests()) {
    sent.insert(sent.end(), payloads.begin(), payloads.end());
  }
  std::vector<std::string> published;
  for (int i = 1; i <= 300; ++i) published.push_back(Name(i));
  EXPECT_EQ(sent, published);
  // The server numbers messages in the order it answers them, which is the
  // order they arrived: so each future has its own message's id.
  for (int i = 1; i <= 300; ++i) EXPECT_EQ(futures[i - 1].get().value(), absl::StrCat(i));
}

TEST_F(PublisherBatchingTest, AFailedRequestFailsExactlyItsOwnMessages) {
  Start(InFlightAtMost(1));
  std::vector<IdFuture> failed = PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  std::vector<IdFuture> published = PublishRange(1, 2);
  server_.AnswerOldest(absl::InvalidArgumentError("topic: no such thing"));
  ASSERT_TRUE(server_.AwaitRequests(2));
  server_.AnswerOldest();
  EXPECT_THAT(failed[0].get(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topic")));
  EXPECT_EQ(published[0].get().value(), "1");
  EXPECT_EQ(published[1].get().value(), "2");
}

TEST_F(PublisherBatchingTest, ABrokenStreamRetriesWhatWasInFlightFirstWithItsDedupIds) {
  Publisher& publisher = Start(InFlightAtMost(1));
  std::vector<IdFuture> in_flight = PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  std::vector<IdFuture> queued = PublishRange(1, 3);
  server_.EndStreams();
  // The message whose outcome is unknown goes again, ahead of the queue.
  ASSERT_TRUE(server_.AwaitRequests(2));
  server_.AnswerOldest();
  EXPECT_TRUE(in_flight[0].get().ok());
  for (IdFuture& future : queued) EXPECT_TRUE(future.get().ok());
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 4));
  EXPECT_EQ(server_.Requests()[1][0], Name(0));
  EXPECT_EQ(server_.streams_opened(), 2);
  // Both attempts carried the same dedup id, one the publisher assigned.
  const std::vector<std::string> attempts = server_.DedupIdsOf(Name(0));
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_FALSE(attempts[0].empty());
  EXPECT_EQ(attempts[1], attempts[0]);
  EXPECT_NE(server_.DedupIdsOf(Name(1)).at(0), attempts[0]);
  // The ended stream is released by this thread; the publisher goes on.
  IdFuture after = publisher.Publish(Message("after"));
  ASSERT_TRUE(server_.AwaitRequests(3));
  server_.AnswerOldest();
  EXPECT_TRUE(after.get().ok());
}

TEST_F(PublisherBatchingTest, AMessageFailsOnceItWentOutMaxAttemptsTimes) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_attempts = 2;
  Start(options);
  std::vector<IdFuture> doomed = PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  server_.EndStreams();
  ASSERT_TRUE(server_.AwaitRequests(2));
  server_.EndStreams();
  EXPECT_THAT(doomed[0].get(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(server_.RequestSizes().size(), 2u);
  // An answer from the server is never retried.
  std::vector<IdFuture> refused = PublishRange(1, 1);
  ASSERT_TRUE(server_.AwaitRequests(3));
  server_.AnswerOldest(absl::InvalidArgumentError("topic: no such thing"));
  EXPECT_THAT(refused[0].get(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(server_.RequestSizes().size(), 3u);
}

TEST_F(PublisherBatchingTest, WithOneAttemptNothingIsRetriedAndNoDedupIdIsAssigned) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_attempts = 1;
  Start(options);
  std::vector<IdFuture> in_flight = PublishRange(0, 0);
  ASSERT_TRUE(server_.AwaitRequests(1));
  server_.EndStreams();
  EXPECT_THAT(in_flight[0].get(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(server_.DedupIdsOf(Name(0)), ElementsAre(""));
}

TEST_F(PublisherBatchingTest, QueuedMessagesCountAgainstTheOutstandingBounds) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_outstanding_messages = 3;
  Publisher& publisher = Start(options);
  std::vector<IdFuture> accepted = PublishRange(0, 2);  // One in flight, two queued.
  IdFuture refused = publisher.Publish(Message("m3"));
  ASSERT_TRUE(IsReady(refused));
  EXPECT_THAT(refused.get(), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("max_outstanding_messages=3")));
  server_.AnswerAll();
  publisher.Flush();
  for (IdFuture& future : accepted) EXPECT_TRUE(future.get().ok());
  // Answered messages free their room.
  EXPECT_TRUE(publisher.Publish(Message("m4")).get().ok());
}

TEST_F(PublisherBatchingTest, TheByteBoundRefusesAMessageUnlessNothingIsOutstanding) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_outstanding_bytes = 150;
  Publisher& publisher = Start(options);
  IdFuture large = publisher.Publish(Message(std::string(200, 'x')));  // Alone: accepted.
  IdFuture refused = publisher.Publish(Message("small"));
  ASSERT_TRUE(IsReady(refused));
  EXPECT_THAT(refused.get(), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("max_outstanding_bytes=150")));
  server_.AnswerAll();
  EXPECT_TRUE(large.get().ok());
}

TEST_F(PublisherBatchingTest, TheDestructorSendsTheQueueAndWaitsForEveryAnswer) {
  Start(InFlightAtMost(1));
  std::vector<IdFuture> futures = PublishRange(0, 9);
  ASSERT_TRUE(server_.AwaitRequests(1));
  std::thread destroy([this] { publisher_.reset(); });
  server_.AnswerOldest();
  EXPECT_TRUE(server_.AwaitRequests(2));
  server_.AnswerAll();  // No assertion before the join: it would leave the thread running.
  destroy.join();
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 9));
  for (IdFuture& future : futures) {
    ASSERT_TRUE(IsReady(future));
    EXPECT_TRUE(future.get().ok());
  }
}

TEST_F(PublisherBatchingTest, MessagesPublishedFromCallbacksLeaveTogetherInTheNextRequest) {
  Publisher& publisher = Start(InFlightAtMost(1));
  absl::Notification first_answered;
  absl::StatusOr<std::string> first_id;
  std::vector<IdFuture> next(2);
  std::vector<IdFuture> chained(2);
  for (int i = 0; i < 2; ++i) {
    // The first message's callback publishes again, before its slot frees.
    publisher.Publish(Message(Name(i)), [&, i](absl::StatusOr<std::string> id) {
      chained[i] = publisher.Publish(Message(absl::StrCat("after-", Name(i))));
      if (i == 0) {
        first_id = std::move(id);
        first_answered.Notify();
      }
    });
    if (i == 0) {
      ASSERT_TRUE(server_.AwaitRequests(1));
    }
  }
  next[0] = publisher.Publish(Message("m2"));
  next[1] = publisher.Publish(Message("m3"));
  server_.AnswerOldest();  // [m0]: its callback publishes "after-m0".
  first_answered.WaitForNotification();
  EXPECT_EQ(first_id.value(), "1");
  ASSERT_TRUE(server_.AwaitRequests(2));
  server_.AnswerOldest();  // [m1, m2, m3, after-m0]: m1's callback publishes "after-m1".
  ASSERT_TRUE(server_.AwaitRequests(3));
  server_.AnswerAll();
  publisher.Flush();
  EXPECT_THAT(server_.RequestSizes(), ElementsAre(1, 4, 1));
  for (IdFuture& future : next) EXPECT_TRUE(future.get().ok());
  for (IdFuture& future : chained) EXPECT_TRUE(future.get().ok());
}

TEST_F(PublisherBatchingTest, ARefusedMessageRunsItsCallbackBeforePublishReturns) {
  PublisherOptions options = InFlightAtMost(1);
  options.max_outstanding_messages = 1;
  Publisher& publisher = Start(options);
  IdFuture accepted = publisher.Publish(Message("m0"));
  std::vector<absl::Status> refusals;
  // The callback runs outside the publisher's lock: publishing again from it
  // is refused too, not deadlocked.
  publisher.Publish(Message("m1"), [&](absl::StatusOr<std::string> id) {
    refusals.push_back(id.status());
    publisher.Publish(Message("m2"), [&](absl::StatusOr<std::string> again) {
      refusals.push_back(again.status());
    });
  });
  ASSERT_EQ(refusals.size(), 2u);
  for (const absl::Status& refusal : refusals) {
    EXPECT_THAT(refusal, StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("max_outstanding_messages=1")));
  }
  server_.AnswerAll();
  EXPECT_TRUE(accepted.get().ok());
}

}  // namespace
}  // namespace switchboard::client
