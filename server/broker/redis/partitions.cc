#include "server/broker/redis/partitions.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace switchboard::broker::redis {
namespace {

// Compare-and-renew and compare-and-delete of an owner key: only the owner
// may extend or give up its partition.
constexpr char kRenewScript[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
constexpr char kTakeScript[] =
    "local taken = {} "
    "for i, key in ipairs(KEYS) do "
    "if #taken >= tonumber(ARGV[3]) then break end "
    "if redis.call('set', key, ARGV[1], 'NX', 'PX', ARGV[2]) then taken[#taken + 1] = i end "
    "end "
    "return taken";
constexpr char kReleaseScript[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end";

std::string Millis(absl::Duration duration) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(duration)));
}

}  // namespace

uint32_t PartitionOf(absl::string_view ordering_key, uint32_t partitions) {
  uint32_t hash = 2166136261u;  // FNV-1a, 32 bits.
  for (unsigned char c : ordering_key) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash % partitions;
}

std::string PartitionStream(absl::string_view topic, uint32_t partition) {
  return absl::StrCat(topic, "#", partition);
}

std::string PartitionedId(absl::string_view entry_id, uint32_t partition) {
  return absl::StrCat(entry_id, "#", partition);
}

SplitId SplitMessageId(absl::string_view id) {
  const size_t hash = id.rfind('#');
  uint32_t partition = 0;
  if (hash == absl::string_view::npos || !absl::SimpleAtoi(id.substr(hash + 1), &partition)) {
    return SplitId{id, std::nullopt};
  }
  return SplitId{id.substr(0, hash), partition};
}

std::string OwnerKey(absl::string_view topic, absl::string_view group, uint32_t partition) {
  return absl::StrCat("switchboard:owner:", topic, "#", partition, "/", group);
}

std::string MembersKey(absl::string_view topic, absl::string_view group) {
  return absl::StrCat("switchboard:members:", topic, "/", group);
}

Command TakeCommand(absl::string_view topic, absl::string_view group,
                    const std::vector<uint32_t>& partitions, absl::string_view consumer,
                    absl::Duration ttl, uint32_t count) {
  Command command(3 + partitions.size() + 3);
  command.Add("EVAL").Add(kTakeScript).Add(static_cast<int64_t>(partitions.size()));
  for (uint32_t partition : partitions) command.Add(OwnerKey(topic, group, partition));
  command.Add(consumer).Add(Millis(ttl)).Add(int64_t{count});
  return command;
}

Command RenewCommand(absl::string_view topic, absl::string_view group, uint32_t partition,
                     absl::string_view consumer, absl::Duration ttl) {
  return Command::Of(
      {"EVAL", kRenewScript, "1", OwnerKey(topic, group, partition), consumer, Millis(ttl)});
}

Command ReleaseCommand(absl::string_view topic, absl::string_view group, uint32_t partition,
                       absl::string_view consumer) {
  return Command::Of({"EVAL", kReleaseScript, "1", OwnerKey(topic, group, partition), consumer});
}

Command JoinCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer,
                    absl::Time until) {
  return Command::Of(
      {"ZADD", MembersKey(topic, group), absl::StrCat(absl::ToUnixMillis(until)), consumer});
}

Command ExpireMembersCommand(absl::string_view topic, absl::string_view group, absl::Time now) {
  return Command::Of({"ZREMRANGEBYSCORE", MembersKey(topic, group), "-inf",
                      absl::StrCat(absl::ToUnixMillis(now))});
}

Command CountMembersCommand(absl::string_view topic, absl::string_view group) {
  return Command::Of({"ZCARD", MembersKey(topic, group)});
}

Command LeaveCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer) {
  return Command::Of({"ZREM", MembersKey(topic, group), consumer});
}

std::vector<uint32_t> TakenPartitions(const absl::StatusOr<Reply>& reply,
                                      const std::vector<uint32_t>& tried) {
  std::vector<uint32_t> taken;
  if (!reply.ok() || !reply->is_array()) return taken;
  for (const Reply& position : reply->elements) {
    if (position.type != Reply::Type::kInteger || position.integer < 1 ||
        position.integer > static_cast<int64_t>(tried.size())) {
      continue;
    }
    taken.push_back(tried[position.integer - 1]);
  }
  return taken;
}

bool Renewed(const absl::StatusOr<Reply>& reply) {
  return reply.ok() && reply->type == Reply::Type::kInteger && reply->integer == 1;
}

uint32_t FairShare(uint32_t partitions, int64_t members) {
  if (members <= 1) return partitions;
  return static_cast<uint32_t>((int64_t{partitions} + members - 1) / members);
}

}  // namespace switchboard::broker::redis
