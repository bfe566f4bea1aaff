// The rabbitmq-c calls of the AMQP backend: login, declarations, publishes
// and consumers as AMQP methods, deliveries' properties as AmqpDelivery
// fields, and rabbitmq-c's results as absl::Status.
//
// Internal to server/broker/amqp: AmqpConnection's I/O thread calls these on
// the connection it owns. Each takes the connection and a channel and does
// no locking; the synchronous ones wait at most the connection's RPC timeout
// (amqp_set_rpc_timeout), after which rabbitmq-c closes the socket.
#pragma once

#include <amqp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/broker/amqp/topology.h"

namespace switchboard::broker::amqp {

// A rabbitmq-c status code (AMQP_STATUS_*) as a status: DEADLINE_EXCEEDED
// for a timeout, UNAVAILABLE otherwise (the connection is gone or going).
absl::Status LibraryStatus(int code, absl::string_view what);

// The status of a synchronous call's reply: OK, the library's error
// (LibraryStatus), or the broker closing the channel (the code says why:
// 404 NOT_FOUND, 403 PERMISSION_DENIED, 406 and 405 FAILED_PRECONDITION,
// otherwise INTERNAL) or the connection (UNAVAILABLE).
absl::Status ReplyStatus(const amqp_rpc_reply_t& reply, absl::string_view what);

// The status of a channel.close the broker sent (ReplyStatus' mapping).
absl::Status ChannelCloseStatus(const amqp_channel_close_t& close, absl::string_view what);

// True when `reply` is the broker closing the channel of the call: the
// connection lives on, the channel must be acknowledged (SendChannelCloseOk)
// and opened again.
bool IsChannelClose(const amqp_rpc_reply_t& reply);

// Acknowledges the broker's channel.close on `channel`.
int SendChannelCloseOk(amqp_connection_state_t connection, amqp_channel_t channel);

// Acknowledges the broker's connection.close.
int SendConnectionCloseOk(amqp_connection_state_t connection);

// Logs in (connection.start-ok to connection.open-ok) with the client
// properties connection_name = `connection_name` and
// capabilities.consumer_cancel_notify = true: rabbitmq-c advertises only
// authentication_failure_close and exchange_exchange_bindings, and without
// consumer_cancel_notify the broker drops a consumer whose queue is deleted
// without a word (no basic.cancel), leaving it waiting forever.
amqp_rpc_reply_t LogIn(amqp_connection_state_t connection, const AmqpConnectionOptions& options,
                       const std::string& connection_name);

// Sends `declaration` and waits for its answer.
amqp_rpc_reply_t SendDeclaration(amqp_connection_state_t connection, amqp_channel_t channel,
                                 const Declaration& declaration);

// Sends queue.unbind of `binding` and waits for its answer.
amqp_rpc_reply_t SendUnbind(amqp_connection_state_t connection, amqp_channel_t channel,
                            const BindingDeclaration& binding);

// Sends a passive queue.declare of `queue` and waits for its answer; on
// success `ready` is the queue's message_count.
amqp_rpc_reply_t CountReadyMessages(amqp_connection_state_t connection, amqp_channel_t channel,
                                    const std::string& queue, uint32_t& ready);

// Sends basic.publish of `message` (method, header and body frames); returns
// AMQP_STATUS_OK or rabbitmq-c's error. Does not wait for a confirm.
int SendPublish(amqp_connection_state_t connection, amqp_channel_t channel,
                const AmqpMessage& message);

// Opens `channel` and consumes `options.queue` on it: channel.open,
// basic.qos (prefetch_count = options.prefetch, per consumer) and
// basic.consume without auto-ack, each waiting for its answer. Returns the
// first answer that is not the expected one, or basic.consume-ok.
amqp_rpc_reply_t StartConsuming(amqp_connection_state_t connection, amqp_channel_t channel,
                                const AmqpConsumerOptions& options);

// Sends channel.close on `channel` without waiting for its close-ok, which
// arrives among the other frames.
int SendChannelClose(amqp_connection_state_t connection, amqp_channel_t channel);

// Copies into `delivery` what it takes from a content header's properties:
// message_id, the headers whose values are strings and x-delivery-count
// (of any integer type).
void CopyProperties(const amqp_basic_properties_t& properties, AmqpDelivery& delivery);

}  // namespace switchboard::broker::amqp
