#include "server/broker/amqp/consumers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/broker/amqp/wire.h"
#include "server/common/log.h"
#include "server/common/status_macros.h"

namespace switchboard::broker::amqp {
namespace {

// A status that shares nothing with `status`, to cross threads (Detached()
// in amqp_connection.cc says why).
absl::Status Detached(const absl::Status& status) {
  return absl::Status(status.code(), status.message());
}

// RabbitMQ's max_message_size (128 MiB in 3.10) bounds a body; the
// reservation for one is bounded the same, whatever a header claims.
constexpr uint64_t kMaxReservedBody = uint64_t{128} << 20;

}  // namespace

Consumers::Consumers(event::Dispatcher& owner, std::shared_ptr<bool> connection_alive,
                     absl::Duration retry_initial, absl::Duration retry_max)
    : owner_(owner),
      connection_alive_(std::move(connection_alive)),
      retry_(common::ReconnectBackoff(retry_initial, retry_max)) {}

absl::Status Consumers::Apply(amqp_connection_state_t connection, ConsumerCommand command) {
  if (command.kind == ConsumerCommand::Kind::kAdd) {
    auto [it, added] = consumers_.try_emplace(command.id, command.id, std::move(command.options),
                                              command.consumer, std::move(command.alive), retry_);
    it->second.start_at = absl::InfinitePast();
    return absl::OkStatus();
  }
  auto it = consumers_.find(command.id);
  if (it == consumers_.end()) return absl::OkStatus();
  Consumer& consumer = it->second;
  const bool current = connection != nullptr && consumer.channel != 0;
  switch (command.kind) {
    case ConsumerCommand::Kind::kRemove: {
      const amqp_channel_t channel = consumer.channel;
      consumers_.erase(it);
      if (channel == 0) return absl::OkStatus();
      // Without a connection (it just failed), Dropped() follows.
      if (connection == nullptr) {
        channels_.erase(channel);
        return absl::OkStatus();
      }
      // Closing the channel gives the broker back every delivery of the
      // life not settled yet. No OnLifeEnded(): the consumer is gone.
      return Close(connection, channel);
    }
    case ConsumerCommand::Kind::kAck:
    case ConsumerCommand::Kind::kReject: {
      // A tag of an earlier life means nothing on this channel (or names
      // another delivery): the broker would close the channel for it.
      if (!current || command.life != consumer.life) return absl::OkStatus();
      const bool ack = command.kind == ConsumerCommand::Kind::kAck;
      const int sent = ack ? amqp_basic_ack(connection, consumer.channel, command.delivery_tag,
                                            command.multiple ? 1 : 0)
                           : amqp_basic_reject(connection, consumer.channel, command.delivery_tag,
                                               command.requeue ? 1 : 0);
      if (sent != AMQP_STATUS_OK) return LibraryStatus(sent, ack ? "basic.ack" : "basic.reject");
      return absl::OkStatus();
    }
    case ConsumerCommand::Kind::kAdd:
      break;
  }
  return absl::OkStatus();
}

absl::Status Consumers::StartDue(amqp_connection_state_t connection) {
  const absl::Time now = absl::Now();
  for (auto& [id, consumer] : consumers_) {
    if (consumer.channel == 0 && consumer.start_at <= now) {
      SB_RETURN_IF_ERROR(Start(connection, consumer));
    }
  }
  return absl::OkStatus();
}

absl::Status Consumers::Start(amqp_connection_state_t connection, Consumer& consumer) {
  ++consumer.life;
  const amqp_channel_t number = FreeChannel(connection);
  if (number == 0) {
    EndLife(consumer,
            absl::ResourceExhaustedError(absl::StrCat(
                "basic.consume of queue '", consumer.options.queue,
                "': no channel free (channel_max ", amqp_get_channel_max(connection), ")")),
            /*retry=*/true);
    return absl::OkStatus();
  }
  // Taken from here: a life that began is ended by Dropped() when the
  // connection fails under the calls below.
  consumer.channel = number;
  channels_[number].consumer = consumer.id;
  const amqp_rpc_reply_t reply = StartConsuming(connection, number, consumer.options);
  const absl::Status status =
      ReplyStatus(reply, absl::StrCat("basic.consume of queue '", consumer.options.queue, "'"));
  amqp_maybe_release_buffers_on_channel(connection, number);
  if (status.ok()) return absl::OkStatus();
  if (!IsChannelClose(reply)) return absl::UnavailableError(status.message());
  channels_.erase(number);
  EndLife(consumer, status, /*retry=*/true);
  const int acknowledged = SendChannelCloseOk(connection, number);
  if (acknowledged != AMQP_STATUS_OK) return LibraryStatus(acknowledged, "channel.close-ok");
  return absl::OkStatus();
}

absl::Status Consumers::HandleFrame(amqp_connection_state_t connection, const amqp_frame_t& frame) {
  auto channel_it = channels_.find(frame.channel);
  if (channel_it == channels_.end()) return absl::OkStatus();
  Channel& channel = channel_it->second;
  auto consumer_it = consumers_.find(channel.consumer);
  Consumer* consumer = consumer_it == consumers_.end() ? nullptr : &consumer_it->second;

  if (frame.frame_type == AMQP_FRAME_METHOD) {
    const amqp_method_t& method = frame.payload.method;
    switch (method.id) {
      case AMQP_CHANNEL_CLOSE_OK_METHOD:
        if (consumer == nullptr) channels_.erase(channel_it);
        return absl::OkStatus();
      case AMQP_CHANNEL_CLOSE_METHOD: {
        // The broker ended the channel (the queue is gone, an ack it
        // refused, ...), or it crossed our own channel.close: either way the
        // number is free once acknowledged.
        channels_.erase(channel_it);
        if (consumer != nullptr) {
          EndLife(
              *consumer,
              ChannelCloseStatus(*static_cast<const amqp_channel_close_t*>(method.decoded),
                                 absl::StrCat("consumer of queue '", consumer->options.queue, "'")),
              /*retry=*/true);
        }
        const int acknowledged = SendChannelCloseOk(connection, frame.channel);
        if (acknowledged != AMQP_STATUS_OK) return LibraryStatus(acknowledged, "channel.close-ok");
        return absl::OkStatus();
      }
      default:
        break;
    }
  }
  // Whatever still arrives on a closing channel is dropped unseen.
  if (consumer == nullptr) return absl::OkStatus();

  if (frame.frame_type == AMQP_FRAME_METHOD &&
      frame.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
    const auto* deliver = static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
    AmqpDelivery& delivery = channel.incoming.emplace();
    delivery.delivery_tag = deliver->delivery_tag;
    delivery.redelivered = deliver->redelivered != 0;
    delivery.exchange =
        std::string(static_cast<const char*>(deliver->exchange.bytes), deliver->exchange.len);
    delivery.routing_key =
        std::string(static_cast<const char*>(deliver->routing_key.bytes), deliver->routing_key.len);
    channel.body_size.reset();
    return absl::OkStatus();
  }
  if (frame.frame_type == AMQP_FRAME_METHOD &&
      frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
    // The broker cancelled the consumer (consumer_cancel_notify): its queue
    // was deleted, or its node went away. The channel is closed so that the
    // broker takes back what the life did not settle.
    const amqp_channel_t number = frame.channel;
    EndLife(*consumer,
            absl::UnavailableError(absl::StrCat("consumer of queue '", consumer->options.queue,
                                                "': cancelled by the broker (basic.cancel)")),
            /*retry=*/true);
    return Close(connection, number);
  }
  if (frame.frame_type == AMQP_FRAME_HEADER || frame.frame_type == AMQP_FRAME_BODY) {
    return HandleContent(*consumer, channel, frame);
  }
  return absl::OkStatus();
}

absl::Status Consumers::HandleContent(Consumer& consumer, Channel& channel,
                                      const amqp_frame_t& frame) {
  // Content without its basic.deliver (or a second header) breaks no
  // invariant of ours: it is dropped.
  if (!channel.incoming.has_value()) return absl::OkStatus();
  AmqpDelivery& delivery = *channel.incoming;
  if (frame.frame_type == AMQP_FRAME_HEADER) {
    if (channel.body_size.has_value()) return absl::OkStatus();
    CopyProperties(*static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded),
                   delivery);
    channel.body_size = frame.payload.properties.body_size;
    delivery.body.reserve(std::min(*channel.body_size, kMaxReservedBody));
  } else {
    if (!channel.body_size.has_value()) return absl::OkStatus();
    const amqp_bytes_t& fragment = frame.payload.body_fragment;
    delivery.body.append(static_cast<const char*>(fragment.bytes), fragment.len);
  }
  if (delivery.body.size() < *channel.body_size) return absl::OkStatus();
  if (delivery.body.size() == *channel.body_size) {
    consumer.backoff.Reset();
    consumer.batch.push_back(std::move(delivery));
  } else {
    SB_LOG(kWarning, "amqp consumer of queue '", consumer.options.queue, "': delivery ",
           delivery.delivery_tag, " has ", delivery.body.size(), " bytes where its header said ",
           *channel.body_size, "; dropped");
  }
  channel.incoming.reset();
  channel.body_size.reset();
  return absl::OkStatus();
}

