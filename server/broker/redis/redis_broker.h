// RedisBroker: the Redis backend of the Broker interface (DESIGN.md §2, §3).
//
// The server wiring creates one for `--broker=redis://...`; tests/conformance
// runs the broker suite against it. Durable topics are Redis Streams with one
// consumer group per Switchboard group; ephemeral topics are Redis Pub/Sub.
//
// Connections (each named switchboard:<role> in CLIENT LIST):
//   * command: every publish, ack, claim and non-blocking read, pipelined;
//   * subscriber: every SUBSCRIBE / PSUBSCRIBE, reference counted across
//     local subscriber streams;
//   * reader: blocking XREADGROUP, one per active consumer group (up to
//     max_reader_connections, then shared), several topics of a group in one
//     call;
//   * exclusive:<pattern>: one per topic declaration marked `exclusive`
//     (seed 001), carrying every command of its topics instead of the
//     command connection, so they never queue behind other topics' traffic
//     and keep working while the command connection reconnects. Their
//     blocking reads still share the group's reader.
//
// Leases live in this process (LeaseTable); Redis only fetches and acks
// (stream_groups.h, lease_keeper.h):
//   * first deliveries come from XREADGROUP, only while a consumer has
//     credits; `delivery_attempt` is Redis' delivery count;
//   * ack is XACK; nack, expiry and a closed stream redeliver at once
//     through XCLAIM to this process' consumer;
//   * after max_delivery_attempts the message is XADDed to the dead-letter
//     topic, then XACKed;
//   * a periodic pass keeps the idle time of held entries fresh (XCLAIM
//     JUSTID), so no other replica reclaims them, and reclaims entries idle
//     longer than the ack deadline (XAUTOCLAIM): leases of a replica that
//     died.
//
// Threading: the broker's state, its leases and every callback run on
// `dispatcher`, whose clock times the leases (a SimulatedClock in tests).
// The hiredis connections live on `io`, whose clock times command timeouts,
// reconnect backoff, blocking reads and the periodic pass, so it must be a
// real clock. Production passes one real-clock dispatcher as both, and then
// no work hops between threads. Public methods may be called from any
// thread and never block, except Shutdown().
//
// Failure: while Redis is unreachable, Publish fails at once with
// UNAVAILABLE, Subscribe and Consume refuse with UNAVAILABLE, and health
// reports not serving. Open subscriptions and consume sessions stay open;
// after reconnect they resume by themselves (subscriptions are renewed,
// reads restart, lost consumer groups are recreated).
//
// Parts: connection_set.h (the connections, on `io`), command_lanes.h,
// pubsub_channels.h (ephemeral topics), stream_groups.h and blocking_reads.h
// (durable topics), lease_keeper.h (the periodic pass), sync_barrier.h
// (Sync(), tests only); stream_commands.h and pubsub_commands.h build the
// commands and read the replies.
//
// Lifetime: both dispatchers must keep running until Shutdown() returns;
// `observer` and `connection_observer` must outlive the broker. Handles
// follow broker.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/broker/broker.h"
#include "server/broker/redis/connection.h"
#include "server/broker/state_gate.h"
#include "server/broker/topic_policy.h"
#include "server/event/dispatcher.h"
#include "server/event/dispatcher_impl.h"

namespace switchboard::broker {
namespace redis {
class ConnectionSet;
}  // namespace redis

struct RedisBrokerOptions {
  redis::ConnectionOptions connection;
  // Reader connections at most; groups beyond share them.
  uint32_t max_reader_connections = 8;
  // How long one blocking XREADGROUP waits for new entries.
  absl::Duration block_time = absl::Seconds(2);
  // How long a reader connection no group uses stays open, so consumers that
  // come and go do not reconnect each time.
  absl::Duration reader_linger = absl::Seconds(10);
  // How often held entries get their idle time refreshed and entries idle
  // past the ack deadline are reclaimed. Keep it well under the shortest
  // ack deadline.
  absl::Duration maintenance_interval = absl::Seconds(1);
  // This process' consumer name in every group; empty: derived from the
  // host name, the process id and a random tag.
  std::string consumer_name;
  // Makes Sync() available, at the cost of one more subscription
  // (switchboard:sync:<random>) on the subscriber connection, which health
  // waits for. Tests only.
  bool enable_sync_barrier = false;
};

class RedisBroker final : public Broker {
 public:
  RedisBroker(event::Dispatcher& dispatcher, event::DispatcherImpl& io, RedisBrokerOptions options,
              TopicPolicies policies, BrokerObserver& observer,
              redis::ConnectionObserver& connection_observer);
  ~RedisBroker() override;  // Calls Shutdown().

  RedisBroker(const RedisBroker&) = delete;
  RedisBroker& operator=(const RedisBroker&) = delete;

  void Publish(std::string topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) override;
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view topic,
                                                          SubscriberSink& sink) override;
  absl::StatusOr<std::unique_ptr<ConsumerSession>> Consume(ConsumeOptions options,
                                                           ConsumerSink& sink) override;

  // Serving means the command and subscriber connections are ready.
  void WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) override;

  // Runs `done` on the dispatcher once the broker has caught up with Redis:
  // every command issued so far has its reply, every message Redis had sent
  // the subscriber connection has been handed on, and every blocking read has
  // been interrupted and re-issued (so entries waiting for it were read).
  // Used by tests to assert that something did not happen. Needs
  // `enable_sync_barrier`; without it, logs an error and runs `done` at once.
  void Sync(absl::AnyInvocable<void()> done);

  // Stops new work, waits for pending commands (publishes among them) to be
  // answered or to time out, ends subscriptions and sessions still open with
  // UNAVAILABLE, and closes the connections. Later calls fail with
  // UNAVAILABLE. Blocks until done, so it must not be called on either
  // dispatcher thread. Idempotent.
  void Shutdown() override;

 private:
  class State;

  // Why a stream is refused while not serving: UNAVAILABLE, naming the
  // command connection's last failure (refused, AUTH failed, ...) if any.
  absl::Status Unreachable() const;

  event::Dispatcher& dispatcher_;
  event::DispatcherImpl& io_dispatcher_;
  const RedisBrokerOptions options_;
  const TopicPolicies policies_;  // Read from any thread.
  // Mirrors the state's health for the synchronous refusals of Subscribe and
  // Consume.
  std::atomic<bool> serving_{false};

  // Owned here, used and freed on their dispatchers (Shutdown()).
  std::unique_ptr<redis::ConnectionSet> connections_;
  std::unique_ptr<State> state_;
  StateGate<State> gate_;
};

}  // namespace switchboard::broker
