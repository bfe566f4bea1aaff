#include "server/broker/redis/stream_commands.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/broker/redis/message_codec.h"

namespace switchboard::broker::redis {
namespace {

// `XCLAIM <topic> <group> <consumer> 0 <id>...` with room for `extra`
// arguments after the ids.
Command ClaimPrefix(absl::string_view topic, absl::string_view group, absl::string_view consumer,
                    const std::vector<std::string>& ids, size_t extra) {
  Command command(5 + ids.size() + extra);
  command.Add("XCLAIM").Add(topic).Add(group).Add(consumer).Add("0");
  for (const std::string& id : ids) command.Add(id);
  return command;
}

}  // namespace

Command CreateGroupCommand(absl::string_view topic, absl::string_view group) {
  return Command::Of({"XGROUP", "CREATE", topic, group, "0", "MKSTREAM"});
}

Command ReadGroupCommand(absl::string_view group, absl::string_view consumer,
                         const std::vector<absl::string_view>& topics, uint32_t count,
                         std::optional<absl::Duration> block) {
  Command command(7 + (block ? 2 : 0) + 2 * topics.size());
  command.Add("XREADGROUP").Add("GROUP").Add(group).Add(consumer);
  command.Add("COUNT").Add(int64_t{count});
  if (block) command.Add("BLOCK").Add(absl::ToInt64Milliseconds(*block));
  command.Add("STREAMS");
  for (absl::string_view topic : topics) command.Add(topic);
  for (size_t i = 0; i < topics.size(); ++i) command.Add(">");
  return command;
}

Command ClaimCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer,
                     const std::vector<std::string>& ids) {
  return ClaimPrefix(topic, group, consumer, ids, 0);
}

Command RefreshIdleCommand(absl::string_view topic, absl::string_view group,
                           absl::string_view consumer, const std::vector<std::string>& ids) {
  Command command = ClaimPrefix(topic, group, consumer, ids, 1);
  command.Add("JUSTID");
  return command;
}

Command ReleaseIdleCommand(absl::string_view topic, absl::string_view group,
                           absl::string_view consumer, const std::vector<std::string>& ids,
                           absl::Duration idle) {
  Command command = ClaimPrefix(topic, group, consumer, ids, 3);
  command.Add("IDLE").Add(absl::ToInt64Milliseconds(idle));
  command.Add("JUSTID");
  return command;
}

Command AckCommand(absl::string_view topic, absl::string_view group,
                   const std::vector<std::string>& ids) {
  Command command(3 + ids.size());
  command.Add("XACK").Add(topic).Add(group);
  for (const std::string& id : ids) command.Add(id);
  return command;
}

Command AutoClaimCommand(absl::string_view topic, absl::string_view group,
                         absl::string_view consumer, absl::Duration min_idle,
                         absl::string_view cursor, uint32_t count) {
  return Command::Of({"XAUTOCLAIM", topic, group, consumer,
                      absl::StrCat(absl::ToInt64Milliseconds(min_idle)), cursor, "COUNT",
                      absl::StrCat(count)});
}

Command PendingEntryCommand(absl::string_view topic, absl::string_view group,
                            absl::string_view id) {
  return Command::Of({"XPENDING", topic, group, id, id, "1"});
}

Command GroupsInfoCommand(absl::string_view topic) {
  return Command::Of({"XINFO", "GROUPS", topic});
}

std::string NackDelaysKey(absl::string_view topic) {
  return absl::StrCat("switchboard:nack-delays:", topic);
}

Command RecordDelayCommand(absl::string_view topic, absl::string_view group, absl::string_view id,
                           absl::Time end) {
  // Rounded up: the delay is never cut short.
  const int64_t end_ms = absl::ToUnixMillis(end + absl::Milliseconds(1) - absl::Nanoseconds(1));
  return Command::Of(
      {"ZADD", NackDelaysKey(topic), absl::StrCat(end_ms), absl::StrCat(group, " ", id)});
}

