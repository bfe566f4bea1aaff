// Runs the broker conformance suite against the embedded memory broker.
#include "absl/synchronization/notification.h"
#include "server/broker/memory/memory_broker.h"
#include "tests/conformance/conformance_backend.h"
#include "tests/conformance/conformance_suite.h"

namespace switchboard::testing {
namespace {

class MemoryBackend final : public ConformanceBackend {
 public:
  std::unique_ptr<broker::Broker> CreateBroker(broker::TopicPolicies policies,
                                               event::Dispatcher& dispatcher,
                                               broker::BrokerObserver& observer) override {
    dispatcher_ = &dispatcher;
    return std::make_unique<broker::MemoryBroker>(dispatcher, std::move(policies), observer);
  }

  // The memory broker does all the work of a call (or of a timer) in the one
  // closure it runs for it, so a round trip through the dispatcher suffices.
  void Quiesce() override {
    absl::Notification done;
    dispatcher_->Post([&done] { done.Notify(); });
    done.WaitForNotification();
  }

  uint64_t retention_slack() const override { return 0; }
  bool keys_need_partitions() const override { return false; }
  bool keeps_history() const override { return true; }

 private:
  event::Dispatcher* dispatcher_ = nullptr;
};

std::unique_ptr<ConformanceBackend> MakeMemoryBackend() {
  return std::make_unique<MemoryBackend>();
}

INSTANTIATE_TEST_SUITE_P(Memory, BrokerConformanceTest,
                         ::testing::Values(BackendUnderTest{"memory", &MakeMemoryBackend}),
                         BackendName<::testing::TestParamInfo<BackendUnderTest>>);

}  // namespace
}  // namespace switchboard::testing
