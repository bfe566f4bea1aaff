// The rabbitmq-c calls of the AMQP backend: declarations and publishes as
// AMQP methods, and rabbitmq-c's results as absl::Status.
//
// Internal to server/broker/amqp: AmqpConnection's I/O thread calls these on
// the connection it owns. Each takes the connection and a channel and does
// no locking; the synchronous ones wait at most the connection's RPC timeout
// (amqp_set_rpc_timeout), after which rabbitmq-c closes the socket.
#pragma once

#include <amqp.h>

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

// Sends `declaration` and waits for its answer.
amqp_rpc_reply_t SendDeclaration(amqp_connection_state_t connection, amqp_channel_t channel,
                                 const Declaration& declaration);

// Sends basic.publish of `message` (method, header and body frames); returns
// AMQP_STATUS_OK or rabbitmq-c's error. Does not wait for a confirm.
int SendPublish(amqp_connection_state_t connection, amqp_channel_t channel,
                const AmqpMessage& message);

}  // namespace switchboard::broker::amqp