Command DelayEndCommand(absl::string_view topic, absl::string_view group, absl::string_view id) {
  return Command::Of({"ZSCORE", NackDelaysKey(topic), absl::StrCat(group, " ", id)});
}

Command ForgetEndedDelaysCommand(absl::string_view topic, absl::Time now) {
  return Command::Of(
      {"ZREMRANGEBYSCORE", NackDelaysKey(topic), "-inf", absl::StrCat(absl::ToUnixMillis(now))});
}

bool IsNoGroup(const absl::StatusOr<Reply>& reply) {
  return reply.ok() && reply->is_error() && HasErrorCode(reply->str, "NOGROUP");
}

bool IsStaleIdError(const Reply& reply) {
  return reply.is_error() && absl::StrContains(reply.str, "equal or smaller");
}

std::vector<StreamEntries> ReadGroupEntries(const Reply& reply) {
  std::vector<StreamEntries> streams;
  if (!reply.is_array()) return streams;
  for (const Reply& stream : reply.elements) {
    if (!stream.is_array() || stream.elements.size() != 2) continue;
    StreamEntries& entries = streams.emplace_back();
    entries.topic = stream.elements[0].str;
    for (const Reply& entry : stream.elements[1].elements) {
      std::optional<Message> message = MessageFromStreamEntry(entry, entries.topic);
      if (message) entries.messages.push_back(*std::move(message));
    }
  }
  return streams;
}

std::set<std::string> ClaimedIds(const Reply& reply) {
  std::set<std::string> ids;
  for (const Reply& entry : reply.elements) {
    if (entry.is_array() && !entry.elements.empty()) ids.insert(entry.elements[0].str);
  }
  return ids;
}

std::optional<AutoClaimed> AutoClaimedEntries(const Reply& reply, absl::string_view topic) {
  if (!reply.is_array() || reply.elements.size() < 2) return std::nullopt;
  AutoClaimed claimed;
  claimed.cursor = reply.elements[0].str;
  for (const Reply& entry : reply.elements[1].elements) {
    std::optional<Message> message = MessageFromStreamEntry(entry, topic);
    if (message) claimed.messages.push_back(*std::move(message));
  }
  return claimed;
}

std::optional<uint32_t> PendingDeliveryCount(const absl::StatusOr<Reply>& reply) {
  if (!reply.ok() || !reply->is_array() || reply->elements.size() != 1 ||
      reply->elements[0].elements.size() != 4) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(reply->elements[0].elements[3].integer);
}

std::optional<int64_t> GroupLag(const Reply& reply, absl::string_view group) {
  for (const Reply& info : reply.elements) {
    bool named = false;
    std::optional<int64_t> lag;
    for (size_t i = 0; i + 1 < info.elements.size(); i += 2) {
      const std::string& field = info.elements[i].str;
      const Reply& value = info.elements[i + 1];
      if (field == "name") named = value.str == group;
      if (field == "lag" && value.type == Reply::Type::kInteger) lag = value.integer;
    }
    if (named) return lag;
  }
  return std::nullopt;
}

std::optional<absl::Time> DelayEnd(const absl::StatusOr<Reply>& reply) {
  if (!reply.ok() || !reply->is_string()) return std::nullopt;
  double ms = 0;
  // Anything but a plausible Unix time in ms (not a number, or out of
  // int64's range) is no recorded delay.
  if (!absl::SimpleAtod(reply->str, &ms) || !(ms >= 0 && ms < 9.2e18)) return std::nullopt;
  return absl::FromUnixMillis(static_cast<int64_t>(ms));
}

std::string DeadLetterId(absl::Time publish_time, absl::Time now) {
  const int64_t original_ms = absl::ToUnixMillis(publish_time);
  return absl::StrCat(std::max(absl::ToUnixMillis(now), original_ms + 1), "-*");
}

}  // namespace switchboard::broker::redis
