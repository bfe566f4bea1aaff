#include "server/broker/amqp/wire.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace switchboard::broker::amqp {
namespace {

// rabbitmq-c takes bytes by pointer and length and copies them into its
// frames before the call returns.
amqp_bytes_t Bytes(const std::string& text) {
  return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}

std::string ToString(amqp_bytes_t bytes) {
  return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

// A table of x-arguments or headers, pointing into the caller's strings: keep
// them alive and unchanged while the table is used.
class Table {
 public:
  void Add(const std::string& key, const std::string& value) {
    amqp_table_entry_t entry;
    entry.key = Bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = Bytes(value);
    entries_.push_back(entry);
  }

  void Add(const std::string& key, int64_t value) {
    amqp_table_entry_t entry;
    entry.key = Bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_I64;
    entry.value.value.i64 = value;
    entries_.push_back(entry);
  }

  amqp_table_t get() {
    return entries_.empty() ? amqp_empty_table
                            : amqp_table_t{static_cast<int>(entries_.size()), entries_.data()};
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

amqp_rpc_reply_t Declare(amqp_connection_state_t connection, amqp_channel_t channel,
                         const ExchangeDeclaration& exchange) {
  amqp_exchange_declare(connection, channel, Bytes(exchange.name), Bytes(exchange.type),
                        /*passive=*/0, exchange.durable ? 1 : 0, exchange.auto_delete ? 1 : 0,
                        /*internal=*/0, amqp_empty_table);
  return amqp_get_rpc_reply(connection);
}

amqp_rpc_reply_t Declare(amqp_connection_state_t connection, amqp_channel_t channel,
                         const QueueDeclaration& queue) {
  Table arguments;
  for (const auto& [key, value] : queue.arguments) {
    if (const auto* text = std::get_if<std::string>(&value)) {
      arguments.Add(key, *text);
    } else {
      arguments.Add(key, std::get<int64_t>(value));
    }
  }
  amqp_queue_declare(connection, channel, Bytes(queue.name), /*passive=*/0, queue.durable ? 1 : 0,
                     queue.exclusive ? 1 : 0, queue.auto_delete ? 1 : 0, arguments.get());
  return amqp_get_rpc_reply(connection);
}

amqp_rpc_reply_t Declare(amqp_connection_state_t connection, amqp_channel_t channel,
                         const BindingDeclaration& binding) {
  amqp_queue_bind(connection, channel, Bytes(binding.queue), Bytes(binding.exchange),
                  Bytes(binding.binding_key), amqp_empty_table);
  return amqp_get_rpc_reply(connection);
}

// A header's integer value, whatever width the broker encoded it in
// (RabbitMQ picks by value: x-delivery-count may come as any of these).
std::optional<int64_t> IntegerValue(const amqp_field_value_t& value) {
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
      return static_cast<int64_t>(std::min<uint64_t>(value.value.u64, INT64_MAX));
    default:
      return std::nullopt;
  }
}

}  // namespace

absl::Status LibraryStatus(int code, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", amqp_error_string2(code));
  if (code == AMQP_STATUS_TIMEOUT || code == AMQP_STATUS_HEARTBEAT_TIMEOUT) {
    return absl::DeadlineExceededError(message);
  }
  return absl::UnavailableError(message);
}

absl::Status ChannelCloseStatus(const amqp_channel_close_t& close, absl::string_view what) {
  const std::string message = absl::StrCat(
      what, ": channel closed by the broker: ", close.reply_code, " ", ToString(close.reply_text));
  switch (close.reply_code) {
    case AMQP_NOT_FOUND:
      return absl::NotFoundError(message);
    case AMQP_ACCESS_REFUSED:
      return absl::PermissionDeniedError(message);
    case AMQP_PRECONDITION_FAILED:
    case AMQP_RESOURCE_LOCKED:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status ReplyStatus(const amqp_rpc_reply_t& reply, absl::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return absl::OkStatus();
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return LibraryStatus(reply.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        return ChannelCloseStatus(*static_cast<const amqp_channel_close_t*>(reply.reply.decoded),
                                  what);
      }
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return absl::UnavailableError(
            absl::StrCat(what, ": connection closed by the broker: ", close->reply_code, " ",
                         ToString(close->reply_text)));
      }
      return absl::InternalError(absl::StrCat(what, ": unexpected method ", reply.reply.id));
    default:
      return absl::InternalError(absl::StrCat(what, ": no reply"));
  }
}

bool IsChannelClose(const amqp_rpc_reply_t& reply) {
  return reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
         reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD;
}

int SendChannelCloseOk(amqp_connection_state_t connection, amqp_channel_t channel) {
  amqp_channel_close_ok_t close_ok{};
  return amqp_send_method(connection, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
}

int SendConnectionCloseOk(amqp_connection_state_t connection) {
  amqp_connection_close_ok_t close_ok{};
  return amqp_send_method(connection, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
}

amqp_rpc_reply_t LogIn(amqp_connection_state_t connection, const AmqpConnectionOptions& options,
                       const std::string& connection_name) {
  amqp_table_entry_t capability;
  capability.key = amqp_cstring_bytes("consumer_cancel_notify");
  capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  capability.value.value.boolean = 1;
  // rabbitmq-c merges these into its own properties, a table into its
  // table of the same key: its capabilities stay.
  amqp_table_entry_t entries[2];
  entries[0].key = amqp_cstring_bytes("connection_name");
  entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[0].value.value.bytes = Bytes(connection_name);
  entries[1].key = amqp_cstring_bytes("capabilities");
  entries[1].value.kind = AMQP_FIELD_KIND_TABLE;
  entries[1].value.value.table = amqp_table_t{1, &capability};
  const amqp_table_t properties{2, entries};
  return amqp_login_with_properties(
      connection, options.vhost.c_str(), /*channel_max=*/0, AMQP_DEFAULT_FRAME_SIZE,
      static_cast<int>(absl::ToInt64Seconds(options.heartbeat)), &properties,
      AMQP_SASL_METHOD_PLAIN, options.user.c_str(), options.password.c_str());
}

amqp_rpc_reply_t SendDeclaration(amqp_connection_state_t connection, amqp_channel_t channel,
                                 const Declaration& declaration) {
  return std::visit([&](const auto& what) { return Declare(connection, channel, what); },
                    declaration);
}

amqp_rpc_reply_t SendUnbind(amqp_connection_state_t connection, amqp_channel_t channel,
                            const BindingDeclaration& binding) {
  amqp_queue_unbind(connection, channel, Bytes(binding.queue), Bytes(binding.exchange),
                    Bytes(binding.binding_key), amqp_empty_table);
  return amqp_get_rpc_reply(connection);
}

amqp_rpc_reply_t CountReadyMessages(amqp_connection_state_t connection, amqp_channel_t channel,
                                    const std::string& queue, uint32_t& ready) {
  const amqp_queue_declare_ok_t* ok =
      amqp_queue_declare(connection, channel, Bytes(queue), /*passive=*/1, /*durable=*/0,
                         /*exclusive=*/0, /*auto_delete=*/0, amqp_empty_table);
  const amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection);
  if (ok != nullptr && reply.reply_type == AMQP_RESPONSE_NORMAL) ready = ok->message_count;
  return reply;
}

int SendPublish(amqp_connection_state_t connection, amqp_channel_t channel,
                const AmqpMessage& message) {
  amqp_basic_properties_t properties{};
  properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  properties.delivery_mode =
      message.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
  if (!message.message_id.empty()) {
    properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    properties.message_id = Bytes(message.message_id);
  }
  Table headers;
  for (const auto& [key, value] : message.headers) headers.Add(key, value);
  if (!message.headers.empty()) {
    properties._flags |= AMQP_BASIC_HEADERS_FLAG;
    properties.headers = headers.get();
  }
  return amqp_basic_publish(connection, channel, Bytes(message.exchange),
                            Bytes(message.routing_key), /*mandatory=*/0, /*immediate=*/0,
                            &properties, Bytes(message.body));
}

amqp_rpc_reply_t StartConsuming(amqp_connection_state_t connection, amqp_channel_t channel,
                                const AmqpConsumerOptions& options) {
  amqp_channel_open(connection, channel);
  amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection);
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) return reply;
  // global = false: RabbitMQ applies the limit to each new consumer of the
  // channel, here its only one.
  amqp_basic_qos(connection, channel, /*prefetch_size=*/0, options.prefetch, /*global=*/0);
  reply = amqp_get_rpc_reply(connection);
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) return reply;
  amqp_basic_consume(connection, channel, Bytes(options.queue), /*consumer_tag=*/amqp_empty_bytes,
                     /*no_local=*/0, /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
  return amqp_get_rpc_reply(connection);
}

int SendChannelClose(amqp_connection_state_t connection, amqp_channel_t channel) {
  amqp_channel_close_t close{};
  close.reply_code = AMQP_REPLY_SUCCESS;
  close.reply_text = amqp_cstring_bytes("consumer stopped");
  return amqp_send_method(connection, channel, AMQP_CHANNEL_CLOSE_METHOD, &close);
}

void CopyProperties(const amqp_basic_properties_t& properties, AmqpDelivery& delivery) {
  if (properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
    delivery.message_id = ToString(properties.message_id);
  }
  if ((properties._flags & AMQP_BASIC_HEADERS_FLAG) == 0) return;
  const amqp_table_t& headers = properties.headers;
  for (int i = 0; i < headers.num_entries; ++i) {
    const amqp_table_entry_t& entry = headers.entries[i];
    std::string key = ToString(entry.key);
    if (entry.value.kind == AMQP_FIELD_KIND_UTF8 || entry.value.kind == AMQP_FIELD_KIND_BYTES) {
      delivery.headers[std::move(key)] = ToString(entry.value.value.bytes);
    } else if (key == "x-delivery-count") {
      const std::optional<int64_t> count = IntegerValue(entry.value);
      if (count.has_value()) {
        delivery.delivery_count = static_cast<uint32_t>(std::clamp<int64_t>(*count, 0, UINT32_MAX));
      }
    }
  }
}

}  // namespace switchboard::broker::amqp
