#include "server/ratelimit/client_quotas.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::ratelimit {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::HasSubstr;

class ClientQuotasTest : public ::testing::Test {
 protected:
  common::SimulatedClock clock_;
  ClientQuotas quotas_{{{"limited", 2}, {"unlimited", 0}}, clock_};
};

TEST_F(ClientQuotasTest, AClientWithinItsQuotaPasses) {
  // A second's worth at once, then one every 500 ms.
  EXPECT_THAT(quotas_.TryAcquire("limited").status, IsOk());
  EXPECT_THAT(quotas_.TryAcquire("limited").status, IsOk());
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_THAT(quotas_.TryAcquire("limited").status, IsOk());
}

TEST_F(ClientQuotasTest, ACallOverTheQuotaIsRefusedWithTheWait) {
  ASSERT_THAT(quotas_.TryAcquire("limited").status, IsOk());
  ASSERT_THAT(quotas_.TryAcquire("limited").status, IsOk());
  clock_.Advance(absl::Milliseconds(100));
  const AdmissionResult refused = quotas_.TryAcquire("limited");
  EXPECT_THAT(refused.status,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("client limited")));
  EXPECT_EQ(refused.retry_after, absl::Milliseconds(400));
  // A refusal takes nothing from the quota.
  clock_.Advance(absl::Milliseconds(400));
  EXPECT_THAT(quotas_.TryAcquire("limited").status, IsOk());
}

TEST_F(ClientQuotasTest, ClientsWithoutAQuotaAreNeverRefused) {
  for (int i = 0; i < 1000; ++i) {
    ASSERT_THAT(quotas_.TryAcquire("unlimited").status, IsOk());
    ASSERT_THAT(quotas_.TryAcquire("unconfigured").status, IsOk());
  }
}

TEST_F(ClientQuotasTest, AQuotaBelowOneRequestPerSecondStillAllowsOneAtATime) {
  ClientQuotas quotas({{"slow", 0.5}}, clock_);
  EXPECT_THAT(quotas.TryAcquire("slow").status, IsOk());
  EXPECT_EQ(quotas.TryAcquire("slow").retry_after, absl::Seconds(2));
}

TEST_F(ClientQuotasTest, ConcurrentCallersShareOneQuotaExactly) {
  ClientQuotas quotas({{"shared", 100}}, clock_);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (quotas.TryAcquire("shared").status.ok()) ++admitted;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // The clock stands still: exactly the burst, a second's worth, passes.
  EXPECT_EQ(admitted.load(), 100);
}

}  // namespace
}  // namespace switchboard::ratelimit
