// MemoryBroker: the embedded broker, Switchboard's default backend.
//
// Implements all of DESIGN.md §2 in process memory. Durable topics are
// streams with consumer groups, leases, redelivery, dead letters, credits and
// bounded retention; ephemeral topics fan out to every subscriber through a
// bounded buffer each. Nothing survives a restart. The server wiring creates
// one for `--broker=memory://`; tests/conformance runs the broker suite
// against it.
//
// Threading: all state lives on one dispatcher and is touched only on its
// thread. Public methods check what they can at once (topic kinds), post the
// rest to the dispatcher and return; every callback runs on the dispatcher
// thread, never inline. Time (message ids, publish times, lease deadlines)
// comes from the dispatcher's clock, so under a SimulatedClock leases expire
// when a test advances time, without sleeping.
//
// Lifetime: the dispatcher must keep running until Shutdown() returns, and
// `observer` must outlive the broker. Handles follow broker.h: the broker
// outlives them; each may be destroyed on any thread, but never from inside
// one of its own callbacks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "server/broker/broker.h"
#include "server/broker/state_gate.h"
#include "server/broker/topic_policy.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker {

// What the memory broker may hold, all topics together. A publish beyond
// either fails with RESOURCE_EXHAUSTED naming the limit; dead letters are
// kept beyond them (they move messages the broker already holds).
struct MemoryLimits {
  // Bytes retained by durable topics (memory::RetainedBytes per message),
  // after each topic's own retention (max_len, max_bytes) trimmed.
  uint64_t max_memory_bytes = uint64_t{1} << 30;
  // Durable topics, each created on its first publish or consume.
  uint32_t max_topics = 10000;
};

class MemoryBroker final : public Broker {
 public:
  MemoryBroker(event::Dispatcher& dispatcher, TopicPolicies policies, BrokerObserver& observer,
               MemoryLimits limits = {});
  ~MemoryBroker() override;  // Calls Shutdown().

  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  void Publish(std::string topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) override;
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view topic,
                                                          SubscriberSink& sink) override;
  absl::StatusOr<std::unique_ptr<ConsumerSession>> Consume(ConsumeOptions options,
                                                           ConsumerSink& sink) override;

  // Reports serving=true while the broker runs (false once shut down); the
  // memory broker never loses its backend.
  void WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) override;

  // Runs every call already accepted, ends subscriptions and sessions still
  // open with UNAVAILABLE, and frees all state. Later publishes, subscribes
  // and consumes fail with UNAVAILABLE. Blocks until done, so it must not be
  // called on the dispatcher thread. Idempotent.
  void Shutdown() override;

 private:
  class State;

  event::Dispatcher& dispatcher_;
  const TopicPolicies policies_;  // Read from any thread.
  // Used on the dispatcher thread only; freed there by Shutdown().
  std::unique_ptr<State> state_;
  StateGate<State> gate_;
};

}  // namespace switchboard::broker