void Consumers::Flush() {
  for (auto& [id, consumer] : consumers_) {
    if (consumer.batch.empty()) continue;
    owner_.Post([connection_alive = connection_alive_, alive = consumer.alive,
                 target = consumer.consumer, life = consumer.life,
                 deliveries = std::move(consumer.batch)]() mutable {
      if (*connection_alive && *alive) target->OnDeliveries(life, std::move(deliveries));
    });
    consumer.batch.clear();
  }
}

void Consumers::Dropped(const absl::Status& why) {
  for (auto& [id, consumer] : consumers_) {
    if (consumer.channel != 0) EndLife(consumer, why, /*retry=*/false);
    consumer.start_at = absl::InfinitePast();
  }
  channels_.clear();
}

absl::Time Consumers::NextStart() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, consumer] : consumers_) {
    if (consumer.channel == 0) next = std::min(next, consumer.start_at);
  }
  return next;
}

void Consumers::EndLife(Consumer& consumer, const absl::Status& why, bool retry) {
  // Deliveries of this pass not posted yet could not be settled any more:
  // the broker delivers them again, to the next life.
  consumer.batch.clear();
  consumer.channel = 0;
  consumer.start_at = retry ? absl::Now() + consumer.backoff.Next(random_) : absl::InfinitePast();
  // Each new reason is a warning; repeats (a queue still missing) are debug.
  if (retry && why.message() != consumer.last_end) {
    SB_LOG(kWarning, "amqp consumer ", consumer.id, " life ", consumer.life,
           " ended: ", why.message(), "; consuming again after a backoff");
  } else if (retry) {
    SB_LOG(kDebug, "amqp consumer ", consumer.id, " life ", consumer.life,
           " ended: ", why.message());
  }
  consumer.last_end = std::string(why.message());
  owner_.Post([connection_alive = connection_alive_, alive = consumer.alive,
               target = consumer.consumer, life = consumer.life, why = Detached(why)] {
    if (*connection_alive && *alive) target->OnLifeEnded(life, why);
  });
}

absl::Status Consumers::Close(amqp_connection_state_t connection, amqp_channel_t number) {
  Channel& channel = channels_[number];
  channel.consumer = 0;
  channel.incoming.reset();
  channel.body_size.reset();
  const int sent = SendChannelClose(connection, number);
  if (sent != AMQP_STATUS_OK) return LibraryStatus(sent, "channel.close");
  return absl::OkStatus();
}

amqp_channel_t Consumers::FreeChannel(amqp_connection_state_t connection) const {
  const int max = amqp_get_channel_max(connection);
  const int last = max == 0 ? 65535 : max;
  int number = kFirstChannel;
  // channels_ is ordered: the first gap is the lowest free number.
  for (auto it = channels_.lower_bound(kFirstChannel); it != channels_.end(); ++it) {
    if (it->first != number) break;
    ++number;
  }
  return number <= last ? static_cast<amqp_channel_t>(number) : 0;
}

}  // namespace switchboard::broker::amqp
