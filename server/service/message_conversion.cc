#include "server/service/message_conversion.h"

#include <utility>

namespace switchboard::service {

void ToReceivedMessage(broker::Message&& message, v1::ReceivedMessage& out) {
  out.set_message_id(std::move(message.id));
  out.set_topic(std::move(message.topic));
  out.set_payload(std::move(message.payload));
  auto& attributes = *out.mutable_attributes();
  for (auto& [key, value] : message.attributes) attributes[key] = std::move(value);
  const int64_t nanos = absl::ToUnixNanos(message.publish_time);
  out.mutable_publish_time()->set_seconds(nanos / 1000000000);
  out.mutable_publish_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  out.set_ordering_key(std::move(message.ordering_key));
}

}  // namespace switchboard::service
