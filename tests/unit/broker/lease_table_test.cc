#include "server/broker/lease_table.h"

#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::ElementsAre;

constexpr uint64_t kSession = 1;
constexpr uint64_t kOtherSession = 2;

class LeaseTableTest : public ::testing::Test {
 protected:
  LeaseTableTest() : dispatcher_("lease-test", clock_) { dispatcher_.Start(); }

  ~LeaseTableTest() override {
    RunOnDispatcher([&] { table_.reset(); });
  }

  void RunOnDispatcher(absl::AnyInvocable<void()> fn) {
    testing::RunOnDispatcher(dispatcher_, std::move(fn));
  }

  void CreateTable() {
    RunOnDispatcher([&] {
      table_ = std::make_unique<LeaseTable>(dispatcher_, [this](Lease lease) {
        expired_.push_back(lease.message_id);
        if (on_expired_) on_expired_(lease);
      });
    });
  }

  std::string Grant(uint64_t session, std::string message_id, absl::Duration deadline) {
    std::string ack_id;
    RunOnDispatcher([&] {
      ack_id = table_->Grant(Lease{session, std::move(message_id), 1, clock_.Now() + deadline});
    });
    return ack_id;
  }

  absl::StatusOr<Lease> Release(const std::string& ack_id, uint64_t session) {
    absl::StatusOr<Lease> lease = absl::UnknownError("not run");
    RunOnDispatcher([&] { lease = table_->Release(ack_id, session); });
    return lease;
  }

  // Moves time, then waits for the dispatcher to fire due timers.
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    RunOnDispatcher([] {});
  }

  std::vector<std::string> Expired() {
    std::vector<std::string> expired;
    RunOnDispatcher([&] { expired = expired_; });
    return expired;
  }

  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  std::unique_ptr<LeaseTable> table_;
  // Dispatcher thread only.
  std::vector<std::string> expired_;
  std::function<void(const Lease&)> on_expired_;
};

TEST_F(LeaseTableTest, IssuesUniqueAckIdsAndCountsLeasesPerSession) {
  CreateTable();
  const std::string a = Grant(kSession, "1-0", absl::Seconds(30));
  const std::string b = Grant(kSession, "1-1", absl::Seconds(30));
  const std::string c = Grant(kOtherSession, "1-2", absl::Seconds(30));
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  RunOnDispatcher([&] {
    EXPECT_EQ(table_->HeldBy(kSession), 2u);
    EXPECT_EQ(table_->HeldBy(kOtherSession), 1u);
    EXPECT_EQ(table_->HeldBy(3), 0u);
  });
}

TEST_F(LeaseTableTest, ReleaseReturnsTheLeaseOnce) {
  CreateTable();
  const std::string ack_id = Grant(kSession, "7-0", absl::Seconds(30));
  absl::StatusOr<Lease> lease = Release(ack_id, kSession);
  ASSERT_THAT(lease, IsOk());
  EXPECT_EQ(lease->message_id, "7-0");
  EXPECT_EQ(lease->session, kSession);
  EXPECT_THAT(Release(ack_id, kSession), StatusIs(absl::StatusCode::kNotFound));
  RunOnDispatcher([&] { EXPECT_EQ(table_->HeldBy(kSession), 0u); });
}

TEST_F(LeaseTableTest, RejectsMalformedAckIds) {
  CreateTable();
  const std::string valid = Grant(kSession, "1-0", absl::Seconds(30));
  const std::string instance = valid.substr(0, valid.find('.'));
  for (const std::string& malformed :
       {std::string(), std::string("garbage"), std::string("1-0"), instance, instance + ".",
        instance + ".x", instance + ". 1", instance + ".+1", instance + ".1.2",
        std::string("0x") + instance.substr(2) + ".1", instance.substr(1) + ".1", instance + "0.1",
        instance + ".99999999999999999999999"}) {
    EXPECT_THAT(Release(malformed, kSession), StatusIs(absl::StatusCode::kInvalidArgument))
        << "'" << malformed << "'";
  }
  EXPECT_THAT(Release(valid, kSession), IsOk());
}

TEST_F(LeaseTableTest, AckIdsFromAnotherTableAreUnknown) {
  CreateTable();
  const std::string ack_id = Grant(kSession, "1-0", absl::Seconds(30));
  std::string foreign = ack_id;
  foreign[0] = foreign[0] == '0' ? '1' : '0';  // Same lease number, other instance.
  EXPECT_THAT(Release(foreign, kSession), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Release(ack_id, kSession), IsOk());
}

