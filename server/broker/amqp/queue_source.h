// QueueSource: a consumer group's messages from its RabbitMQ quorum queue,
// for the consumer-group core (server/broker/consumer_groups.h).
//
// Each group has a durable quorum queue (GroupQueueName, GroupQueue) bound
// to the durable exchange with its topic as the binding key. The source consumes it
// through the backend's consume connection and leaves the rest to the core:
//   * credits: the source consumes the queue with one consumer whose
//     prefetch is twice the group's credits (ConsumerGroup::credits()) when
//     it starts, at most kMaxGroupPrefetch; RabbitMQ never sends more than
//     that. What arrives beyond the free credits waits here, unacked. The
//     other half is room for messages waiting out a nack's delay, which
//     stay unacked here and hold no credit: beyond that room they slow the
//     group down until their delays end. One
//     consumer, not one per session, because deliveries of several
//     channels may reach this process out of queue order, and ordering
//     keys need queue order; the prefetch follows the credits again the
//     next time the group starts consuming here;
//   * leases are the core's, held in this process: every message it holds
//     stays unacked at RabbitMQ until the core acks or dead-letters it. A
//     nack, an expiry or a closed stream redelivers it here at once, with
//     the next attempt counted by the core, and a nack's delay is waited
//     out here (RecordDelay records nothing: a replica that dies while a
//     message waits out its delay lets RabbitMQ redeliver it at once);
//   * a first delivery's attempt is RabbitMQ's own count: x-delivery-count
//     + 1;
//   * acks are basic.ack; a dead letter is published to the dead-letter
//     topic and, once confirmed, acked;
//   * when the group's last session here leaves, the source stops
//     consuming: RabbitMQ takes back everything it held, for the group's
//     consumers in other replicas (each such message counts as a delivery
//     in x-delivery-count).
// When a consumer's life ends (the connection dropped), RabbitMQ takes back
// its deliveries. The messages waiting here are forgotten; leased ones stay
// leased. When RabbitMQ delivers one of those again, its lease carries on
// with the new delivery; an ack that reached only the old one is lost, and
// the message comes again (at least once).
//
// Threading: the broker's dispatcher thread, like the core.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/broker/amqp/topology.h"
#include "server/broker/broker.h"
#include "server/broker/consumer_groups.h"

namespace switchboard::broker::amqp {

// The most deliveries a group's consumers in one process may hold at once.
inline constexpr uint32_t kMaxGroupPrefetch = 10000;

// The declaration of the queue of `group` on `topic`, with the topic's
// retention as x-max-length (and x-max-length-bytes).
QueueDeclaration GroupQueue(const std::string& name, const TopicPolicy& policy);

// What a QueueSource needs from its broker. Must outlive the sources.
struct QueueSourceContext {
  AmqpConnection& connection;          // Consumes; declares the group's queue.
  ConsumerGroups* core = nullptr;      // Pump()s the group when messages come.
  std::string name_prefix;             // Of the group queue (GroupQueueName).
  std::string durable_exchange;        // The group queue's binding.
  common::Clock* clock = nullptr;      // Publish time of foreign messages.
  BrokerObserver* observer = nullptr;  // Counts dead letters.
  // Publishes a dead letter on the durable topic `topic`; `done` gets the
  // outcome once the broker confirmed it (or did not).
  std::function<void(const std::string& topic, OutgoingMessage message,
                     absl::AnyInvocable<void(absl::Status)> done)>
      publish;
};

class QueueSource final : public GroupSource {
 public:
  // Declares the group's queue and its binding, then consumes it once the
  // core asks (Fill). A declaration that fails ends the group's sessions
  // with its error.
  QueueSource(QueueSourceContext& context, ConsumerGroup& group);
  ~QueueSource() override;  // Stops consuming.

  QueueSource(const QueueSource&) = delete;
  QueueSource& operator=(const QueueSource&) = delete;

  void Fill(ConsumerGroup& group) override;
  void Idle(ConsumerGroup& group) override;
  void RecordDelay(ConsumerGroup&, const std::string&, absl::Duration) override {}
  void Acknowledge(ConsumerGroup& group, std::vector<std::string> ids) override;
  void DeadLetter(ConsumerGroup& group, std::shared_ptr<const Message> message,
                  uint32_t attempts) override;

  const std::string& queue() const { return queue_; }

  // Reports the group's lag as this replica sees it: the messages ready in
  // its queue plus those received here and not handed out yet. Later, on
  // the dispatcher; not at all when the count fails or the source is gone.
  void SampleLag(absl::AnyInvocable<void(uint64_t lag)> report);

 private:
  // The consumer on the queue.
  class Feed final : public AmqpConsumer {
   public:
    explicit Feed(QueueSource& source) : source_(source) {}
    void OnDeliveries(uint64_t life, std::vector<AmqpDelivery> deliveries) override;
    void OnLifeEnded(uint64_t life, const absl::Status& why) override;

    QueueSource& source_;
    uint64_t id = 0;    // AmqpConnection's consumer id.
    uint64_t life = 0;  // The current life; 0 before the first.
  };

  // Where a held message's delivery came from, to ack or reject it.
  struct Tag {
    uint64_t consumer;  // Feed::id.
    uint64_t life;
    uint64_t delivery_tag;
  };
  struct Pending {
    std::shared_ptr<const Message> message;
    uint32_t attempt;
    uint64_t life;
  };

  void Declare();
  // Starts the consumer, unless it runs.
  void StartConsuming(uint32_t credits);
  void StopConsuming();
  void OnDeliveries(Feed& feed, uint64_t life, std::vector<AmqpDelivery> deliveries);
  void OnLifeEnded(Feed& feed, uint64_t life);
  // Whether `tag` still names a delivery RabbitMQ holds for us.
  bool Current(const Tag& tag) const {
    return feed_ != nullptr && tag.consumer == feed_->id && tag.life == feed_->life;
  }
  void Ack(const Tag& tag);

  QueueSourceContext& context_;
  ConsumerGroup& group_;
  const std::string queue_;
  bool declared_ = false;
  std::unique_ptr<Feed> feed_;                  // While consuming.
  std::deque<Pending> pending_;                 // Received; waiting for a free credit.
  absl::flat_hash_map<std::string, Tag> tags_;  // Of every message received, by id.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace switchboard::broker::amqp
