// AmqpClient: a blocking rabbitmq-c connection with one channel, as a test
// drives it, to set up and check what the code under test sees on a real
// RabbitMQ node (tests/testing/rabbitmq_server.h): declare exchanges and
// quorum queues, publish with confirms, fetch with basic.get, ack.
//
// Used by the tests of tests/integration/amqp. Each call waits for the
// broker's answer (up to kTimeout). Not thread-safe: one thread per client.
#pragma once

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace switchboard::testing {

constexpr amqp_channel_t kChannel = 1;
constexpr absl::Duration kTimeout = absl::Seconds(10);

inline std::string ToString(amqp_bytes_t bytes) {
  return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

inline amqp_bytes_t Bytes(const std::string& text) {
  return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}

// The status of a synchronous rabbitmq-c call: the library's error, or the
// broker's channel.close / connection.close reply.
inline absl::Status ReplyStatus(const amqp_rpc_reply_t& reply, absl::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return absl::OkStatus();
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return absl::UnavailableError(
          absl::StrCat(what, ": ", amqp_error_string2(reply.library_error)));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": channel closed: ", close->reply_code, " ", ToString(close->reply_text)));
      }
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": connection closed: ", close->reply_code, " ", ToString(close->reply_text)));
      }
      return absl::InternalError(absl::StrCat(what, ": server method ", reply.reply.id));
    default:
      return absl::InternalError(absl::StrCat(what, ": no reply"));
  }
}

// A header's integer value, whatever width the broker encoded it in.
inline std::optional<int64_t> IntegerValue(const amqp_field_value_t& value) {
  switch (value.kind) {
    case AMQP_FIELD_KIND_I8:
      return value.value.i8;
    case AMQP_FIELD_KIND_U8:
      return value.value.u8;
    case AMQP_FIELD_KIND_I16:
      return value.value.i16;
    case AMQP_FIELD_KIND_U16:
      return value.value.u16;
    case AMQP_FIELD_KIND_I32:
      return value.value.i32;
    case AMQP_FIELD_KIND_U32:
      return value.value.u32;
    case AMQP_FIELD_KIND_I64:
      return value.value.i64;
    case AMQP_FIELD_KIND_U64:
      return static_cast<int64_t>(value.value.u64);
    default:
      return std::nullopt;
  }
}

// One message fetched with basic.get.
struct Delivery {
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string body;
  std::string message_id;
  // The quorum queue's x-delivery-count header, when present.
  std::optional<int64_t> delivery_count;
};

// A blocking rabbitmq-c connection with one channel, as a test drives it.
// Every call waits for the broker's answer (up to kTimeout).
class AmqpClient {
 public:
  // Connects to 127.0.0.1:`port` as guest, naming the connection
  // `connection_name` (client property connection_name), and opens channel
  // kChannel.
  static absl::StatusOr<std::unique_ptr<AmqpClient>> Connect(int port,
                                                             const std::string& connection_name) {
    std::unique_ptr<AmqpClient> client(new AmqpClient());
    amqp_socket_t* socket = amqp_tcp_socket_new(client->connection_);
    if (socket == nullptr) return absl::InternalError("amqp_tcp_socket_new failed");
    timeval timeout = absl::ToTimeval(kTimeout);
    const int opened = amqp_socket_open_noblock(socket, "127.0.0.1", port, &timeout);
    if (opened != AMQP_STATUS_OK) {
      return absl::UnavailableError(absl::StrCat("connect: ", amqp_error_string2(opened)));
    }
    amqp_set_handshake_timeout(client->connection_, &timeout);
    amqp_set_rpc_timeout(client->connection_, &timeout);
    amqp_table_entry_t name;
    name.key = amqp_cstring_bytes("connection_name");
    name.value.kind = AMQP_FIELD_KIND_UTF8;
    name.value.value.bytes = Bytes(connection_name);
    const amqp_table_t properties{1, &name};
    absl::Status status = ReplyStatus(
        amqp_login_with_properties(client->connection_, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                   &properties, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
        "login");
    if (!status.ok()) return status;
    client->logged_in_ = true;
    amqp_channel_open(client->connection_, kChannel);
    if (status = client->LastReply("channel.open"); !status.ok()) return status;
    client->channel_open_ = true;
    return client;
  }

  ~AmqpClient() {
    if (channel_open_) amqp_channel_close(connection_, kChannel, AMQP_REPLY_SUCCESS);
    if (logged_in_) amqp_connection_close(connection_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(connection_);
  }

  // Publisher confirms on the channel: PublishConfirmed() waits for each.
  absl::Status ConfirmSelect() {
    amqp_confirm_select(connection_, kChannel);
    return LastReply("confirm.select");
  }

  absl::Status DeclareDurableTopicExchange(const std::string& exchange) {
    amqp_exchange_declare(connection_, kChannel, Bytes(exchange), amqp_cstring_bytes("topic"),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                          amqp_empty_table);
    return LastReply("exchange.declare");
  }

  // Declares a durable quorum queue (or, `passive`, checks that it exists)
  // and returns its ready message count.
  absl::StatusOr<uint32_t> DeclareQuorumQueue(const std::string& queue, bool passive = false) {
    amqp_table_entry_t type;
    type.key = amqp_cstring_bytes("x-queue-type");
    type.value.kind = AMQP_FIELD_KIND_UTF8;
    type.value.value.bytes = amqp_cstring_bytes("quorum");
    const amqp_table_t arguments{1, &type};
    const amqp_queue_declare_ok_t* ok = amqp_queue_declare(
        connection_, kChannel, Bytes(queue), passive ? 1 : 0, /*durable=*/1, /*exclusive=*/0,
        /*auto_delete=*/0, passive ? amqp_empty_table : arguments);
    if (absl::Status status = LastReply("queue.declare"); !status.ok()) return status;
    return ok->message_count;
  }

  absl::Status Bind(const std::string& queue, const std::string& exchange,
                    const std::string& binding_key) {
    amqp_queue_bind(connection_, kChannel, Bytes(queue), Bytes(exchange), Bytes(binding_key),
                    amqp_empty_table);
    return LastReply("queue.bind");
  }

  // Publishes a persistent message and waits for the broker's confirm of it
  // (ConfirmSelect() first): FAILED_PRECONDITION on a basic.nack.
  absl::Status PublishConfirmed(const std::string& exchange, const std::string& routing_key,
                                const std::string& body, const std::string& message_id) {
    amqp_basic_properties_t properties{};
    properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    properties.message_id = Bytes(message_id);
    const int published =
        amqp_basic_publish(connection_, kChannel, Bytes(exchange), Bytes(routing_key),
                           /*mandatory=*/0, /*immediate=*/0, &properties, Bytes(body));
    if (published != AMQP_STATUS_OK) {
      return absl::UnavailableError(absl::StrCat("publish: ", amqp_error_string2(published)));
    }
    const uint64_t tag = ++published_;
    const absl::Time deadline = absl::Now() + kTimeout;
    while (true) {
      timeval timeout = absl::ToTimeval(std::max(deadline - absl::Now(), absl::ZeroDuration()));
      amqp_frame_t frame;
      const int waited = amqp_simple_wait_frame_noblock(connection_, &frame, &timeout);
      if (waited != AMQP_STATUS_OK) {
        return absl::DeadlineExceededError(
            absl::StrCat("no confirm of delivery tag ", tag, ": ", amqp_error_string2(waited)));
      }
      if (frame.frame_type != AMQP_FRAME_METHOD || frame.channel != kChannel) continue;
      if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        if (ack->delivery_tag == tag || (ack->multiple && ack->delivery_tag > tag)) {
          return absl::OkStatus();
        }
      } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        return absl::FailedPreconditionError(absl::StrCat("delivery tag ", tag, " nacked"));
      }
    }
  }

