#include "server/broker/consumer_groups.h"

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr char kTopic[] = "jobs";
constexpr char kGroup[] = "workers";

std::shared_ptr<const Message> Numbered(int n) {
  auto message = std::make_shared<Message>();
  message->id = std::to_string(n);
  message->topic = kTopic;
  message->payload = "payload " + std::to_string(n);
  return message;
}

// A source whose new messages are a queue the test fills, which takes due
// redeliveries back inline (like the memory backend), and records what the
// core asks of it.
class FakeSource final : public GroupSource {
 public:
  struct Log {
    std::deque<std::shared_ptr<const Message>> backlog;
    std::vector<std::string> acked;
    std::vector<std::pair<std::string, uint32_t>> dead_letters;  // Id, attempts.
    std::vector<std::string> redelivered;                        // Ids taken back.
    bool lose_due = false;                                       // Due ones are gone.
    int idle_calls = 0;
    std::vector<std::pair<std::string, absl::Duration>> delays;  // Recorded.
  };

  explicit FakeSource(Log& log) : log_(log) {}

  void Fill(ConsumerGroup& group) override {
    for (const DueDelivery& due : group.TakeDue(group.FreeCredits())) {
      log_.redelivered.push_back(due.id);
      group.Redelivered(due, /*present=*/!log_.lose_due);
    }
    for (uint32_t credits = group.FreeCredits(); credits > 0 && !log_.backlog.empty(); --credits) {
      group.Arrive(log_.backlog.front(), /*attempt=*/1);
      log_.backlog.pop_front();
    }
  }
  void Idle(ConsumerGroup&) override { ++log_.idle_calls; }
  void RecordDelay(ConsumerGroup&, const std::string& id, absl::Duration delay) override {
    log_.delays.emplace_back(id, delay);
  }
  void Acknowledge(ConsumerGroup&, std::vector<std::string> ids) override {
    for (std::string& id : ids) log_.acked.push_back(std::move(id));
  }
  void DeadLetter(ConsumerGroup&, std::shared_ptr<const Message> message,
                  uint32_t attempts) override {
    log_.dead_letters.emplace_back(message->id, attempts);
  }

 private:
  Log& log_;
};

// Records deliveries as "id@attempt", in order.
class RecordingSink final : public ConsumerSink {
 public:
  void OnDeliveries(std::vector<Delivery> deliveries) override {
    for (Delivery& delivery : deliveries) {
      received.push_back(delivery.message.id + "@" + std::to_string(delivery.delivery_attempt));
      ack_ids[delivery.message.id] = delivery.ack_id;
    }
  }
  void OnClosed(absl::Status status) override { closed = status; }

  std::vector<std::string> received;
  std::map<std::string, std::string> ack_ids;  // By message id, the latest.
  absl::Status closed;
};

class ConsumerGroupsTest : public ::testing::Test {
 protected:
  ConsumerGroupsTest()
      : policies_({TopicDeclaration{kTopic,
                                    [] {
                                      TopicPolicy policy;
                                      policy.kind = TopicKind::kDurable;
                                      policy.max_delivery_attempts = 3;
                                      policy.ack_deadline = absl::Seconds(30);
                                      return policy;
                                    }()}}),
        dispatcher_("groups-test", clock_) {
    dispatcher_.Start();
    Run([&] {
      core_ = std::make_unique<ConsumerGroups>(
          dispatcher_, policies_, observer_,
          [this](ConsumerGroup&) { return std::make_unique<FakeSource>(log_); });
    });
  }

  ~ConsumerGroupsTest() override {
    Run([&] { core_.reset(); });
  }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(dispatcher_, std::move(fn)); }

  void Join(uint64_t id, RecordingSink& sink, uint32_t credits) {
    Run([&] {
      ConsumeOptions options;
      options.topic = kTopic;
      options.group = kGroup;
      options.max_in_flight = credits;
      core_->AddSession(id, options, std::make_shared<flow::SinkGuard<ConsumerSink>>(sink));
    });
  }

  void Publish(int from, int to) {
    Run([&] {
      for (int n = from; n < to; ++n) log_.backlog.push_back(Numbered(n));
      core_->Pump(Group());
    });
  }

  LeaseUpdateResult Settle(uint64_t id, LeaseUpdate update) {
    LeaseUpdateResult result;
    Run([&] {
      core_->Settle(id, update, [&](LeaseUpdateResult settled) { result = std::move(settled); });
    });
    return result;
  }

  ConsumerGroup& Group() { return core_->groups().at({kTopic, kGroup}); }

  TopicPolicies policies_;
  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  NullBrokerObserver observer_;
  FakeSource::Log log_;
  std::unique_ptr<ConsumerGroups> core_;
};

