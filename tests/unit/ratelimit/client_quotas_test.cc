#include "server/ratelimit/client_quotas.h"

#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/event/dispatcher_impl.h"
#include "server/ratelimit/global_limiter.h"
#include "tests/testing/fake_lease_service.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::ratelimit {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;

class ClientQuotasTest : public ::testing::Test {
 protected:
  ClientQuotasTest() : dispatcher_("quotas-test", clock_) { dispatcher_.Start(); }
  ~ClientQuotasTest() override {
    Run([&] { quotas_.reset(); });
  }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(dispatcher_, std::move(fn)); }

  void Create(const absl::flat_hash_map<std::string, double>& rates,
              ClientQuotas::LimiterFactory make_limiter = nullptr) {
    Run([&] {
      quotas_ = std::make_unique<ClientQuotas>(dispatcher_, rates, std::move(make_limiter));
    });
  }

  // A quota answered at once (local quotas always are).
  AdmissionResult Acquire(absl::string_view client_id) {
    std::optional<AdmissionResult> result;
    Run([&] { result = quotas_->TryAcquire(client_id, [](AdmissionResult) { FAIL(); }); });
    EXPECT_TRUE(result.has_value());
    return result.value_or(AdmissionResult{absl::InternalError("no answer")});
  }

  // A quota limiter shared with the fleet through service_.
  ClientQuotas::LimiterFactory GlobalQuotas() {
    return [this](absl::string_view client_id, double rate, double burst) {
      return std::make_unique<GlobalLimiter>(
          dispatcher_, service_,
          SharedLimit{"client", std::string(client_id), rate, burst, AimdOptions()}, observer_);
    };
  }

  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  // Dispatcher thread only; outlive quotas_.
  testing::FakeLeaseService service_;
  NullGlobalLimitObserver observer_;
  std::unique_ptr<ClientQuotas> quotas_;
};

TEST_F(ClientQuotasTest, AClientWithinItsQuotaPasses) {
  Create({{"limited", 2}, {"unlimited", 0}});
  // A second's worth at once, then one every 500 ms.
  EXPECT_THAT(Acquire("limited").status, IsOk());
  EXPECT_THAT(Acquire("limited").status, IsOk());
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_THAT(Acquire("limited").status, IsOk());
}

TEST_F(ClientQuotasTest, ACallOverTheQuotaIsRefusedWithTheWait) {
  Create({{"limited", 2}});
  ASSERT_THAT(Acquire("limited").status, IsOk());
  ASSERT_THAT(Acquire("limited").status, IsOk());
  clock_.Advance(absl::Milliseconds(100));
  const AdmissionResult refused = Acquire("limited");
  EXPECT_THAT(refused.status,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("client limited")));
  EXPECT_EQ(refused.retry_after, absl::Milliseconds(400));
  // A refusal takes nothing from the quota.
  clock_.Advance(absl::Milliseconds(400));
  EXPECT_THAT(Acquire("limited").status, IsOk());
}

TEST_F(ClientQuotasTest, ClientsWithoutAQuotaAreNeverRefused) {
  Create({{"unlimited", 0}});
  for (int i = 0; i < 1000; ++i) {
    ASSERT_THAT(Acquire("unlimited").status, IsOk());
    ASSERT_THAT(Acquire("unconfigured").status, IsOk());
  }
}

TEST_F(ClientQuotasTest, AQuotaBelowOneRequestPerSecondStillAllowsOneAtATime) {
  Create({{"slow", 0.5}});
  EXPECT_THAT(Acquire("slow").status, IsOk());
  EXPECT_EQ(Acquire("slow").retry_after, absl::Seconds(2));
}

TEST_F(ClientQuotasTest, AGlobalQuotaAnswersOnceItsLeaseComesBack) {
  Create({{"fleet", 10}}, GlobalQuotas());
  std::vector<absl::StatusCode> answers;
  Run([&] {
    std::optional<AdmissionResult> now = quotas_->TryAcquire(
        "fleet", [&](AdmissionResult result) { answers.push_back(result.status.code()); });
    EXPECT_FALSE(now.has_value());  // Waits for the lease.
    ASSERT_EQ(service_.requests().size(), 1u);
    EXPECT_EQ(service_.requests()[0].limit.key(), "client:fleet");
  });
  Run([&] { EXPECT_TRUE(answers.empty()); });  // Never before the lease.
  Run([&] { service_.Grant(0, /*tokens=*/1, clock_.Now(), absl::Milliseconds(100)); });
  Run([&] { EXPECT_THAT(answers, ::testing::ElementsAre(absl::StatusCode::kOk)); });
}

TEST_F(ClientQuotasTest, AGlobalQuotaWhoseLeaseIsAllInTheFutureRefusesWithTheWait) {
  Create({{"fleet", 10}}, GlobalQuotas());
  std::vector<AdmissionResult> answers;
  Run([&] {
    EXPECT_FALSE(
        quotas_->TryAcquire("fleet", [&](AdmissionResult result) { answers.push_back(result); })
            .has_value());
  });
  // The fleet spent the client's quota: its next token is 300 ms away.
  Run([&] {
    service_.Grant(0, /*tokens=*/1, clock_.Now() + absl::Milliseconds(300),
                   absl::Milliseconds(100));
  });
  Run([&] {
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_THAT(answers[0].status, StatusIs(absl::StatusCode::kResourceExhausted));
    EXPECT_EQ(answers[0].retry_after, absl::Milliseconds(300));
  });
}

}  // namespace
}  // namespace switchboard::ratelimit
