// ConformanceBackend: how the broker conformance suite gets a backend.
//
// durable_topics_test.cc and ephemeral_topics_test.cc state every behaviour
// of DESIGN.md §2 once, as a parameterized suite over BackendUnderTest. Each
// backend adds one file that implements this interface and instantiates the
// suite with INSTANTIATE_TEST_SUITE_P(<Name>, BrokerConformanceTest,
// Values(BackendUnderTest{...}), BackendName): memory_backend.cc and
// redis_backend.cc. Tests never name a backend.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "server/broker/broker.h"
#include "server/broker/topic_policy.h"
#include "server/event/dispatcher.h"

namespace switchboard::testing {

class ConformanceBackend {
 public:
  virtual ~ConformanceBackend() = default;

  // Creates a broker with `policies` whose callbacks and timers run on
  // `dispatcher` (and so on its SimulatedClock), reporting to `observer`.
  // Called once per test, which expects a broker that stores nothing yet:
  // a backend with external state must start from an empty one. The test
  // shuts the broker down and destroys it before `dispatcher` and `observer`.
  virtual std::unique_ptr<broker::Broker> CreateBroker(broker::TopicPolicies policies,
                                                       event::Dispatcher& dispatcher,
                                                       broker::BrokerObserver& observer) = 0;

  // Waits until the broker has finished all the work that earlier calls and
  // clock advances caused (deliveries, expiries, fan-out), so a test can
  // assert that something did NOT happen.
  virtual void Quiesce() = 0;

  // How many entries beyond a durable topic's max_len retention may keep:
  // 0 for exact trimming, more for approximate (Redis `MAXLEN ~`).
  virtual uint64_t retention_slack() const = 0;

  // Whether the backend keeps ordering keys only on topics declared with
  // ordering_partitions (Redis), refusing keyed messages elsewhere with
  // FAILED_PRECONDITION. The suite's keyed topics have partitions.
  virtual bool keys_need_partitions() const = 0;

  // Whether a consumer group that did not exist reads the topic's retained
  // history (memory, Redis), or only what is published once it exists
  // (RabbitMQ: a group is a queue, and a queue gets only the messages routed
  // to it; TopicPolicy::groups declares groups at startup).
  virtual bool keeps_history() const = 0;
};

// The suite's parameter: a backend's name and how to make one.
struct BackendUnderTest {
  const char* name;  // Test name suffix: letters, digits and '_' only.
  std::unique_ptr<ConformanceBackend> (*make)();
};

// Names instantiated tests ".../<name>", and prints the parameter as the name,
// so test names stay the same from run to run.
inline void PrintTo(const BackendUnderTest& backend, std::ostream* os) { *os << backend.name; }
template <typename ParamInfo>
std::string BackendName(const ParamInfo& info) {
  return info.param.name;
}

}  // namespace switchboard::testing
