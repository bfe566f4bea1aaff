// The broker interface: what the service layer needs from a message backend.
//
// One implementation per backend (`memory/`, later `redis/`); only the wiring
// in server/app names them. Every implementation passes the conformance suite
// in tests/conformance, which is the executable form of DESIGN.md §2.
//
// Threading and ownership:
//   * Every method may be called from any thread and never blocks on I/O.
//   * Callbacks (publish completions, sink methods, settle results) run on a
//     backend dispatcher thread, never inline in the calling method.
//   * The Broker must outlive every Subscription and ConsumerSession it hands
//     out. Destroying a handle cancels it: once the destructor returns, no
//     callback of that handle runs. Destroying a handle from inside one of its
//     own callbacks is not allowed (it would wait for itself); callers must
//     not hold a lock that a sink callback takes while destroying a handle.
//
// Input is assumed valid (names, sizes): the service layer validates requests
// and reports field paths. The broker decides what only it can know: topic
// kinds, lease ownership, backend availability.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/topic_policy.h"

namespace switchboard::broker {

using Attributes = std::map<std::string, std::string>;

// A message as handed to Publish().
struct OutgoingMessage {
  std::string payload;
  Attributes attributes;
  // Durable topics: within a consumer group, messages with the same
  // non-empty key are delivered one at a time, in publish order.
  std::string ordering_key = {};
  // Durable topics: a second message with the same non-empty id within the
  // topic's dedup_window is not stored again; its publish answers the first
  // one's message id.
  std::string dedup_id = {};
};

// The longest ordering key, in bytes.
inline constexpr size_t kMaxOrderingKeyBytes = 256;
// The longest dedup id, in bytes.
inline constexpr size_t kMaxDedupIdBytes = 128;
// The most attributes one message may carry (as Google Pub/Sub's).
inline constexpr size_t kMaxAttributes = 100;

// A stored or delivered message.
struct Message {
  std::string id;     // Assigned at publish; Redis-style "<ms>-<seq>".
  std::string topic;  // The concrete topic it was published to.
  std::string payload;
  Attributes attributes;
  absl::Time publish_time;
  std::string ordering_key = {};  // Empty: none.
};

// One leased message on a consume stream.
struct Delivery {
  std::string ack_id;  // Opaque; unique per lease.
  Message message;
  uint32_t delivery_attempt = 1;  // 1 on first delivery.
};

// Attributes the broker adds to a dead-lettered message.
inline constexpr char kDeadLetterAttemptsAttribute[] = "switchboard.delivery_attempts";
inline constexpr char kDeadLetterOriginalIdAttribute[] = "switchboard.original_id";
inline constexpr char kDeadLetterOriginalTopicAttribute[] = "switchboard.original_topic";

// Receives an ephemeral subscription's messages, one at a time.
class SubscriberSink {
 public:
  virtual ~SubscriberSink() = default;

  // The subscription is live: every message published from now on reaches
  // this sink (subject to the overflow policy). Called once, before any
  // OnMessage().
  virtual void OnSubscribed() = 0;

  // The next message. At most one is outstanding: the broker buffers further
  // messages (bounded, with the topic's overflow policy) until the sink calls
  // Subscription::Ready(). `dropped_since_last` counts messages this
  // subscriber lost to overflow since the previous OnMessage().
  virtual void OnMessage(Message message, uint64_t dropped_since_last) = 0;

  // The subscription ended on the broker's side: RESOURCE_EXHAUSTED when the
  // buffer overflowed under the disconnect policy, UNAVAILABLE when the
  // backend is lost or shutting down. No callback follows.
  virtual void OnClosed(absl::Status status) = 0;
};

// A live ephemeral subscription. Destroying it unsubscribes.
class Subscription {
 public:
  virtual ~Subscription() = default;

  // The sink is done with the last OnMessage() and can take the next one.
  virtual void Ready() = 0;
};

struct ConsumeOptions {
  std::string topic;
  std::string group;
  uint32_t max_in_flight = 1;                          // Credits: the most leases held at once.
  absl::Duration ack_deadline = absl::ZeroDuration();  // Zero: the topic's default.
};

// Receives a consume stream's deliveries.
class ConsumerSink {
 public:
  virtual ~ConsumerSink() = default;

  // New leases. The session never holds more than max_in_flight leases, so a
  // sink that buffers deliveries until it can write them needs at most that
  // much room.
  virtual void OnDeliveries(std::vector<Delivery> deliveries) = 0;