TEST(DeadLetterOfTest, KeepsTheMessageAndNamesItsOrigin) {
  const Message message{"5-3", "jobs", "data", {{"kind", "x"}}, absl::FromUnixMillis(5)};
  const OutgoingMessage dead_letter = DeadLetterOf(message, 3);
  EXPECT_EQ(dead_letter.payload, "data");
  EXPECT_EQ(dead_letter.attributes, (Attributes{{"kind", "x"},
                                                {kDeadLetterAttemptsAttribute, "3"},
                                                {kDeadLetterOriginalIdAttribute, "5-3"},
                                                {kDeadLetterOriginalTopicAttribute, "jobs"}}));
}

TEST_F(ConsumerGroupsTest, SessionsWithCreditTakeTurnsInJoiningOrder) {
  RecordingSink a, b;
  Join(1, a, 2);
  Join(2, b, 1);
  Publish(0, 5);
  EXPECT_THAT(a.received, ElementsAre("0@1", "2@1"));
  EXPECT_THAT(b.received, ElementsAre("1@1"));
  // Credits are used up: the rest stays with the source.
  EXPECT_EQ(log_.backlog.size(), 2u);
}

TEST_F(ConsumerGroupsTest, RedeliveriesGoOutBeforeNewMessages) {
  RecordingSink a;
  Join(1, a, 2);
  Publish(0, 4);
  ASSERT_THAT(a.received, ElementsAre("0@1", "1@1"));
  // A nack of both frees two credits: the redeliveries take them, in nack
  // order, although two new messages wait.
  LeaseUpdate update;
  update.nacks = {{a.ack_ids.at("1")}, {a.ack_ids.at("0")}};
  Settle(1, update);
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1", "1@2", "0@2"));
  update.nacks.clear();
  update.acks = {a.ack_ids.at("1"), a.ack_ids.at("0")};
  Settle(1, update);
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1", "1@2", "0@2", "2@1", "3@1"));
  EXPECT_THAT(log_.acked, ElementsAre("1", "0"));
}

TEST_F(ConsumerGroupsTest, TheLastAttemptDeadLettersInsteadOfRedelivering) {
  RecordingSink a;
  Join(1, a, 1);
  Publish(0, 2);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    LeaseUpdate update;
    update.nacks = {{a.ack_ids.at("0")}};
    EXPECT_TRUE(Settle(1, update).nacks[0].ok());
  }
  EXPECT_THAT(a.received, ElementsAre("0@1", "0@2", "0@3", "1@1"));
  EXPECT_THAT(log_.dead_letters, ElementsAre(Pair("0", 3u)));
  EXPECT_FALSE(Group().holds("0"));
}

TEST_F(ConsumerGroupsTest, AMessageWhoseAttemptsWereUsedElsewhereIsDeadLetteredOnArrival) {
  RecordingSink a;
  Join(1, a, 5);
  Run([&] {
    Group().Arrive(Numbered(7), /*attempt=*/4);
    Group().Arrive(Numbered(8), /*attempt=*/3);
    core_->Pump(Group());
  });
  EXPECT_THAT(log_.dead_letters, ElementsAre(Pair("7", 3u)));
  EXPECT_THAT(a.received, ElementsAre("8@3"));
}

