// The Redis Pub/Sub commands of the Redis backend's ephemeral topics, and the
// reader of what the subscriber connection pushes.
//
// Used by PubSubChannels, RedisBroker's publishing and SyncBarrier on the
// broker's dispatcher; kept apart so they are unit-tested without a
// redis-server (tests/unit/redis/pubsub_commands_test.cc). Pure functions,
// any thread.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/reply.h"

namespace switchboard::broker::redis {

// `PUBLISH <channel> <value>`.
Command PublishCommand(absl::string_view channel, absl::string_view value);

// `PSUBSCRIBE <pattern>` for a prefix pattern ("news.*": topic names have no
// glob characters, so the pattern is its own Redis glob), else
// `SUBSCRIBE <topic>`.
Command SubscribeCommand(absl::string_view pattern);

// `PUNSUBSCRIBE` or `UNSUBSCRIBE`, as SubscribeCommand() chose.
Command UnsubscribeCommand(absl::string_view pattern);

// One push of the subscriber connection.
struct Push {
  enum class Kind { kMessage, kSubscribed, kUnsubscribed };

  Kind kind;
  // The subscription it concerns: the topic of a SUBSCRIBE, the pattern of
  // a PSUBSCRIBE.
  std::string pattern;
  std::string topic;  // kMessage: the topic it was published on.
  std::string value;  // kMessage: the PUBLISH value.
};

// Reads `push` (a message, pmessage, (p)subscribe or (p)unsubscribe array),
// taking its strings. Nothing for any other reply.
std::optional<Push> ReadPush(Reply push);

}  // namespace switchboard::broker::redis
