// How the RabbitMQ backend carries a Switchboard message in AMQP 0-9-1.
//
// The body is the payload, untouched, so that other AMQP clients can read
// it. basic.properties carries the rest:
//   * message_id: Switchboard's message id (AMQP assigns none);
//   * headers: every attribute under its own name (long strings), plus
//     kPublishTimeHeader (microseconds since the epoch, decimal) and, for a
//     message with one, kOrderingKeyHeader;
//   * the routing key is the topic.
// Values only; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/broker/broker.h"
#include "server/broker/message_id.h"

namespace switchboard::broker::amqp {

inline constexpr char kPublishTimeHeader[] = "switchboard.publish_time_us";
inline constexpr char kOrderingKeyHeader[] = "switchboard.ordering_key";

// AMQP short strings (routing keys, queue names, header names) hold at most
// this many bytes.
inline constexpr size_t kMaxShortStringBytes = 255;

// A generator of message ids unique across replicas, in the "<ms>-<sequence>"
// form of the other backends: its sequences start from a random multiple of
// 10^6 per process, so two replicas publishing in the same millisecond do
// not collide.
MessageIdGenerator ReplicaMessageIds();

// The basic.publish of `message` to `exchange`, routed by its topic.
// INVALID_ARGUMENT when the topic or an attribute name is longer than an
// AMQP short string, naming which.
absl::StatusOr<AmqpMessage> EncodeMessage(const Message& message, const std::string& exchange,
                                          bool persistent);

// The message `delivery` carries. Its topic is the routing key. A delivery
// without Switchboard's headers (published by another client) gets an id
// of its message_id, or "0-<delivery tag>" without one, and `now` as its
// publish time.
Message DecodeDelivery(AmqpDelivery delivery, absl::Time now);

// The queue of `group` on `topic`: "<prefix>/<topic>/<group>" ('/' is in
// neither name), shortened with a hash of the full name when it would be
// longer than an AMQP short string.
std::string GroupQueueName(absl::string_view prefix, absl::string_view topic,
                           absl::string_view group);

// The topic-exchange binding key that routes every topic `pattern` matches
// (and possibly more: the subscriber set filters): the topic itself, or for
// a prefix pattern its words up to the last '.' followed by '#'.
std::string BindingKeyFor(absl::string_view pattern);

}  // namespace switchboard::broker::amqp