TEST_F(ConsumerGroupsTest, AnExpiredLeaseIsDueAgainWithTheNextAttempt) {
  RecordingSink a;
  Join(1, a, 1);
  Publish(0, 1);
  const std::string expired = a.ack_ids.at("0");
  clock_.Advance(absl::Seconds(31));
  Run([] {});
  EXPECT_THAT(a.received, ElementsAre("0@1", "0@2"));
  // The expired ack id settles nothing; the new one does.
  LeaseUpdate update;
  update.acks = {expired, a.ack_ids.at("0")};
  const LeaseUpdateResult result = Settle(1, update);
  EXPECT_EQ(result.acks[0].code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(result.acks[1].ok());
  EXPECT_THAT(log_.acked, ElementsAre("0"));
}

TEST_F(ConsumerGroupsTest, AClosedStreamsLeasesGoToTheOtherSessions) {
  RecordingSink a, b;
  Join(1, a, 2);
  Publish(0, 2);
  Join(2, b, 2);
  Run([&] { core_->RemoveSession(1); });
  EXPECT_THAT(b.received, ElementsAre("0@2", "1@2"));
  EXPECT_THAT(log_.redelivered, ElementsAre("0", "1"));
}

TEST_F(ConsumerGroupsTest, ADueRedeliveryThatIsGoneIsForgotten) {
  RecordingSink a;
  Join(1, a, 1);
  Publish(0, 2);
  log_.lose_due = true;
  LeaseUpdate update;
  update.nacks = {{a.ack_ids.at("0")}};
  Settle(1, update);
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1"));
  EXPECT_FALSE(Group().holds("0"));
}

TEST_F(ConsumerGroupsTest, WithoutSessionsTheSourceHearsTheGroupIsIdleAndMayTakeWhatWaits) {
  RecordingSink a;
  Join(1, a, 1);
  Publish(0, 1);
  const int idle_before = log_.idle_calls;
  Run([&] { core_->RemoveSession(1); });
  EXPECT_EQ(log_.idle_calls, idle_before + 1);
  std::vector<std::string> waiting;
  Run([&] { waiting = Group().TakeWaiting(); });
  EXPECT_THAT(waiting, ElementsAre("0"));
  EXPECT_THAT(Group().held(), IsEmpty());
  EXPECT_EQ(Group().FreeCredits(), 0u);
}

TEST_F(ConsumerGroupsTest, ADelayedNackIsRecordedAndWaitsWithoutHoldingACredit) {
  RecordingSink a;
  Join(1, a, 1);
  Publish(0, 2);
  LeaseUpdate update;
  update.nacks = {{a.ack_ids.at("0"), absl::Seconds(2)}};
  Settle(1, update);
  EXPECT_THAT(log_.delays, ElementsAre(Pair("0", absl::Seconds(2))));
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1"));
  update.nacks.clear();
  update.acks = {a.ack_ids.at("1")};
  Settle(1, update);
  clock_.Advance(absl::Milliseconds(1999));
  Run([] {});
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1"));
  clock_.Advance(absl::Milliseconds(1));
  Run([] {});
  EXPECT_THAT(a.received, ElementsAre("0@1", "1@1", "0@2"));
  EXPECT_THAT(log_.redelivered, ElementsAre("0"));
}

TEST_F(ConsumerGroupsTest, AMessageArrivingWithARecordedDelayWaitsOutTheRest) {
  RecordingSink a;
  Join(1, a, 1);
  Run([&] {
    Group().Arrive(Numbered(7), /*attempt=*/2, absl::Seconds(1));
    core_->Pump(Group());
  });
  EXPECT_THAT(a.received, IsEmpty());
  EXPECT_TRUE(Group().holds("7"));
  clock_.Advance(absl::Seconds(1));
  Run([] {});
  EXPECT_THAT(a.received, ElementsAre("7@2"));
  // Taken back already where the delay was recorded: not again.
  EXPECT_THAT(log_.redelivered, IsEmpty());
}

TEST_F(ConsumerGroupsTest, MessagesOfABusyKeyWaitWithoutACreditAndGoInOrder) {
  RecordingSink a;
  Join(1, a, 2);
  Run([&] {
    for (int n = 0; n < 3; ++n) {
      auto message = std::make_shared<Message>(*Numbered(n));
      message->ordering_key = "k";
      log_.backlog.push_back(std::move(message));
    }
    log_.backlog.push_back(Numbered(3));
    core_->Pump(Group());
  });
  // 1 and 2 wait behind 0, holding no credit: 3 takes the second one.
  EXPECT_THAT(a.received, ElementsAre("0@1", "3@1"));
  EXPECT_EQ(Group().blocked(), 2u);
  LeaseUpdate update;
  update.acks = {a.ack_ids.at("0")};
  Settle(1, update);
  EXPECT_THAT(a.received, ElementsAre("0@1", "3@1", "1@1"));
  EXPECT_EQ(Group().blocked(), 1u);

  // Without sessions, what waits behind a key can be given back too.
  Run([&] { core_->RemoveSession(1); });
  std::vector<std::string> waiting;
  Run([&] { waiting = Group().TakeWaiting(); });
  EXPECT_THAT(waiting, ::testing::UnorderedElementsAre("1", "2", "3"));
  EXPECT_EQ(Group().blocked(), 0u);
}

TEST_F(ConsumerGroupsTest, AKeyedMessageArrivingDelayedHoldsBackTheRestOfItsKey) {
  RecordingSink a;
  Join(1, a, 3);
  Run([&] {
    // Taken over from a replica that died after nacking 0 with a delay.
    auto first = std::make_shared<Message>(*Numbered(0));
    first->ordering_key = "k";
    Group().Arrive(first, /*attempt=*/2, absl::Seconds(1));
    auto second = std::make_shared<Message>(*Numbered(1));
    second->ordering_key = "k";
    Group().Arrive(second, /*attempt=*/1);
    core_->Pump(Group());
  });
  EXPECT_THAT(a.received, IsEmpty());
  clock_.Advance(absl::Seconds(1));
  Run([] {});
  EXPECT_THAT(a.received, ElementsAre("0@2"));
  LeaseUpdate update;
  update.acks = {a.ack_ids.at("0")};
  Settle(1, update);
  EXPECT_THAT(a.received, ElementsAre("0@2", "1@1"));
}

TEST_F(ConsumerGroupsTest, TakeWaitingCanSelectMessagesAndLeavesTheRestAndTheLeases) {
  RecordingSink a;
  Join(1, a, 1);
  Run([&] {
    for (const char* id : {"1-0#2", "2-0#1", "3-0#2", "4-0"}) {
      auto message = std::make_shared<Message>(*Numbered(0));
      message->id = id;
      Group().Arrive(std::move(message), /*attempt=*/1);
    }
    core_->Pump(Group());
  });
  ASSERT_THAT(a.received, ElementsAre("1-0#2@1"));  // Leased; the rest wait.
  auto of_partition_2 = [](absl::string_view id) { return absl::EndsWith(id, "#2"); };
  std::vector<std::string> taken;
  bool holds_any = false;
  Run([&] {
    taken = Group().TakeWaiting(of_partition_2);
    holds_any = Group().HoldsAny(of_partition_2);
  });
  EXPECT_THAT(taken, ElementsAre("3-0#2"));
  EXPECT_TRUE(holds_any);  // The lease of 1-0#2.
  EXPECT_TRUE(Group().holds("2-0#1"));
  EXPECT_TRUE(Group().holds("4-0"));
  LeaseUpdate update;
  update.acks = {a.ack_ids.at("1-0#2")};
  Settle(1, update);
  Run([&] { holds_any = Group().HoldsAny(of_partition_2); });
  EXPECT_FALSE(holds_any);
  EXPECT_THAT(a.received, ElementsAre("1-0#2@1", "2-0#1@1"));
}

TEST_F(ConsumerGroupsTest, FreeCreditsCountWaitingReservedAndRedelivering) {
  RecordingSink a;
  Join(1, a, 4);
  Run([&] {
    ConsumerGroup& group = Group();
    EXPECT_EQ(group.FreeCredits(), 4u);
    group.Reserve(1);
    EXPECT_EQ(group.FreeCredits(), 3u);
    group.Unreserve(1);
    EXPECT_EQ(group.FreeCredits(), 4u);
  });
  Publish(0, 1);
  LeaseUpdate update;
  update.nacks = {{a.ack_ids.at("0")}};
  // Stopped, the core asks the source nothing: the nack leaves the message
  // due, and a due redelivery taken but not back holds a credit.
  Run([&] { core_->Stop(); });
  Settle(1, update);
  Run([&] {
    ConsumerGroup& group = Group();
    EXPECT_TRUE(group.has_due());
    std::vector<DueDelivery> due = group.TakeDue(10);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].attempt, 2u);
    EXPECT_EQ(group.FreeCredits(), 3u);
    group.Requeue(due);
    EXPECT_EQ(group.FreeCredits(), 4u);
    EXPECT_TRUE(group.has_due());
  });
}

}  // namespace
}  // namespace switchboard::broker
