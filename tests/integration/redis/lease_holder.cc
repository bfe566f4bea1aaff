// redis_lease_holder: a Switchboard stand-in for the "Switchboard killed"
// fault test. Joins a consumer group through RedisBroker, takes `count`
// leases, prints "holding <id> <id> ..." once it has them, and holds them
// until it is killed.
//
//   redis_lease_holder <redis port> <topic> <group> <count> <ack deadline ms>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/broker/redis/redis_broker.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"

namespace switchboard {
namespace {

class HoldingSink final : public broker::ConsumerSink {
 public:
  explicit HoldingSink(size_t count) : count_(count) {}

  void OnDeliveries(std::vector<broker::Delivery> deliveries) override {
    absl::MutexLock lock(&mu_);
    for (const broker::Delivery& delivery : deliveries) ids_.push_back(delivery.message.id);
    if (ids_.size() >= count_ && !full_.HasBeenNotified()) full_.Notify();
  }
  void OnClosed(absl::Status) override {}

  std::vector<std::string> WaitUntilFull() {
    full_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return ids_;
  }

 private:
  const size_t count_;
  absl::Mutex mu_;
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mu_);
  absl::Notification full_;
};

int Run(int argc, char** argv) {
  uint32_t port = 0;
  uint32_t count = 0;
  int64_t ack_deadline_ms = 0;
  if (argc != 6 || !absl::SimpleAtoi(argv[1], &port) || !absl::SimpleAtoi(argv[4], &count) ||
      !absl::SimpleAtoi(argv[5], &ack_deadline_ms)) {
    std::fprintf(stderr, "usage: %s <port> <topic> <group> <count> <ack deadline ms>\n", argv[0]);
    return 2;
  }
  const std::string topic = argv[2];
  broker::TopicDeclaration declaration{topic, {}};
  declaration.policy.ack_deadline = absl::Milliseconds(ack_deadline_ms);

  event::DispatcherImpl dispatcher("lease-holder", common::RealClock::Get());
  dispatcher.Start();
  broker::RedisBrokerOptions options;
  options.connection.port = static_cast<uint16_t>(port);
  broker::NullBrokerObserver observer;
  broker::redis::NullConnectionObserver connection_observer;
  broker::RedisBroker broker(dispatcher, dispatcher, options, broker::TopicPolicies({declaration}),
                             observer, connection_observer);
  absl::Notification serving;
  broker.WatchHealth([&serving](bool now_serving) {
    if (now_serving && !serving.HasBeenNotified()) serving.Notify();
  });
  serving.WaitForNotification();
  HoldingSink sink(count);
  absl::StatusOr<std::unique_ptr<broker::ConsumerSession>> session =
      broker.Consume({topic, argv[3], count, absl::ZeroDuration()}, sink);
  if (!session.ok()) {
    std::fprintf(stderr, "consume failed: %s\n", session.status().ToString().c_str());
    return 1;
  }
  std::printf("holding %s\n", absl::StrJoin(sink.WaitUntilFull(), " ").c_str());
  std::fflush(stdout);
  while (true) pause();
}

}  // namespace
}  // namespace switchboard

int main(int argc, char** argv) { return switchboard::Run(argc, argv); }
