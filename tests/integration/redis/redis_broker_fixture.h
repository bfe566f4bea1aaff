// The fixture of the RedisBroker tests against a real redis-server: a
// redis-server per test, brokers on one real-clock dispatcher shared with
// their connections (as in production), and helpers that wait with a bound.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/broker/redis/redis_broker.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/recording_sinks.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker::redis_fixture {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::kWaitTimeout;
using ::switchboard::testing::RecordingConsumerSink;
using ::switchboard::testing::RecordingObserver;
using ::switchboard::testing::RedisServer;

inline TopicDeclaration Ephemeral(std::string pattern) {
  TopicDeclaration declaration{std::move(pattern), {}};
  declaration.policy.kind = TopicKind::kEphemeral;
  return declaration;
}

inline TopicDeclaration Durable(std::string pattern, absl::Duration ack_deadline,
                                uint32_t max_delivery_attempts = 5) {
  TopicDeclaration declaration{std::move(pattern), {}};
  declaration.policy.ack_deadline = ack_deadline;
  declaration.policy.max_delivery_attempts = max_delivery_attempts;
  return declaration;
}

// Records health reports and waits for a given one.
class HealthLog {
 public:
  void Record(bool serving) {
    absl::MutexLock lock(&mu_);
    reports_.push_back(serving);
  }
  bool WaitFor(bool serving) {
    absl::MutexLock lock(&mu_);
    auto last_is = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !reports_.empty() && reports_.back() == serving;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&last_is), kWaitTimeout);
  }

 private:
  absl::Mutex mu_;
  std::vector<bool> reports_ ABSL_GUARDED_BY(mu_);
};

class RedisBrokerTest : public ::testing::Test {
 protected:
  RedisBrokerTest() : dispatcher_("redis-broker-test", common::RealClock::Get()) {
    dispatcher_.Start();
  }

  ~RedisBrokerTest() override {
    for (auto& broker : brokers_) broker->Shutdown();
    brokers_.clear();
    dispatcher_.Shutdown();
  }

  void StartServer(RedisServer::Options options = {}) {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start(std::move(options));
    ASSERT_THAT(server, IsOk());
    redis_ = *std::move(server);
  }

  // A broker on the test's dispatcher, once it serves; `health` (optional)
  // records its reports. Sync() needs `sync_barrier`.
  RedisBroker& AddBroker(std::vector<TopicDeclaration> topics, HealthLog* health = nullptr,
                         uint32_t max_reader_connections = 8, bool sync_barrier = true) {
    RedisBrokerOptions options;
    options.connection.port = static_cast<uint16_t>(redis_->port());
    options.max_reader_connections = max_reader_connections;
    options.connection.reconnect_initial = absl::Milliseconds(20);
    options.connection.reconnect_max = absl::Milliseconds(200);
    options.maintenance_interval = absl::Milliseconds(100);
    options.enable_sync_barrier = sync_barrier;
    options.reader_linger = reader_linger_;
    brokers_.push_back(std::make_unique<RedisBroker>(dispatcher_, dispatcher_, std::move(options),
                                                     TopicPolicies(std::move(topics)), observer_,
                                                     connection_observer_));
    RedisBroker& broker = *brokers_.back();
    auto serving = std::make_shared<absl::Notification>();
    broker.WatchHealth([serving, health](bool now_serving) {
      if (health != nullptr) health->Record(now_serving);
      if (now_serving && !serving->HasBeenNotified()) serving->Notify();
    });
    EXPECT_TRUE(serving->WaitForNotificationWithTimeout(kWaitTimeout));
    return broker;
  }

  static absl::StatusOr<std::vector<std::string>> Publish(Broker& broker, const std::string& topic,
                                                          std::vector<std::string> payloads) {
    std::vector<OutgoingMessage> messages;
    for (std::string& payload : payloads) messages.push_back({std::move(payload), {}});
    absl::Notification done;
    absl::StatusOr<std::vector<std::string>> result = absl::UnknownError("never completed");
    broker.Publish(topic, std::move(messages), [&](absl::StatusOr<std::vector<std::string>> ids) {
      result = std::move(ids);
      done.Notify();
    });
    if (!done.WaitForNotificationWithTimeout(kWaitTimeout)) {
      return absl::DeadlineExceededError("publish never completed");
    }
    return result;
  }

  static void Sync(RedisBroker& broker) {
    absl::Notification done;
    broker.Sync([&done] { done.Notify(); });
    done.WaitForNotification();
  }

  static void Settle(ConsumerSession& session, RecordingConsumerSink& sink, LeaseUpdate update) {
    const size_t before = sink.settled().size();
    session.Settle(std::move(update),
                   [&sink](LeaseUpdateResult result) { sink.RecordSettled(std::move(result)); });
    EXPECT_TRUE(sink.WaitForSettled(before + 1));
  }

  absl::Duration reader_linger_ = absl::Seconds(10);  // For the brokers added after it is set.
  event::DispatcherImpl dispatcher_;
  HealthLog health_;  // For the brokers a test passes it to.
  RecordingObserver observer_;
  redis::NullConnectionObserver connection_observer_;
  std::unique_ptr<RedisServer> redis_;
  std::vector<std::unique_ptr<RedisBroker>> brokers_;
};

}  // namespace switchboard::broker::redis_fixture
