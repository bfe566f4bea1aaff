// AmqpBroker (server/broker/amqp) against a real RabbitMQ node, for what the
// conformance suite cannot show with one broker on a simulated clock:
//   * the node killed mid-publish: every publish the broker confirmed is
//     still there after the restart, publishes fail fast while it is down,
//     and the same broker resumes (health, publishing, an open consume
//     session) without being made again;
//   * two replicas sharing a group: the leases of the one that shuts down
//     go to the other at once, each with the next attempt;
//   * the connections a broker opens, whatever the streams on it.
// One node serves the suite; each test has a name prefix of its own.
#include "server/broker/amqp/amqp_broker.h"

#include <atomic>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/integration/amqp/rabbitmq_suite.h"
#include "tests/testing/recording_sinks.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::RabbitMqSuite;
using ::switchboard::testing::RecordingConsumerSink;
using ::switchboard::testing::RecordingObserver;
using ::switchboard::testing::RecordingSubscriberSink;
using ::switchboard::testing::StatusIs;
using ::testing::Each;
using ::testing::Field;

constexpr absl::Duration kWait = absl::Seconds(60);

class NullConnectionObserver final : public amqp::AmqpConnectionObserver {
 public:
  void OnStateChanged(amqp::AmqpConnectionState, const absl::Status&) override {}
};

// A broker on a real-clock dispatcher of its own, and its health as seen
// through WatchHealth.
class Replica {
 public:
  Replica(int port, const std::string& prefix, std::vector<TopicDeclaration> topics)
      : dispatcher_("amqp-broker-test", common::RealClock::Get()) {
    dispatcher_.Start();
    AmqpBrokerOptions options;
    options.connection.port = static_cast<uint16_t>(port);
    options.connection.reconnect_max = absl::Milliseconds(500);
    options.name_prefix = prefix;
    broker_ = std::make_unique<AmqpBroker>(dispatcher_, std::move(options),
                                           TopicPolicies(std::move(topics)), observer_,
                                           connection_observer_);
    broker_->WatchHealth([this](bool serving) {
      absl::MutexLock lock(&mu_);
      serving_ = serving;
      changed_.SignalAll();
    });
  }
  ~Replica() {
    broker_->Shutdown();
    broker_.reset();
    dispatcher_.Shutdown();
  }

  AmqpBroker& broker() { return *broker_; }

