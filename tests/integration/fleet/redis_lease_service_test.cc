// RedisLeaseService against a real redis-server: two services on one Redis
// stand for two replicas. The shared schedule never gives both the same
// time, a throttle reported by one reaches the other as a pause notice,
// membership counts both, and a script cache that Redis lost (SCRIPT FLUSH,
// as after a restart) is filled again transparently (EVALSHA, then EVAL on
// NOSCRIPT).
#include "server/fleet/redis_lease_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/broker/redis/connection.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::fleet {
namespace {

using ::switchboard::testing::IsOk;

class NullFleetObserver final : public FleetObserver {
 public:
  void OnLiveReplicas(uint32_t) override {}
};

// One "replica": a dispatcher and the service on it.
class Replica {
 public:
  // On database `db` of `redis`: each test has its own, so replicas of an
  // earlier test are not counted.
  Replica(const testing::RedisServer& redis, uint32_t db, std::string id)
      : io_("lease-" + id, common::RealClock::Get()) {
    io_.Start();
    FleetOptions options;
    options.connection.port = static_cast<uint16_t>(redis.port());
    options.connection.db = db;
    options.replica_id = std::move(id);
    options.heartbeat_interval = absl::Milliseconds(100);
    options.replica_ttl = absl::Seconds(1);
    options.timeout = absl::Seconds(2);  // A loaded machine is not a fault here.
    Run([&] {
      service_ =
          std::make_unique<RedisLeaseService>(io_, options, connection_observer_, fleet_observer_);
      service_->Start();
    });
  }
  ~Replica() {
    Run([&] { service_.reset(); });
    io_.Shutdown();
  }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(io_, std::move(fn)); }

  // Leases `tokens` of `limit`, waiting for the answer; retries while the
  // connection is still coming up.
  absl::StatusOr<ratelimit::Lease> Lease(const ratelimit::SharedLimit& limit, uint32_t tokens) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (true) {
      absl::Notification done;
      std::optional<absl::StatusOr<ratelimit::Lease>> result;
      Run([&] {
        ratelimit::LeaseRequest request;
        request.tokens = tokens;
        service_->Lease(limit, request, [&](absl::StatusOr<ratelimit::Lease> lease) {
          result = std::move(lease);
          done.Notify();
        });
      });
      done.WaitForNotification();
      if (result->ok() || result->status().code() != absl::StatusCode::kUnavailable ||
          absl::Now() > deadline) {
        return *std::move(result);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  RedisLeaseService& service() { return *service_; }

 private:
  event::DispatcherImpl io_;
  broker::redis::NullConnectionObserver connection_observer_;
  NullFleetObserver fleet_observer_;
  std::unique_ptr<RedisLeaseService> service_;
};

ratelimit::SharedLimit Limit(std::string name) {
  ratelimit::SharedLimit limit;
  limit.kind = "upstream";
  limit.name = std::move(name);
  limit.rate = 100;  // A slot every 10 ms.
  limit.burst = 1;
  return limit;
}

class RedisLeaseServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> redis = testing::RedisServer::Start();
    ASSERT_THAT(redis, IsOk());
    redis_ = (*redis).release();
  }
  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(redis_, nullptr);
    ASSERT_LT(next_db_, 16u);
    db_ = next_db_++;
  }

  static inline testing::RedisServer* redis_ = nullptr;
  static inline uint32_t next_db_ = 1;
  uint32_t db_ = 0;
};

TEST_F(RedisLeaseServiceTest, TwoReplicasNeverGetTheSameSlots) {
  Replica a(*redis_, db_, "a");
  Replica b(*redis_, db_, "b");
  const ratelimit::SharedLimit limit = Limit("disjoint");
  absl::StatusOr<ratelimit::Lease> first = a.Lease(limit, 3);
  absl::StatusOr<ratelimit::Lease> second = b.Lease(limit, 3);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  ASSERT_EQ(first->tokens, 3u);
  ASSERT_EQ(second->tokens, 3u);
  EXPECT_EQ(first->interval, absl::Milliseconds(10));
  // b's first slot comes after a's last, one interval (10 ms) on. Each
  // lease is converted to this process's clock with an offset measured over
  // a round trip, which a loaded machine stretches to milliseconds: half an
  // interval of slack, while a shared slot would show a gap of 0 or less.
  const absl::Duration gap = second->Slot(0) - first->Slot(2);
  EXPECT_GE(gap, absl::Milliseconds(5)) << gap;
  // A lease reaches at most the horizon (50 ms) ahead: on an idle limit, 6
  // slots of 10 ms at most (the first now).
  absl::StatusOr<ratelimit::Lease> greedy = a.Lease(Limit("greedy"), 100);
  ASSERT_THAT(greedy, IsOk());
  ASSERT_GE(greedy->tokens, 1u);
  EXPECT_LE(greedy->tokens, 6u);
  EXPECT_LE(greedy->Slot(greedy->tokens - 1) - absl::Now(), absl::Milliseconds(60));
}

TEST_F(RedisLeaseServiceTest, AThrottleReportedByOneReplicaPausesTheOther) {
  Replica a(*redis_, db_, "a");
  Replica b(*redis_, db_, "b");
  const ratelimit::SharedLimit limit = Limit("throttled");
  absl::Notification paused;
  std::optional<ratelimit::PauseNotice> notice;
  b.Run([&] {
    b.service().Watch(limit, [&](ratelimit::PauseNotice pause) {
      if (notice.has_value()) return;
      notice = pause;
      paused.Notify();
    });
  });
  ASSERT_THAT(a.Lease(limit, 1), IsOk());  // Both connections are up.
  ASSERT_THAT(b.Lease(limit, 1), IsOk());
  const absl::Time reported = absl::Now();
  a.Run([&] { a.service().ReportThrottle(limit, absl::Seconds(1)); });
  ASSERT_TRUE(paused.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NEAR(absl::ToDoubleSeconds(notice->paused_until - reported), 1.0, 0.2);
  EXPECT_EQ(notice->rate, 50);  // Halved (AIMD), once.
  // Leases during the pause give slots after it.
  absl::StatusOr<ratelimit::Lease> lease = b.Lease(limit, 1);
  ASSERT_THAT(lease, IsOk());
  EXPECT_GE(lease->paused_until, notice->paused_until - absl::Milliseconds(1));
  b.Run([&] { b.service().Unwatch(limit); });
}

TEST_F(RedisLeaseServiceTest, MembershipCountsEveryLiveReplica) {
  Replica a(*redis_, db_, "member-a");
  Replica b(*redis_, db_, "member-b");
  absl::StatusOr<ratelimit::Lease> lease = a.Lease(Limit("members"), 1);
  ASSERT_THAT(lease, IsOk());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (lease->live_replicas < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    lease = a.Lease(Limit("members"), 1);
    ASSERT_THAT(lease, IsOk());
  }
  EXPECT_EQ(lease->live_replicas, 2u);
}

TEST_F(RedisLeaseServiceTest, ALostScriptCacheIsRefilled) {
  Replica a(*redis_, db_, "a");
  const ratelimit::SharedLimit limit = Limit("flushed");
  ASSERT_THAT(a.Lease(limit, 1), IsOk());
  ASSERT_THAT(redis_->Command({"SCRIPT", "FLUSH"}), IsOk());
  absl::StatusOr<ratelimit::Lease> lease = a.Lease(limit, 1);
  ASSERT_THAT(lease, IsOk());
  EXPECT_EQ(lease->tokens, 1u);
  // And by SHA again after that.
  EXPECT_THAT(a.Lease(limit, 1), IsOk());
}

}  // namespace
}  // namespace switchboard::fleet
