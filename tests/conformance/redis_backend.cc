// Runs the broker conformance suite against the Redis backend and a real
// redis-server: one server per test binary run, flushed before each test.
//
// The broker's state and leases run on the suite's dispatcher (a
// SimulatedClock), while its connections run on an I/O dispatcher of their
// own with the real clock: command timeouts, reconnects and blocking reads
// need real time, leases expire only when a test advances the clock.
#include <memory>

#include "absl/synchronization/notification.h"
#include "server/broker/redis/redis_broker.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/conformance/conformance_backend.h"
#include "tests/conformance/conformance_suite.h"
#include "tests/testing/redis_server.h"

namespace switchboard::testing {
namespace {

// The redis-server every test of this run shares; killed at exit. Null
// (and a test failure) when it cannot start.
RedisServer* SharedRedisServer() {
  static const std::unique_ptr<RedisServer> server = [] {
    absl::StatusOr<std::unique_ptr<RedisServer>> started = RedisServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << "cannot start redis-server: " << started.status();
      return std::unique_ptr<RedisServer>();
    }
    return *std::move(started);
  }();
  return server.get();
}

class RedisBackend final : public ConformanceBackend {
 public:
  RedisBackend() : io_("conformance-io", common::RealClock::Get()) { io_.Start(); }

  std::unique_ptr<broker::Broker> CreateBroker(broker::TopicPolicies policies,
                                               event::Dispatcher& dispatcher,
                                               broker::BrokerObserver& observer) override {
    RedisServer* redis = SharedRedisServer();
    if (redis == nullptr) return nullptr;
    EXPECT_EQ(redis->Command({"FLUSHALL"}).value_or("failed"), "OK");
    broker::RedisBrokerOptions options;
    options.connection.port = static_cast<uint16_t>(redis->port());
    options.enable_sync_barrier = true;  // Quiesce().
    auto broker = std::make_unique<broker::RedisBroker>(
        dispatcher, io_, std::move(options), std::move(policies), observer, connection_observer_);
    // Tests start talking at once: wait until the connections are up.
    auto serving = std::make_shared<absl::Notification>();
    broker->WatchHealth([serving](bool now_serving) {
      if (now_serving && !serving->HasBeenNotified()) serving->Notify();
    });
    EXPECT_TRUE(serving->WaitForNotificationWithTimeout(kWaitTimeout)) << "redis never ready";
    broker_ = broker.get();
    return broker;
  }

  // Sync() waits for every pending command, interrupts blocking reads so
  // entries waiting for them are read, and pushes a marker through the
  // subscriber connection, so every message Redis already sent has arrived.
  void Quiesce() override {
    absl::Notification done;
    broker_->Sync([&done] { done.Notify(); });
    done.WaitForNotification();
  }

  // XADD MAXLEN ~ trims whole stream nodes (100 entries by default).
  uint64_t retention_slack() const override { return 100; }
  bool keys_need_partitions() const override { return true; }
  bool keeps_history() const override { return true; }

 private:
  event::DispatcherImpl io_;
  broker::redis::NullConnectionObserver connection_observer_;
  broker::RedisBroker* broker_ = nullptr;
};

std::unique_ptr<ConformanceBackend> MakeRedisBackend() { return std::make_unique<RedisBackend>(); }

INSTANTIATE_TEST_SUITE_P(Redis, BrokerConformanceTest,
                         ::testing::Values(BackendUnderTest{"redis", &MakeRedisBackend}),
                         BackendName<::testing::TestParamInfo<BackendUnderTest>>);

}  // namespace
}  // namespace switchboard::testing