TEST_F(LeaseTableTest, OnlyTheHoldingSessionMaySettle) {
  CreateTable();
  const std::string ack_id = Grant(kSession, "1-0", absl::Seconds(30));
  EXPECT_THAT(Release(ack_id, kOtherSession), StatusIs(absl::StatusCode::kPermissionDenied));
  RunOnDispatcher([&] {
    EXPECT_THAT(table_->Extend(ack_id, kOtherSession, clock_.Now()),
                StatusIs(absl::StatusCode::kPermissionDenied));
  });
  EXPECT_THAT(Release(ack_id, kSession), IsOk());
}

TEST_F(LeaseTableTest, ExpiresLeasesWhenTheirDeadlinePasses) {
  CreateTable();
  const std::string first = Grant(kSession, "1-0", absl::Seconds(10));
  Grant(kOtherSession, "1-1", absl::Seconds(20));
  Advance(absl::Seconds(9));
  EXPECT_TRUE(Expired().empty());
  Advance(absl::Seconds(1));
  EXPECT_THAT(Expired(), ElementsAre("1-0"));
  EXPECT_THAT(Release(first, kSession), StatusIs(absl::StatusCode::kNotFound));
  Advance(absl::Seconds(10));
  EXPECT_THAT(Expired(), ElementsAre("1-0", "1-1"));
  RunOnDispatcher([&] {
    EXPECT_EQ(table_->HeldBy(kSession), 0u);
    EXPECT_EQ(table_->HeldBy(kOtherSession), 0u);
  });
}

TEST_F(LeaseTableTest, ExtendMovesTheDeadlineBothWays) {
  CreateTable();
  const std::string later = Grant(kSession, "1-0", absl::Seconds(10));
  const std::string sooner = Grant(kSession, "1-1", absl::Seconds(10));
  RunOnDispatcher([&] {
    EXPECT_THAT(table_->Extend(later, kSession, clock_.Now() + absl::Seconds(60)), IsOk());
    EXPECT_THAT(table_->Extend(sooner, kSession, clock_.Now() + absl::Seconds(5)), IsOk());
  });
  Advance(absl::Seconds(5));
  EXPECT_THAT(Expired(), ElementsAre("1-1"));
  Advance(absl::Seconds(54));
  EXPECT_THAT(Expired(), ElementsAre("1-1"));
  Advance(absl::Seconds(1));
  EXPECT_THAT(Expired(), ElementsAre("1-1", "1-0"));
}

TEST_F(LeaseTableTest, ReleasedLeasesNeverExpire) {
  CreateTable();
  const std::string ack_id = Grant(kSession, "1-0", absl::Seconds(10));
  Grant(kSession, "1-1", absl::Seconds(10));
  ASSERT_THAT(Release(ack_id, kSession), IsOk());
  std::vector<Lease> released;
  RunOnDispatcher([&] { released = table_->ReleaseSession(kSession); });
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].message_id, "1-1");
  Advance(absl::Seconds(60));
  EXPECT_TRUE(Expired().empty());
}

TEST_F(LeaseTableTest, ReleaseSessionReturnsItsLeasesInGrantOrder) {
  CreateTable();
  Grant(kSession, "1-0", absl::Seconds(30));
  Grant(kOtherSession, "1-1", absl::Seconds(30));
  Grant(kSession, "1-2", absl::Seconds(10));
  Grant(kSession, "1-3", absl::Seconds(20));
  std::vector<std::string> released;
  RunOnDispatcher([&] {
    for (const Lease& lease : table_->ReleaseSession(kSession)) {
      released.push_back(lease.message_id);
    }
    EXPECT_EQ(table_->HeldBy(kSession), 0u);
    EXPECT_EQ(table_->HeldBy(kOtherSession), 1u);
    EXPECT_TRUE(table_->ReleaseSession(kSession).empty());
  });
  EXPECT_THAT(released, ElementsAre("1-0", "1-2", "1-3"));
}

TEST_F(LeaseTableTest, ExpiryHandlerMayGrantNewLeases) {
  CreateTable();
  RunOnDispatcher([&] {
    on_expired_ = [this](const Lease& lease) {
      if (lease.message_id == "1-0") {
        table_->Grant(Lease{kSession, "1-0-again", 2, clock_.Now() + absl::Seconds(10)});
      }
    };
  });
  Grant(kSession, "1-0", absl::Seconds(10));
  Advance(absl::Seconds(10));
  EXPECT_THAT(Expired(), ElementsAre("1-0"));
  RunOnDispatcher([&] { EXPECT_EQ(table_->HeldBy(kSession), 1u); });
  Advance(absl::Seconds(10));
  EXPECT_THAT(Expired(), ElementsAre("1-0", "1-0-again"));
}

}  // namespace
}  // namespace switchboard::broker