  // basic.get without auto-ack: nullopt when the queue is empty.
  absl::StatusOr<std::optional<Delivery>> Get(const std::string& queue) {
    const amqp_rpc_reply_t reply =
        amqp_basic_get(connection_, kChannel, Bytes(queue), /*no_ack=*/0);
    if (absl::Status status = ReplyStatus(reply, "basic.get"); !status.ok()) return status;
    if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
    const auto* ok = static_cast<const amqp_basic_get_ok_t*>(reply.reply.decoded);
    Delivery delivery;
    delivery.delivery_tag = ok->delivery_tag;
    delivery.redelivered = ok->redelivered != 0;
    amqp_message_t message;
    if (absl::Status status =
            ReplyStatus(amqp_read_message(connection_, kChannel, &message, 0), "read message");
        !status.ok()) {
      return status;
    }
    delivery.body = ToString(message.body);
    if (message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
      delivery.message_id = ToString(message.properties.message_id);
    }
    if (message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
      const amqp_table_t& headers = message.properties.headers;
      for (int i = 0; i < headers.num_entries; ++i) {
        if (ToString(headers.entries[i].key) == "x-delivery-count") {
          delivery.delivery_count = IntegerValue(headers.entries[i].value);
        }
      }
    }
    amqp_destroy_message(&message);
    amqp_maybe_release_buffers(connection_);
    return delivery;
  }

  // basic.ack and basic.reject are asynchronous: a broker that refuses one
  // closes the channel, which the next synchronous call reports.
  absl::Status Ack(uint64_t delivery_tag) {
    return SentStatus(amqp_basic_ack(connection_, kChannel, delivery_tag, /*multiple=*/0),
                      "basic.ack");
  }

  absl::Status Reject(uint64_t delivery_tag, bool requeue) {
    return SentStatus(amqp_basic_reject(connection_, kChannel, delivery_tag, requeue ? 1 : 0),
                      "basic.reject");
  }

 private:
  AmqpClient() : connection_(amqp_new_connection()) {}

  absl::Status LastReply(absl::string_view what) {
    return ReplyStatus(amqp_get_rpc_reply(connection_), what);
  }

  static absl::Status SentStatus(int sent, absl::string_view what) {
    if (sent == AMQP_STATUS_OK) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(what, ": ", amqp_error_string2(sent)));
  }

  amqp_connection_state_t connection_;
  bool logged_in_ = false;
  bool channel_open_ = false;
  uint64_t published_ = 0;  // The last delivery tag under confirm.select.
};

}  // namespace switchboard::testing
