// AmqpBroker: the RabbitMQ backend of the Broker interface (issue 16;
// DESIGN.md §2, §3). The server wiring creates one for
// `--broker=amqp://user:password@host:port/vhost`; tests/conformance runs the
// broker suite against it.
//
// Topology (declared by Switchboard, replayed on every reconnect):
//   * durable topics: one durable direct exchange "<prefix>.durable",
//     routing key = topic. Each consumer group is a durable quorum queue
//     "<prefix>/<topic>/<group>" bound to it with its topic
//     (queue_source.h), its x-max-length and x-max-length-bytes the topic's
//     retention. Groups see what was published after their queue exists:
//     RabbitMQ keeps no history for a group that does not exist yet, so the
//     groups of TopicPolicy::groups are declared at startup, the others on
//     first consume;
//   * dead letters: published by Switchboard to the topic "<topic>:dlq"
//     with the same attributes as on the other backends
//     (switchboard.delivery_attempts, .original_id, .original_topic), then
//     the original is acked;
//   * ephemeral topics: one durable topic exchange "<prefix>.ephemeral",
//     routing key = topic, and one exclusive auto-delete queue
//     "<prefix>.subscribers.<host>-<pid>-<random>" per Switchboard process, bound per subscribed
//     topic or prefix (BindingKeyFor) while a local stream subscribes to it, from which the
//     shared SubscriberSet fans out to the local subscriber streams.
// Publishes wait for publisher confirms before they complete; message ids
// are Switchboard's (ReplicaMessageIds) and travel in basic.properties
// message_id, attributes in headers (message_codec.h).
//
// Connections: exactly two, each with its I/O thread (amqp_connection.h):
// switchboard:publish (every publish, on one confirm channel) and
// switchboard:consume (group queues and the subscriber queue: one channel
// per consumer, at most AmqpConnection::kMaxConsumers, plus the two every
// connection opens, for declarations and publishes). Leases, credits and redelivery are the
// consumer-group core's (consumer_groups.h), held in this process.
//
// Differences from Redis, on purpose and documented in the README: no
// history before a group exists; idempotent publish (dedup_id) remembers ids
// per process, not across replicas; a nack's delay is not recorded in
// RabbitMQ (a replica that dies meanwhile lets it go at once); ordering
// keys are kept per process, not across replicas.
//
// Failure: while either connection is down, Publish fails at once with
// UNAVAILABLE, Subscribe and Consume refuse with UNAVAILABLE, and health
// reports not serving. Open streams stay open and resume by themselves.
//
// Threading: state and callbacks on `dispatcher`; the connections' I/O on
// their own threads. Public methods may be called from any thread and never
// block, except Shutdown(). `observer` must outlive the broker.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/broker/broker.h"
#include "server/broker/state_gate.h"
#include "server/broker/topic_policy.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker {

struct AmqpBrokerOptions {
  amqp::AmqpConnectionOptions connection;
  // Starts the name of every exchange and queue the broker declares
  // ("<prefix>.durable", "<prefix>/<topic>/<group>", ...), so that
  // deployments sharing a vhost keep apart.
  std::string name_prefix = "switchboard";
};

class AmqpBroker final : public Broker {
 public:
  // Connects at once; health reports serving once both connections are
  // ready and the exchanges declared.
  AmqpBroker(event::Dispatcher& dispatcher, AmqpBrokerOptions options, TopicPolicies policies,
             BrokerObserver& observer, amqp::AmqpConnectionObserver& connection_observer);
  // As above, with an observer per connection (switchboard:publish,
  // switchboard:consume), so that metrics can tell them apart. Both must
  // outlive the broker.
  AmqpBroker(event::Dispatcher& dispatcher, AmqpBrokerOptions options, TopicPolicies policies,
             BrokerObserver& observer, amqp::AmqpConnectionObserver& publish_observer,
             amqp::AmqpConnectionObserver& consume_observer);
  ~AmqpBroker() override;  // Calls Shutdown().

  AmqpBroker(const AmqpBroker&) = delete;
  AmqpBroker& operator=(const AmqpBroker&) = delete;

  void Publish(std::string topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) override;
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view topic,
                                                          SubscriberSink& sink) override;
  absl::StatusOr<std::unique_ptr<ConsumerSession>> Consume(ConsumeOptions options,
                                                           ConsumerSink& sink) override;
  void WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) override;

  // Runs `done` on the dispatcher once every publish issued so far is
  // confirmed and a marker sent through the subscriber queue came back, so
  // that what RabbitMQ had to deliver by then most likely arrived. Tests
  // only: RabbitMQ gives no barrier across queues.
  void Sync(absl::AnyInvocable<void()> done);

  // Waits for pending publishes (each within its timeout), ends the streams
  // still open with UNAVAILABLE and closes the connections. Blocks; never
  // call it on the dispatcher thread. Idempotent.
  void Shutdown() override;

  // Any thread: publishes sent to RabbitMQ and not confirmed yet (at most
  // AmqpConnection::kMaxUnconfirmedPublishes), for a gauge; 0 once shut
  // down. Never blocks on the broker.
  size_t unconfirmed_publishes() const;

 private:
  class State;

  event::Dispatcher& dispatcher_;
  const TopicPolicies policies_;  // Read from any thread.
  // The publish connection, for unconfirmed_publishes(); cleared before
  // the state (which owns it) is freed.
  mutable absl::Mutex publisher_mu_;
  const amqp::AmqpConnection* publisher_ ABSL_GUARDED_BY(publisher_mu_) = nullptr;
  std::atomic<bool> serving_{false};
  std::unique_ptr<State> state_;
  StateGate<State> gate_;
};

}  // namespace switchboard::broker
