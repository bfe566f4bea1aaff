#include "server/broker/amqp/message_codec.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/names.h"

namespace switchboard::broker::amqp {

MessageIdGenerator ReplicaMessageIds() {
  absl::BitGen random;
  return MessageIdGenerator(absl::Uniform<uint64_t>(random, 1, 1000000) * 1000000);
}

absl::StatusOr<AmqpMessage> EncodeMessage(const Message& message, const std::string& exchange,
                                          bool persistent) {
  if (message.topic.size() > kMaxShortStringBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("topic: the RabbitMQ backend routes topics of at most ", kMaxShortStringBytes,
                     " bytes (an AMQP routing key); this one has ", message.topic.size()));
  }
  AmqpMessage amqp;
  amqp.exchange = exchange;
  amqp.routing_key = message.topic;
  amqp.body = message.payload;
  amqp.message_id = message.id;
  amqp.persistent = persistent;
  for (const auto& [name, value] : message.attributes) {
    if (name.size() > kMaxShortStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attributes: the RabbitMQ backend carries attribute names of at most ",
          kMaxShortStringBytes, " bytes (an AMQP header name); one has ", name.size()));
    }
    amqp.headers.emplace(name, value);
  }
  amqp.headers[kPublishTimeHeader] = absl::StrCat(absl::ToUnixMicros(message.publish_time));
  if (!message.ordering_key.empty()) amqp.headers[kOrderingKeyHeader] = message.ordering_key;
  return amqp;
}

Message DecodeDelivery(AmqpDelivery delivery, absl::Time now) {
  Message message;
  message.topic = std::move(delivery.routing_key);
  message.payload = std::move(delivery.body);
  message.id = delivery.message_id.empty() ? absl::StrCat("0-", delivery.delivery_tag)
                                           : std::move(delivery.message_id);
  message.publish_time = now;
  for (auto& [name, value] : delivery.headers) {
    int64_t micros = 0;
    if (name == kPublishTimeHeader && absl::SimpleAtoi(value, &micros)) {
      message.publish_time = absl::FromUnixMicros(micros);
    } else if (name == kOrderingKeyHeader) {
      message.ordering_key = std::move(value);
    } else {
      message.attributes.emplace(name, std::move(value));
    }
  }
  return message;
}

std::string GroupQueueName(absl::string_view prefix, absl::string_view topic,
                           absl::string_view group) {
  std::string name = absl::StrCat(prefix, "/", topic, "/", group);
  if (name.size() <= kMaxShortStringBytes) return name;
  // Every replica and release must name the queue alike: absl::Hash is
  // seeded per process, so a fixed FNV-1a it is.
  uint64_t fnv = 14695981039346656037ull;
  for (unsigned char c : name) fnv = (fnv ^ c) * 1099511628211ull;
  const std::string suffix = absl::StrFormat("~%016x", fnv);
  name.resize(kMaxShortStringBytes - suffix.size());
  return absl::StrCat(name, suffix);
}

std::string BindingKeyFor(absl::string_view pattern) {
  if (!common::IsTopicPrefixPattern(pattern)) return std::string(pattern);
  const absl::string_view prefix = pattern.substr(0, pattern.size() - 1);
  const size_t dot = prefix.rfind('.');
  if (dot == absl::string_view::npos) return "#";
  return absl::StrCat(prefix.substr(0, dot + 1), "#");
}

}  // namespace switchboard::broker::amqp
