// Consumers: the consumer half of AmqpConnection's I/O thread
// (amqp_connection.h), which holds one and calls it.
//
// It keeps every consumer of the connection and the channel of each one's
// current life: it starts lives (channel.open, basic.qos, basic.consume on a
// channel of the consumer's own, from 3 up, the lowest free one), puts each
// delivery together from its frames (basic.deliver, a content header, body
// frames: frames of different channels interleave, so each channel has its
// own), gathers what one read pass brought into one OnDeliveries() per
// consumer, sends basic.ack and basic.reject for the current life only, and
// ends lives.
//
// A life the broker ends (it closes the channel, or cancels the consumer
// with basic.cancel) is followed by another after a backoff of the
// consumer's own (full jitter, as reconnects; reset by a delivery), so that
// a consumer of a queue that was deleted and declared again resumes by
// itself, and one of a queue that does not exist retries slowly instead of
// spinning. A life the connection ends is followed by one as soon as the
// connection is made again.
//
// I/O thread only. Consumer callbacks are posted to the owner dispatcher and
// run there only while the connection (its alive flag) and the consumer (the
// flag RemoveConsumer() clears) are both alive; both flags are read and
// written on the owner thread only.
#pragma once

#include <amqp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::amqp {

// A consumer call (AddConsumer, RemoveConsumer, Ack, Reject), handed from
// the owner thread to the I/O thread.
struct ConsumerCommand {
  enum class Kind { kAdd, kRemove, kAck, kReject };
  Kind kind = Kind::kAdd;
  uint64_t id = 0;
  // kAdd.
  AmqpConsumerOptions options;
  AmqpConsumer* consumer = nullptr;
  std::shared_ptr<bool> alive;  // Owner thread only: copied, never read here.
  // kAck and kReject.
  uint64_t life = 0;
  uint64_t delivery_tag = 0;
  bool multiple = false;  // kAck.
  bool requeue = false;   // kReject.
};

class Consumers {
 public:
  // Channel 1 declares and channel 2 publishes.
  static constexpr amqp_channel_t kFirstChannel = 3;

  // `connection_alive`: the connection's flag, false once it is destroyed.
  // Lives the broker ended restart after a backoff under a ceiling that
  // doubles from `retry_initial` to `retry_max`.
  Consumers(event::Dispatcher& owner, std::shared_ptr<bool> connection_alive,
            absl::Duration retry_initial, absl::Duration retry_max);

  Consumers(const Consumers&) = delete;
  Consumers& operator=(const Consumers&) = delete;

  // Applies `command` on `connection`, or with `connection` null while there
  // is none: an added consumer then starts with the next StartDue(), and an
  // ack or reject is dropped (no life is current). An error means the
  // connection failed.
  absl::Status Apply(amqp_connection_state_t connection, ConsumerCommand command);

  // Starts a life for every consumer due: all of them after Dropped(), a new
  // one at once, one whose life the broker ended after its backoff. Each
  // start waits for the broker's answers (the connection's RPC timeout, as
  // the caller set it). A refusal (NOT_FOUND, ...) ends that life only; an
  // error means the connection failed, and the caller drops it.
  absl::Status StartDue(amqp_connection_state_t connection);

  // True when the frames of `channel` are the consumers' (HandleFrame()):
  // it is a consumer's, or closing after it was.
  bool Owns(amqp_channel_t channel) const { return channels_.count(channel) != 0; }

  // Handles a frame of a channel Owns(). An error means the connection
  // failed.
  absl::Status HandleFrame(amqp_connection_state_t connection, const amqp_frame_t& frame);

  // Posts the deliveries gathered since the last Flush(): one
  // OnDeliveries() per consumer.
  void Flush();

  // The connection is gone: ends every life with `why` and forgets every
  // channel; StartDue() starts every consumer on the next connection.
  void Dropped(const absl::Status& why);

  // When StartDue() has a consumer to start: InfiniteFuture() when none.
  absl::Time NextStart() const;

 private:
  struct Consumer {
    Consumer(uint64_t id, AmqpConsumerOptions options, AmqpConsumer* consumer,
             std::shared_ptr<bool> alive, const common::BackoffOptions& retry)
        : id(id),
          options(std::move(options)),
          consumer(consumer),
          alive(std::move(alive)),
          backoff(retry) {}

    const uint64_t id;
    const AmqpConsumerOptions options;
    AmqpConsumer* const consumer;
    const std::shared_ptr<bool> alive;
    uint64_t life = 0;                // The current life, or the last one.
    amqp_channel_t channel = 0;       // The current life's; 0 between lives.
    absl::Time start_at;              // Between lives: when the next one starts.
    std::vector<AmqpDelivery> batch;  // Read since the last Flush().
    common::Backoff backoff;
    std::string last_end;  // Why the last life ended: repeats log quietly.
  };

  // A channel of a consumer, or closing (consumer 0, or one removed) until
  // its close-ok.
  struct Channel {
    uint64_t consumer = 0;
    // The delivery being put together: basic.deliver read, then (once
    // body_size is known) its content header, then its body frames.
    std::optional<AmqpDelivery> incoming;
    std::optional<uint64_t> body_size;
  };

  absl::Status Start(amqp_connection_state_t connection, Consumer& consumer);
  absl::Status HandleContent(Consumer& consumer, Channel& channel, const amqp_frame_t& frame);
  // Ends `consumer`'s life; `retry`: the next starts after its backoff,
  // else on the next StartDue().
  void EndLife(Consumer& consumer, const absl::Status& why, bool retry);
  // Sends channel.close; the channel stays taken until its close-ok.
  absl::Status Close(amqp_connection_state_t connection, amqp_channel_t number);
  // The lowest channel number neither taken nor closing, up to the
  // connection's channel_max; 0 when none is free.
  amqp_channel_t FreeChannel(amqp_connection_state_t connection) const;

  event::Dispatcher& owner_;
  const std::shared_ptr<bool> connection_alive_;
  const common::BackoffOptions retry_;
  std::map<uint64_t, Consumer> consumers_;  // By id.
  std::map<amqp_channel_t, Channel> channels_;
  absl::BitGen random_;
};

}  // namespace switchboard::broker::amqp
