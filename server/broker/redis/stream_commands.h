// The Redis Streams commands of the Redis backend's consumer groups, and the
// readers of their replies.
//
// Used by StreamGroups, BlockingReads and LeaseKeeper on the broker's
// dispatcher; kept apart so the exact wire form of every command and every
// reply shape is unit-tested without a redis-server
// (tests/unit/redis/stream_commands_test.cc). Pure functions, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/broker.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/reply.h"

namespace switchboard::broker::redis {

// -- Commands -----------------------------------------------------------------

// `XGROUP CREATE <topic> <group> 0 MKSTREAM`: the group reads from the start
// of retained history, and the stream exists from then on.
Command CreateGroupCommand(absl::string_view topic, absl::string_view group);

// `XREADGROUP GROUP <group> <consumer> COUNT <count> [BLOCK <ms>] STREAMS
// <topic>... > ...`: new entries of every topic, at most `count` each.
Command ReadGroupCommand(absl::string_view group, absl::string_view consumer,
                         const std::vector<absl::string_view>& topics, uint32_t count,
                         std::optional<absl::Duration> block);

// `XCLAIM <topic> <group> <consumer> 0 <id>...`: takes the entries to
// `consumer`, counting a delivery; returns the entries that still exist.
Command ClaimCommand(absl::string_view topic, absl::string_view group, absl::string_view consumer,
                     const std::vector<std::string>& ids);

// `XCLAIM <topic> <group> <consumer> 0 <id>... JUSTID`: resets the entries'
// idle time without counting a delivery.
Command RefreshIdleCommand(absl::string_view topic, absl::string_view group,
                           absl::string_view consumer, const std::vector<std::string>& ids);

// `XCLAIM <topic> <group> <consumer> 0 <id>... IDLE <ms> JUSTID`: marks the
// entries idle for `idle`, so the next reclaim pass of any replica takes
// them.
Command ReleaseIdleCommand(absl::string_view topic, absl::string_view group,
                           absl::string_view consumer, const std::vector<std::string>& ids,
                           absl::Duration idle);

// `XACK <topic> <group> <id>...`.
Command AckCommand(absl::string_view topic, absl::string_view group,
                   const std::vector<std::string>& ids);

// `XAUTOCLAIM <topic> <group> <consumer> <min_idle ms> <cursor> COUNT
// <count>`: takes entries idle longer than `min_idle`.
Command AutoClaimCommand(absl::string_view topic, absl::string_view group,
                         absl::string_view consumer, absl::Duration min_idle,
                         absl::string_view cursor, uint32_t count);

// `XPENDING <topic> <group> <id> <id> 1`: the pending entry `id`, with its
// delivery count.
Command PendingEntryCommand(absl::string_view topic, absl::string_view group, absl::string_view id);

// `XINFO GROUPS <topic>`.
Command GroupsInfoCommand(absl::string_view topic);

// -- Nack delays --------------------------------------------------------------
//
// A nacked message that must wait is recorded in the sorted set
// NackDelaysKey(topic), scored by the end of its delay (Unix ms), as member
// "<group> <id>" (group names have no spaces), so that a replica that takes
// the pending entry over waits out the rest of the delay too.

std::string NackDelaysKey(absl::string_view topic);

// `ZADD <key> <end ms, rounded up> "<group> <id>"`.
Command RecordDelayCommand(absl::string_view topic, absl::string_view group, absl::string_view id,
                           absl::Time end);

// `ZSCORE <key> "<group> <id>"`.
Command DelayEndCommand(absl::string_view topic, absl::string_view group, absl::string_view id);

// `ZREMRANGEBYSCORE <key> -inf <now ms>`: forgets the delays that are over.
Command ForgetEndedDelaysCommand(absl::string_view topic, absl::Time now);

// -- Replies ------------------------------------------------------------------

// True for a NOGROUP error: the consumer group (or its stream) is gone.
bool IsNoGroup(const absl::StatusOr<Reply>& reply);

// True for XADD's refusal of an explicit id not above the stream's last one.
bool IsStaleIdError(const Reply& reply);

// The entries one stream returned to XREADGROUP.
struct StreamEntries {
  std::string topic;
  std::vector<Message> messages;
};

// The entries of an XREADGROUP reply ([[stream, [entry...]]...]; nil when
// there were none), per stream in reply order. Malformed streams and entries
// are skipped.
std::vector<StreamEntries> ReadGroupEntries(const Reply& reply);

// The ids of the entries an XCLAIM reply returned ([[id, fields]...]).
std::set<std::string> ClaimedIds(const Reply& reply);

// What XAUTOCLAIM took ([cursor, [entry...], ...]).
struct AutoClaimed {
  std::string cursor;  // Where the next pass starts.
  std::vector<Message> messages;
};

// Nothing when `reply` is not an XAUTOCLAIM reply.
std::optional<AutoClaimed> AutoClaimedEntries(const Reply& reply, absl::string_view topic);

// The end of a recorded nack delay, from a ZSCORE reply; nothing when none
// is recorded (nil) or the reply is not a score.
std::optional<absl::Time> DelayEnd(const absl::StatusOr<Reply>& reply);

// Redis' delivery count of the one entry of an XPENDING reply
// ([[id, consumer, idle, count]]); nothing for any other reply.
std::optional<uint32_t> PendingDeliveryCount(const absl::StatusOr<Reply>& reply);

// The `lag` of group `group` in an XINFO GROUPS reply (an array of flat
// field/value arrays); nothing when the group is missing or Redis cannot tell
// (nil lag, after deletions).
std::optional<int64_t> GroupLag(const Reply& reply, absl::string_view group);

// -- Dead letters -------------------------------------------------------------

// The XADD id of the dead letter of a message published at `publish_time`:
// "<ms>-*" with the later of `now` and the millisecond after publish_time.
// Stream ids are per stream, so a dead letter written in its original's
// millisecond would repeat the original's id; asking for a later millisecond
// (by Redis' time, which the caller's real clock `now` estimates) keeps it a
// new message.
std::string DeadLetterId(absl::Time publish_time, absl::Time now);

}  // namespace switchboard::broker::redis