  // The session ended on the broker's side (backend lost: UNAVAILABLE). Its
  // leases have been released. No callback follows.
  virtual void OnClosed(absl::Status status) = 0;
};

// The longest delay a nack may ask for.
inline constexpr absl::Duration kMaxNackDelay = absl::Hours(1);

// Acks, nacks and deadline changes for one consume stream, in request order.
struct LeaseUpdate {
  std::vector<std::string> acks;
  struct Nack {
    std::string ack_id;
    // The message is not delivered again before this much time has passed
    // (at most kMaxNackDelay). Zero: the topic's retry_backoff for the
    // attempt, or at once without one.
    absl::Duration delay = absl::ZeroDuration();
  };
  std::vector<Nack> nacks;
  struct Extension {
    std::string ack_id;
    absl::Duration deadline;  // From now. Zero behaves as a nack without a delay.
  };
  std::vector<Extension> extensions;
};

// Per-item outcome of a LeaseUpdate, index-aligned with its vectors. An item
// fails with INVALID_ARGUMENT (malformed ack id), NOT_FOUND (no such lease, or
// it already ended) or PERMISSION_DENIED (held by another session). Messages
// do not name request fields; the service layer adds the field path.
struct LeaseUpdateResult {
  std::vector<absl::Status> acks;
  std::vector<absl::Status> nacks;
  std::vector<absl::Status> extensions;
};

// A consume stream's membership in a group. Destroying it releases every
// lease it holds at once: those messages go to the group's other consumers.
class ConsumerSession {
 public:
  virtual ~ConsumerSession() = default;

  // Applies acks, nacks and extensions. `done` runs once with the per-item
  // outcome, unless the session is destroyed first.
  virtual void Settle(LeaseUpdate update, absl::AnyInvocable<void(LeaseUpdateResult)> done) = 0;
};

// Counts what happens inside a backend, for metrics and tests. Called on
// dispatcher threads; implementations must be thread-safe and cheap.
class BrokerObserver {
 public:
  virtual ~BrokerObserver() = default;

  // A message was handed out again (nack, expiry, or release by a closed
  // stream). Counted at redelivery time.
  virtual void OnRedelivered(absl::string_view topic, absl::string_view group) = 0;

  // A message exceeded max_delivery_attempts and moved to the dead-letter
  // topic.
  virtual void OnDeadLettered(absl::string_view topic, absl::string_view group) = 0;

  // A subscriber buffer lost `count` messages to its overflow policy.
  virtual void OnSubscriberDropped(absl::string_view topic, uint64_t count) = 0;

  // A lease ran past its deadline.
  virtual void OnLeaseExpired(absl::string_view topic, absl::string_view group) = 0;

  // A sample of a group's lag: entries of `topic` not yet delivered to the
  // group. Taken periodically while the group has consumers.
  virtual void OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) = 0;

  // A sample of the leases this replica's consume streams in `group` hold:
  // messages delivered and not yet acked, nacked or expired. Taken with the
  // lag, and once more (0) after the group's last consumer here left.
  virtual void OnLeasesInFlight(absl::string_view topic, absl::string_view group,
                                uint64_t leases) = 0;

  // A sample of every subscriber buffer: per subscribed topic or pattern,
  // the fill (0 to 1) of its fullest buffer. Taken with the lag; a pattern
  // missing from `fill` has no subscriber any more.
  virtual void OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) = 0;

  // A sample of what a broker that keeps messages in process memory retains:
  // the bytes of its durable topics together, how many topics it has, and
  // how many dedup ids it remembers (idempotent publish; ids whose window
  // ended count until the next publish forgets them). Taken with the lag,
  // and after a publish refused for any of these limits.
  virtual void OnRetained(uint64_t bytes, uint64_t topics, uint64_t dedup_ids) = 0;
};

// Observes nothing.
class NullBrokerObserver final : public BrokerObserver {
 public:
  void OnRedelivered(absl::string_view, absl::string_view) override {}
  void OnDeadLettered(absl::string_view, absl::string_view) override {}
  void OnSubscriberDropped(absl::string_view, uint64_t) override {}
  void OnLeaseExpired(absl::string_view, absl::string_view) override {}
  void OnConsumerLag(absl::string_view, absl::string_view, uint64_t) override {}
  void OnLeasesInFlight(absl::string_view, absl::string_view, uint64_t) override {}
  void OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>&) override {}
  void OnRetained(uint64_t, uint64_t, uint64_t) override {}
};

using PublishCallback = absl::AnyInvocable<void(absl::StatusOr<std::vector<std::string>>)>;

class Broker {
 public:
  virtual ~Broker() = default;

  // Stores (durable) or fans out (ephemeral) `messages` on `topic`, then runs
  // `done` with their ids in order. Durable publishes complete only once the
  // backend has stored them. Fails with UNAVAILABLE, at once, while the
  // backend is unreachable.
  virtual void Publish(std::string topic, std::vector<OutgoingMessage> messages,
                       PublishCallback done) = 0;

  // Subscribes `sink` to an ephemeral topic, or to every topic starting with
  // a prefix when `topic` ends in '*'. Fails at once with FAILED_PRECONDITION
  // when the topic is durable (the message names the kind). `sink` must
  // outlive the returned Subscription.
  virtual absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view topic,
                                                                  SubscriberSink& sink) = 0;

  // Joins `options.group` on a durable topic, creating the group (reading from
  // the start of retained history) on first use. Fails at once with
  // FAILED_PRECONDITION when the topic is ephemeral. `sink` must outlive the
  // returned session.
  virtual absl::StatusOr<std::unique_ptr<ConsumerSession>> Consume(ConsumeOptions options,
                                                                   ConsumerSink& sink) = 0;

  // Reports availability now and on every change, on a dispatcher thread.
  // Used to drive the gRPC health status. Call before serving traffic.
  virtual void WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) = 0;

  // Completes pending publishes, then closes connections. Handles must be
  // gone already. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace switchboard::broker
