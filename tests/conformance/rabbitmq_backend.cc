// Runs the broker conformance suite against the RabbitMQ backend and a real
// rabbitmq-server node: one node per test binary run (it takes seconds to
// boot), and a name prefix of its own per test, so that every test starts
// from exchanges and queues nobody used before.
//
// The broker's state and leases run on the suite's dispatcher (a
// SimulatedClock); its connections run on I/O threads of their own with
// the real clock.
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/broker/amqp/amqp_broker.h"
#include "tests/conformance/conformance_backend.h"
#include "tests/conformance/conformance_suite.h"
#include "tests/testing/rabbitmq_server.h"

namespace switchboard::testing {
namespace {

// The node every test of this run shares; killed at exit. Null (and a test
// failure) when it cannot start.
RabbitMqServer* SharedRabbitMqServer() {
  static const std::unique_ptr<RabbitMqServer> server = [] {
    absl::StatusOr<std::unique_ptr<RabbitMqServer>> started = RabbitMqServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << "cannot start rabbitmq-server: " << started.status();
      return std::unique_ptr<RabbitMqServer>();
    }
    return *std::move(started);
  }();
  return server.get();
}

class NullConnectionObserver final : public broker::amqp::AmqpConnectionObserver {
 public:
  void OnStateChanged(broker::amqp::AmqpConnectionState, const absl::Status&) override {}
};

class RabbitMqBackend final : public ConformanceBackend {
 public:
  // How long a quorum queue gets to deliver what it holds to its consumer.
  static constexpr absl::Duration kSettle = absl::Milliseconds(100);

  std::unique_ptr<broker::Broker> CreateBroker(broker::TopicPolicies policies,
                                               event::Dispatcher& dispatcher,
                                               broker::BrokerObserver& observer) override {
    RabbitMqServer* node = SharedRabbitMqServer();
    if (node == nullptr) return nullptr;
    static int tests = 0;
    broker::AmqpBrokerOptions options;
    options.connection.port = static_cast<uint16_t>(node->port());
    options.name_prefix = absl::StrCat("conformance", ++tests);
    auto broker = std::make_unique<broker::AmqpBroker>(
        dispatcher, std::move(options), std::move(policies), observer, connection_observer_);
    // Tests start talking at once: wait until the connections are up.
    auto serving = std::make_shared<absl::Notification>();
    broker->WatchHealth([serving](bool now_serving) {
      if (now_serving && !serving->HasBeenNotified()) serving->Notify();
    });
    EXPECT_TRUE(serving->WaitForNotificationWithTimeout(kWaitTimeout)) << "rabbitmq never ready";
    broker_ = broker.get();
    return broker;
  }

  // Waits for every publish to be confirmed and for a marker to come back
  // through the subscriber queue, then gives the group queues kSettle to
  // deliver what they still hold: RabbitMQ has no barrier across queues (see
  // AmqpBroker::Sync), so this is the one place the suite waits out time on
  // this backend. Tests use Quiesce() to show that nothing more happens.
  void Quiesce() override {
    SyncOnce();
    absl::SleepFor(kSettle);
    SyncOnce();
  }

  // x-max-length trims exactly.
  uint64_t retention_slack() const override { return 0; }
  bool keys_need_partitions() const override { return false; }
  bool keeps_history() const override { return false; }

 private:
  void SyncOnce() {
    absl::Notification done;
    broker_->Sync([&done] { done.Notify(); });
    done.WaitForNotification();
  }

  NullConnectionObserver connection_observer_;
  broker::AmqpBroker* broker_ = nullptr;
};

std::unique_ptr<ConformanceBackend> MakeRabbitMqBackend() {
  return std::make_unique<RabbitMqBackend>();
}

INSTANTIATE_TEST_SUITE_P(RabbitMQ, BrokerConformanceTest,
                         ::testing::Values(BackendUnderTest{"rabbitmq", &MakeRabbitMqBackend}),
                         BackendName<::testing::TestParamInfo<BackendUnderTest>>);

}  // namespace
}  // namespace switchboard::testing
