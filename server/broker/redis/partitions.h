// Ordering partitions of the Redis backend: where keyed messages live, and
// the Redis commands by which replicas share them out.
//
// A durable topic with `ordering_partitions: P` keeps its messages with an
// ordering key in P streams "<topic>#<p>", p = FNV-1a(key) mod P, so every
// message of a key is in one stream, in publish order ('#' is not a topic
// character: no partition stream is ever another topic). Messages without a
// key stay in the topic's own stream, read by every replica as before.
//
// For each (topic, group) one replica at a time owns a partition: the key
// OwnerKey() holds its consumer name, set with NX and a time to live and
// renewed by the owner's maintenance passes (compare-and-renew, a Lua
// script). The replicas with consume sessions of the group are members
// (MembersKey(), a sorted set scored by when each membership lapses), and
// each takes at most ceil(P / members) partitions: owners above their share
// give partitions back, and free ones are taken.
//
// A message of a partition has the id "<entry id>#<p>": entries of two
// streams can have the same id, and the consumer-group core keys messages by
// id.
//
// Used by StreamGroups and PartitionOwners on the broker's dispatcher; pure
// functions (unit-tested without a redis-server), any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/reply.h"

namespace switchboard::broker::redis {

// -- Where keyed messages live ------------------------------------------------

// The partition of `ordering_key` among `partitions` (> 0).
uint32_t PartitionOf(absl::string_view ordering_key, uint32_t partitions);

// "<topic>#<partition>".
std::string PartitionStream(absl::string_view topic, uint32_t partition);

// The message id of entry `entry_id` of a partition stream:
// "<entry id>#<partition>".
std::string PartitionedId(absl::string_view entry_id, uint32_t partition);

// A message id taken apart: the stream entry id, and the partition for an
// entry of a partition stream (nothing for the topic's own stream).
struct SplitId {
  absl::string_view entry_id;
  std::optional<uint32_t> partition;
};
SplitId SplitMessageId(absl::string_view id);

// -- Ownership ----------------------------------------------------------------

// "switchboard:owner:<topic>#<partition>/<group>".
std::string OwnerKey(absl::string_view topic, absl::string_view group, uint32_t partition);

// "switchboard:members:<topic>/<group>".
std::string MembersKey(absl::string_view topic, absl::string_view group);

// Takes at most `count` of `partitions` that nobody owns, trying them in
// the order given (`SET <owner key> <consumer> NX PX <ttl>` each, in one Lua
// script); TakenPartitions() reads which.
Command TakeCommand(absl::string_view topic, absl::string_view group,
                    const std::vector<uint32_t>& partitions, absl::string_view consumer,
                    absl::Duration ttl, uint32_t count);

// Renews the owner key's time to live if `consumer` still owns it (EVAL);
// replies 1 when renewed, 0 when not the owner.
Command RenewCommand(absl::string_view topic, absl::string_view group, uint32_t partition,
                     absl::string_view consumer, absl::Duration ttl);

// Deletes the owner key if `consumer` owns it (EVAL).
Command ReleaseCommand(absl::string_view topic, absl::string_view group, uint32_t partition,
                       absl::string_view consumer);

// `ZADD <members> <until ms> <consumer>`.
Command JoinCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer,
                    absl::Time until);

// `ZREMRANGEBYSCORE <members> -inf <now ms>`: forgets lapsed members.
Command ExpireMembersCommand(absl::string_view topic, absl::string_view group, absl::Time now);

// `ZCARD <members>`.
Command CountMembersCommand(absl::string_view topic, absl::string_view group);

// `ZREM <members> <consumer>`.
Command LeaveCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer);

// The partitions a TakeCommand() over `tried` took (its reply lists their
// 1-based positions in `tried`); none for any other reply.
std::vector<uint32_t> TakenPartitions(const absl::StatusOr<Reply>& reply,
                                      const std::vector<uint32_t>& tried);

// True when RenewCommand() renewed (integer 1).
bool Renewed(const absl::StatusOr<Reply>& reply);

// What a replica may own: ceil(partitions / members), all of them when
// `members` is 0.
uint32_t FairShare(uint32_t partitions, int64_t members);

}  // namespace switchboard::broker::redis
