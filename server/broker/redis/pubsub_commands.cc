#include "server/broker/redis/pubsub_commands.h"

#include <utility>

#include "server/common/names.h"

namespace switchboard::broker::redis {

Command PublishCommand(absl::string_view channel, absl::string_view value) {
  return Command::Of({"PUBLISH", channel, value});
}

Command SubscribeCommand(absl::string_view pattern) {
  return Command::Of({common::IsTopicPrefixPattern(pattern) ? "PSUBSCRIBE" : "SUBSCRIBE", pattern});
}

Command UnsubscribeCommand(absl::string_view pattern) {
  return Command::Of(
      {common::IsTopicPrefixPattern(pattern) ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", pattern});
}

std::optional<Push> ReadPush(Reply push) {
  if (!push.is_array() || push.elements.size() < 3) return std::nullopt;
  std::vector<Reply>& elements = push.elements;
  const std::string& kind = elements[0].str;
  if (kind == "message") {
    std::string topic = elements[1].str;
    return Push{Push::Kind::kMessage, std::move(elements[1].str), std::move(topic),
                std::move(elements[2].str)};
  }
  if (kind == "pmessage" && elements.size() == 4) {
    return Push{Push::Kind::kMessage, std::move(elements[1].str), std::move(elements[2].str),
                std::move(elements[3].str)};
  }
  if (kind == "subscribe" || kind == "psubscribe") {
    return Push{Push::Kind::kSubscribed, std::move(elements[1].str), "", ""};
  }
  if (kind == "unsubscribe" || kind == "punsubscribe") {
    return Push{Push::Kind::kUnsubscribed, std::move(elements[1].str), "", ""};
  }
  return std::nullopt;
}

}  // namespace switchboard::broker::redis
