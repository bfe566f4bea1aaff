#include "server/broker/amqp/queue_source.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "server/broker/amqp/message_codec.h"
#include "server/broker/amqp/topology.h"
#include "server/common/log.h"

namespace switchboard::broker::amqp {

QueueDeclaration GroupQueue(const std::string& name, const TopicPolicy& policy) {
  QueueDeclaration queue = QueueDeclaration::Quorum(name);
  queue.arguments["x-max-length"] = static_cast<int64_t>(policy.max_len);
  if (policy.max_bytes > 0) {
    queue.arguments["x-max-length-bytes"] = static_cast<int64_t>(policy.max_bytes);
  }
  return queue;
}

QueueSource::QueueSource(QueueSourceContext& context, ConsumerGroup& group)
    : context_(context),
      group_(group),
      queue_(GroupQueueName(context.name_prefix, group.topic(), group.name())) {
  Declare();
}

QueueSource::~QueueSource() {
  *alive_ = false;
  StopConsuming();
}

void QueueSource::Declare() {
  context_.connection.Declare(GroupQueue(queue_, group_.policy()), [](absl::Status) {});
  context_.connection.Declare(
      BindingDeclaration{queue_, context_.durable_exchange, group_.topic()},
      [this, alive = alive_](absl::Status status) {
        if (!*alive) return;
        if (!status.ok()) {
          SB_LOG(kWarning, "amqp: cannot declare the queue of group '", group_.name(),
                 "' on topic '", group_.topic(), "': ", status.message());
          context_.core->CloseSessions(group_, absl::UnavailableError(absl::StrCat(
                                                   "the queue of group '", group_.name(),
                                                   "' could not be declared: ", status.message())));
          return;
        }
        declared_ = true;
        context_.core->Pump(group_);
      });
}

void QueueSource::Fill(ConsumerGroup& group) {
  if (!declared_) return;
  StartConsuming(group.credits());
  // Redeliveries never leave this process: the source still holds them
  // unacked, unless their delivery's life ended meanwhile.
  for (const DueDelivery& due : group.TakeDue(group.FreeCredits())) {
    auto it = tags_.find(due.id);
    const bool present = it != tags_.end() && Current(it->second);
    if (!present && it != tags_.end()) tags_.erase(it);
    group.Redelivered(due, present);
  }
  for (uint32_t credits = group.FreeCredits(); credits > 0 && !pending_.empty(); --credits) {
    Pending next = std::move(pending_.front());
    pending_.pop_front();
    group.Arrive(std::move(next.message), next.attempt);
  }
}

void QueueSource::StartConsuming(uint32_t credits) {
  if (feed_ != nullptr) return;
  const auto prefetch =
      static_cast<uint16_t>(std::clamp<uint64_t>(uint64_t{credits} * 2, 1, kMaxGroupPrefetch));
  auto feed = std::make_unique<Feed>(*this);
  absl::StatusOr<uint64_t> id =
      context_.connection.AddConsumer(AmqpConsumerOptions{queue_, prefetch}, *feed);
  if (!id.ok()) {
    context_.core->CloseSessions(
        group_, absl::UnavailableError(absl::StrCat("cannot consume the queue of group '",
                                                    group_.name(), "': ", id.status().message())));
    return;
  }
  feed->id = *id;
  feed_ = std::move(feed);
}

void QueueSource::Idle(ConsumerGroup& group) {
  // The core forgets what waits; RabbitMQ takes it back as the consumers
  // stop.
  group.TakeWaiting();
  StopConsuming();
}

void QueueSource::StopConsuming() {
  if (feed_ != nullptr) context_.connection.RemoveConsumer(feed_->id);
  feed_.reset();
  pending_.clear();
  tags_.clear();
}

void QueueSource::SampleLag(absl::AnyInvocable<void(uint64_t lag)> report) {
  if (!declared_) return;
  context_.connection.CountReady(queue_, [this, alive = alive_, report = std::move(report)](
                                             absl::StatusOr<uint32_t> ready) mutable {
    if (*alive && ready.ok()) report(*ready + pending_.size());
  });
}

void QueueSource::Acknowledge(ConsumerGroup&, std::vector<std::string> ids) {
  for (const std::string& id : ids) {
    auto it = tags_.find(id);
    if (it == tags_.end()) continue;
    Ack(it->second);
    tags_.erase(it);
  }
}

void QueueSource::Ack(const Tag& tag) {
  if (Current(tag)) context_.connection.Ack(tag.consumer, tag.life, tag.delivery_tag);
}

void QueueSource::DeadLetter(ConsumerGroup& group, std::shared_ptr<const Message> message,
                             uint32_t attempts) {
  auto it = tags_.find(message->id);
  if (it == tags_.end()) return;  // Gone with its consumer; it comes back.
  const Tag tag = it->second;
  tags_.erase(it);
  context_.observer->OnDeadLettered(group.topic(), group.name());
  const std::string topic = absl::StrCat(group.topic(), group.policy().dead_letter_suffix);
  context_.publish(topic, DeadLetterOf(*message, attempts),
                   [this, alive = alive_, tag, id = message->id](absl::Status status) {
                     if (!*alive) return;
                     if (status.ok()) {
                       Ack(tag);
                       return;
                     }
                     // Back to the queue: its next delivery counts past the
                     // last attempt, and dead-letters it again.
                     SB_LOG(kWarning, "amqp: dead-lettering message ", id,
                            " failed: ", status.message());
                     if (Current(tag)) {
                       context_.connection.Reject(tag.consumer, tag.life, tag.delivery_tag,
                                                  /*requeue=*/true);
                     }
                   });
}

void QueueSource::Feed::OnDeliveries(uint64_t life, std::vector<AmqpDelivery> deliveries) {
  source_.OnDeliveries(*this, life, std::move(deliveries));
}

void QueueSource::Feed::OnLifeEnded(uint64_t life, const absl::Status&) {
  source_.OnLifeEnded(*this, life);
}

void QueueSource::OnDeliveries(Feed& feed, uint64_t life, std::vector<AmqpDelivery> deliveries) {
  feed.life = life;
  const absl::Time now = context_.clock->Now();
  for (AmqpDelivery& delivery : deliveries) {
    const uint64_t delivery_tag = delivery.delivery_tag;
    const uint32_t attempt = delivery.delivery_count + 1;
    auto message = std::make_shared<const Message>(DecodeDelivery(std::move(delivery), now));
    auto [it, added] = tags_.try_emplace(message->id, Tag{feed.id, life, delivery_tag});
    if (!added) {
      // Held here from a delivery whose life ended: its lease goes on with
      // this one.
      it->second = Tag{feed.id, life, delivery_tag};
      if (group_.holds(message->id)) continue;
    }
    pending_.push_back(Pending{std::move(message), attempt, life});
  }
  context_.core->Pump(group_);
}

void QueueSource::OnLifeEnded(Feed& feed, uint64_t life) {
  // RabbitMQ took back every delivery of that life: what only waits here
  // is forgotten (it comes again), leases stay (see the header).
  auto ended = [&](const Tag& tag) { return tag.consumer == feed.id && tag.life == life; };
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [&](const Pending& p) { return p.life == life; }),
                 pending_.end());
  group_.TakeWaiting([&](absl::string_view id) {
    auto it = tags_.find(id);
    return it != tags_.end() && ended(it->second);
  });
  absl::erase_if(
      tags_, [&](const auto& entry) { return ended(entry.second) && !group_.holds(entry.first); });
  feed.life = 0;
}

}  // namespace switchboard::broker::amqp