  bool WaitForHealth(bool serving) {
    const absl::Time deadline = absl::Now() + kWait;
    absl::MutexLock lock(&mu_);
    while (serving_ != serving) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return serving_ == serving;
    }
    return true;
  }

  absl::StatusOr<std::vector<std::string>> Publish(const std::string& topic,
                                                   std::vector<OutgoingMessage> messages) {
    absl::Notification done;
    absl::StatusOr<std::vector<std::string>> result;
    broker_->Publish(topic, std::move(messages), [&](absl::StatusOr<std::vector<std::string>> ids) {
      result = std::move(ids);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

 private:
  event::DispatcherImpl dispatcher_;
  RecordingObserver observer_;
  NullConnectionObserver connection_observer_;
  std::unique_ptr<AmqpBroker> broker_;
  absl::Mutex mu_;
  absl::CondVar changed_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
};

std::vector<TopicDeclaration> JobsTopic() {
  TopicDeclaration jobs{"jobs", {}};
  jobs.policy.groups = {"workers"};
  jobs.policy.ack_deadline = absl::Seconds(60);
  return {jobs};
}

std::vector<OutgoingMessage> One(std::string payload) {
  std::vector<OutgoingMessage> messages(1);
  messages[0].payload = std::move(payload);
  return messages;
}

class AmqpBrokerTest : public RabbitMqSuite {
 protected:
  std::string Prefix() const {
    return absl::StrCat("t.", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
};

TEST_F(AmqpBrokerTest, NoConfirmedPublishIsLostWhenTheNodeIsKilledMidPublish) {
  Replica replica(server().port(), Prefix(), JobsTopic());
  ASSERT_TRUE(replica.WaitForHealth(true));
  ASSERT_THAT(server().SyncMetadata(), IsOk());

  // Four publishers, one message per call, many calls in flight.
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::set<std::string> confirmed;  // Payloads the broker confirmed.
  std::vector<absl::Status> failures;
  std::atomic<int> attempts{0};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 4; ++p) {
    publishers.emplace_back([&, p] {
      for (int n = 0; !stop.load(); ++n) {
        const std::string payload = absl::StrCat("p", p, "-", n);
        absl::StatusOr<std::vector<std::string>> ids = replica.Publish("jobs", One(payload));
        attempts.fetch_add(1);
        absl::MutexLock lock(&mu);
        if (ids.ok()) {
          confirmed.insert(payload);
        } else {
          failures.push_back(ids.status());
        }
      }
    });
  }
  auto count_confirmed = [&] {
    absl::MutexLock lock(&mu);
    return confirmed.size();
  };
  const absl::Time deadline = absl::Now() + kWait;
  while (count_confirmed() < 500 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_GE(count_confirmed(), 500u);
  server().Kill();
  ASSERT_TRUE(replica.WaitForHealth(false));
  // Down: every publish fails, at once, with UNAVAILABLE.
  const int attempts_when_down = attempts.load();
  while (attempts.load() < attempts_when_down + 100 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  stop.store(true);
  for (std::thread& publisher : publishers) publisher.join();
  {
    absl::MutexLock lock(&mu);
    ASSERT_FALSE(failures.empty());
    EXPECT_THAT(failures, Each(StatusIs(absl::StatusCode::kUnavailable)));
  }

  // Back: the same broker serves again, and the group holds every message
  // it confirmed (and possibly some whose confirm the kill lost).
  ASSERT_THAT(server().Restart(), IsOk());
  ASSERT_TRUE(replica.WaitForHealth(true));
  ASSERT_THAT(replica.Publish("jobs", One("after")).status(), IsOk());
  const size_t expected = count_confirmed() + 1;
  RecordingConsumerSink sink;
  absl::StatusOr<std::unique_ptr<ConsumerSession>> session =
      replica.broker().Consume({"jobs", "workers", 1000, absl::ZeroDuration()}, sink);
  ASSERT_THAT(session.status(), IsOk());
  std::set<std::string> received;
  size_t settled = 0;
  const absl::Time consume_deadline = absl::Now() + kWait;
  while (absl::Now() < consume_deadline) {
    for (const Delivery& delivery : sink.deliveries()) received.insert(delivery.message.payload);
    bool all = received.count("after") > 0;
    {
      absl::MutexLock lock(&mu);
      for (const std::string& payload : confirmed) all = all && received.count(payload) > 0;
    }
    if (all) break;
    // Ack what came, so that credits free up.
    const std::vector<Delivery> deliveries = sink.deliveries();
    LeaseUpdate update;
    for (size_t i = settled; i < deliveries.size(); ++i)
      update.acks.push_back(deliveries[i].ack_id);
    settled = deliveries.size();
    if (!update.acks.empty()) (*session)->Settle(std::move(update), [](LeaseUpdateResult) {});
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::MutexLock lock(&mu);
  std::cout << confirmed.size() << " publishes confirmed, " << failures.size()
            << " failed while the node was down; " << received.size()
            << " distinct messages consumed after the restart\n";
  for (const std::string& payload : confirmed) {
    EXPECT_EQ(received.count(payload), 1u) << "confirmed and lost: " << payload;
  }
  EXPECT_EQ(received.count("after"), 1u);
  EXPECT_GE(received.size(), expected);
}

TEST_F(AmqpBrokerTest, TheLeasesOfAReplicaThatShutsDownGoToTheOtherWithTheNextAttempt) {
  auto leaving = std::make_unique<Replica>(server().port(), Prefix(), JobsTopic());
  Replica staying(server().port(), Prefix(), JobsTopic());
  ASSERT_TRUE(leaving->WaitForHealth(true));
  ASSERT_TRUE(staying.WaitForHealth(true));
  std::vector<OutgoingMessage> batch(10);
  for (int i = 0; i < 10; ++i) batch[i].payload = absl::StrCat("m", i);
  ASSERT_THAT(leaving->Publish("jobs", std::move(batch)).status(), IsOk());

  RecordingConsumerSink holder;
  auto held = leaving->broker().Consume({"jobs", "workers", 10, absl::ZeroDuration()}, holder);
  ASSERT_THAT(held.status(), IsOk());
  ASSERT_TRUE(holder.WaitForCount(10));
  RecordingConsumerSink taker;
  auto taking = staying.broker().Consume({"jobs", "workers", 10, absl::ZeroDuration()}, taker);
  ASSERT_THAT(taking.status(), IsOk());
  EXPECT_THAT(holder.deliveries(), Each(Field(&Delivery::delivery_attempt, 1u)));

  held->reset();
  leaving.reset();  // Shuts down: RabbitMQ takes its deliveries back.
  ASSERT_TRUE(taker.WaitForCount(10));
  std::set<std::string> payloads;
  for (const Delivery& delivery : taker.deliveries()) {
    payloads.insert(delivery.message.payload);
    EXPECT_EQ(delivery.delivery_attempt, 2u) << delivery.message.payload;
  }
  EXPECT_EQ(payloads.size(), 10u);
  EXPECT_EQ(taker.count(), 10u);
}

TEST_F(AmqpBrokerTest, AnOpenSessionAndSubscriptionResumeAfterTheNodeRestarts) {
  std::vector<TopicDeclaration> topics = JobsTopic();
  TopicDeclaration news{"news.*", {}};
  news.policy.kind = TopicKind::kEphemeral;
  topics.push_back(news);
  Replica replica(server().port(), Prefix(), topics);
  ASSERT_TRUE(replica.WaitForHealth(true));
  RecordingConsumerSink sink;
  auto session = replica.broker().Consume({"jobs", "workers", 10, absl::ZeroDuration()}, sink);
  ASSERT_THAT(session.status(), IsOk());
  RecordingSubscriberSink subscriber;
  auto subscription = replica.broker().Subscribe("news.*", subscriber);
  ASSERT_THAT(subscription.status(), IsOk());
  subscriber.Attach(subscription->get());
  ASSERT_TRUE(subscriber.WaitForSubscribed());
  ASSERT_THAT(replica.Publish("jobs", One("before")).status(), IsOk());
  ASSERT_THAT(replica.Publish("news.a", One("before")).status(), IsOk());
  ASSERT_TRUE(sink.WaitForCount(1));
  ASSERT_TRUE(subscriber.WaitForCount(1));
  ASSERT_THAT(server().SyncMetadata(), IsOk());

  server().Kill();
  ASSERT_TRUE(replica.WaitForHealth(false));
  EXPECT_THAT(replica.Publish("jobs", One("down")).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(server().Restart(), IsOk());
  ASSERT_TRUE(replica.WaitForHealth(true));

  ASSERT_THAT(replica.Publish("jobs", One("after")).status(), IsOk());
  ASSERT_THAT(replica.Publish("news.a", One("after")).status(), IsOk());
  // The unacked "before" comes again (RabbitMQ took it back), then "after".
  ASSERT_TRUE(sink.WaitForCount(2));
  ASSERT_TRUE(subscriber.WaitForCount(2));
  EXPECT_EQ(subscriber.payloads().back(), "after");
  std::set<std::string> payloads;
  for (const Delivery& delivery : sink.deliveries()) payloads.insert(delivery.message.payload);
  EXPECT_EQ(payloads.count("after"), 1u);
  EXPECT_FALSE(sink.closed().has_value());
  EXPECT_FALSE(subscriber.closed().has_value());
}

// The subscriber queue is bound once per binding key its live patterns
// need, and unbound once the last of them is gone.
TEST_F(AmqpBrokerTest, TheSubscriberQueueIsUnboundFromWhatNoSubscriberReads) {
  std::vector<TopicDeclaration> topics;
  for (const char* pattern : {"news.*", "sports"}) {
    TopicDeclaration topic{pattern, {}};
    topic.policy.kind = TopicKind::kEphemeral;
    topics.push_back(topic);
  }
  Replica replica(server().port(), Prefix(), topics);
  ASSERT_TRUE(replica.WaitForHealth(true));
  // The binding keys of this test's subscriber queue, from rabbitmqctl
  // (bindings are listed as declared, at once), but for the default
  // exchange's (the queue's own name) and the Sync() marker's.
  auto binding_keys = [&] {
    std::set<std::string> keys;
    absl::StatusOr<std::string> listed = server().Ctl(
        {"-q", "--no-table-headers", "list_bindings", "destination_name", "routing_key"});
    if (!listed.ok()) return keys;
    for (absl::string_view line : absl::StrSplit(*listed, '\n')) {
      std::vector<std::string> fields = absl::StrSplit(line, '\t');
      if (fields.size() == 2 && absl::StartsWith(fields[0], Prefix() + ".subscribers.") &&
          fields[1] != fields[0] && !absl::StrContains(fields[1], ".sync.")) {
        keys.insert(fields[1]);
      }
    }
    return keys;
  };
  RecordingSubscriberSink news_a;
  RecordingSubscriberSink news_b;
  RecordingSubscriberSink sports;
  auto a = replica.broker().Subscribe("news.*", news_a);
  auto b = replica.broker().Subscribe("news.*", news_b);
  auto s = replica.broker().Subscribe("sports", sports);
  ASSERT_THAT(a.status(), IsOk());
  ASSERT_THAT(b.status(), IsOk());
  ASSERT_THAT(s.status(), IsOk());
  news_a.Attach(a->get());
  news_b.Attach(b->get());
  sports.Attach(s->get());
  ASSERT_TRUE(news_a.WaitForSubscribed());
  ASSERT_TRUE(news_b.WaitForSubscribed());
  ASSERT_TRUE(sports.WaitForSubscribed());
  EXPECT_EQ(binding_keys(), (std::set<std::string>{"news.#", "sports"}));

  a->reset();  // news.* still has a subscriber.
  s->reset();
  const absl::Time deadline = absl::Now() + kWait;
  while (binding_keys() != std::set<std::string>{"news.#"} && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(binding_keys(), (std::set<std::string>{"news.#"}));
  ASSERT_THAT(replica.Publish("news.x", One("still read")).status(), IsOk());
  ASSERT_TRUE(news_b.WaitForCount(1));
  b->reset();
}

}  // namespace
}  // namespace switchboard::broker
