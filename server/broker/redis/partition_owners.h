// PartitionOwners: which ordering partitions of a group this process reads,
// agreed with the other replicas through Redis (partitions.h).
//
// Owned by StreamGroups. Balance() runs on every maintenance pass of a group
// with sessions here, and as soon as a group gains its first session:
//   * it keeps this process among the group's members and renews the owner
//     keys it holds; a partition whose key could not be renewed in time, or
//     was found taken, is dropped at once: nothing more of it is handed out
//     (what waits here is forgotten; Redis keeps it pending for the next
//     owner);
//   * above its share (ceil(partitions / members)) it releases partitions:
//     it stops reading them, forgets what waits, and deletes the owner key
//     once every message of the partition it handed out is settled, so a
//     key never has messages out from two replicas;
//   * below its share it takes free partitions (one Lua script, up to the
//     share), in an order that starts at a place derived from its consumer
//     name, so replicas do not all race for partition 0. A partition taken
//     is taken over (GroupStream::kTakingOver) before it is read.
// Leave() gives everything back when the group has no session here, and at
// shutdown.
//
// An owner key lives `ttl`; an owner stops handing out a partition
// `margin` before its key could lapse (margin: one maintenance interval, as
// the next pass may come too late).
//
// Threading: every call and callback on the broker's dispatcher thread.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/topic_group.h"
#include "server/common/clock.h"

namespace switchboard::broker::redis {

class StreamGroups;

class PartitionOwners {
 public:
  // Every reference must outlive this object.
  PartitionOwners(StreamGroups& groups, CommandLanes& lanes, common::Clock& io_clock,
                  absl::Duration ttl, absl::Duration margin);

  PartitionOwners(const PartitionOwners&) = delete;
  PartitionOwners& operator=(const PartitionOwners&) = delete;

  // Membership, renewals, releases and takes of `topic_group`'s partitions
  // (nothing for a topic without partitions, or without local sessions).
  void Balance(TopicGroup& topic_group);

  // Gives back every partition of the group and leaves its members.
  void Leave(TopicGroup& topic_group);

 private:
  void OnBalanceReplies(TopicGroup& topic_group, absl::Time sent,
                        const std::vector<uint32_t>& renewed, Replies replies);
  // Stops handing out partition `stream` now (its key is lost or lapsing).
  void Drop(GroupStream& stream, const char* why);
  void StartRelease(GroupStream& stream);
  // Deletes the owner keys of releasing partitions whose messages are settled.
  void FinishReleases(TopicGroup& topic_group);
  void Take(TopicGroup& topic_group, uint32_t count);

  StreamGroups& groups_;
  CommandLanes& lanes_;
  common::Clock& io_clock_;
  const absl::Duration ttl_;
  const absl::Duration margin_;
};

}  // namespace switchboard::broker::redis
