#include "server/broker/redis/partition_owners.h"

#include <utility>

#include "server/broker/redis/partitions.h"
#include "server/broker/redis/stream_groups.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {
namespace {

using Ownership = GroupStream::Ownership;

// Selects the message ids of partition `partition`.
auto InPartition(uint32_t partition) {
  return [partition](absl::string_view id) { return SplitMessageId(id).partition == partition; };
}

bool Taken(const GroupStream& stream) {
  return stream.ownership == Ownership::kTakingOver || stream.ownership == Ownership::kOwned;
}

// The partitions in the order this consumer prefers them: from a place its
// name picks, round.
std::vector<uint32_t> PreferenceOrder(absl::string_view consumer, uint32_t partitions) {
  std::vector<uint32_t> order;
  const uint32_t first = PartitionOf(consumer, partitions);
  for (uint32_t i = 0; i < partitions; ++i) order.push_back((first + i) % partitions);
  return order;
}

}  // namespace

PartitionOwners::PartitionOwners(StreamGroups& groups, CommandLanes& lanes, common::Clock& io_clock,
                                 absl::Duration ttl, absl::Duration margin)
    : groups_(groups), lanes_(lanes), io_clock_(io_clock), ttl_(ttl), margin_(margin) {}

void PartitionOwners::Balance(TopicGroup& topic_group) {
  const uint32_t partitions = topic_group.partitions();
  if (partitions == 0) return;
  const absl::Time now = io_clock_.Now();
  // Whatever happens to the renewals in flight, hand nothing out of a
  // partition whose owner key may lapse before the next pass.
  for (uint32_t p = 0; p < partitions; ++p) {
    GroupStream& stream = topic_group.partition(p);
    if (stream.held() && now + margin_ >= stream.held_until) {
      Drop(stream, "its owner key was not renewed in time");
    }
  }
  if (topic_group.balancing || !topic_group.core.has_sessions() ||
      !lanes_.ready(topic_group.lane)) {
    return;
  }
  FinishReleases(topic_group);
  const std::string& consumer = groups_.consumer();
  std::vector<Command> commands;
  commands.push_back(JoinCommand(topic_group.topic, topic_group.group, consumer, now + ttl_));
  commands.push_back(ExpireMembersCommand(topic_group.topic, topic_group.group, now));
  commands.push_back(CountMembersCommand(topic_group.topic, topic_group.group));
  std::vector<uint32_t> renewed;
  for (uint32_t p = 0; p < partitions; ++p) {
    if (!topic_group.partition(p).held()) continue;
    commands.push_back(RenewCommand(topic_group.topic, topic_group.group, p, consumer, ttl_));
    renewed.push_back(p);
  }
  topic_group.member = true;
  topic_group.balancing = true;
  lanes_.Send(topic_group.lane, std::move(commands),
              [this, &topic_group, now, renewed = std::move(renewed)](Replies replies) {
                OnBalanceReplies(topic_group, now, renewed, std::move(replies));
              });
}

void PartitionOwners::OnBalanceReplies(TopicGroup& topic_group, absl::Time sent,
                                       const std::vector<uint32_t>& renewed, Replies replies) {
  topic_group.balancing = false;
  for (size_t i = 0; i < renewed.size(); ++i) {
    GroupStream& stream = topic_group.partition(renewed[i]);
    const absl::StatusOr<Reply>& reply = replies[3 + i];
    if (!stream.held()) continue;  // Given up meanwhile.
    if (Renewed(reply)) {
      stream.held_until = sent + ttl_;
    } else if (reply.ok() && !reply->is_error()) {
      Drop(stream, "another replica owns it now");
    }
  }
  const absl::StatusOr<Reply>& members = replies[2];
  if (!topic_group.core.has_sessions() || !members.ok() || members->type != Reply::Type::kInteger) {
    return;
  }
  const uint32_t share = FairShare(topic_group.partitions(), members->integer);
  std::vector<GroupStream*> taken;
  for (uint32_t p : PreferenceOrder(groups_.consumer(), topic_group.partitions())) {
    if (Taken(topic_group.partition(p))) taken.push_back(&topic_group.partition(p));
  }
  // Above the share: give back the least preferred, which this process
  // would not try to take again first.
  for (size_t i = share; i < taken.size(); ++i) StartRelease(*taken[i]);
  if (taken.size() < share) Take(topic_group, share - static_cast<uint32_t>(taken.size()));
}

void PartitionOwners::Take(TopicGroup& topic_group, uint32_t count) {
  std::vector<uint32_t> free;
  for (uint32_t p : PreferenceOrder(groups_.consumer(), topic_group.partitions())) {
    if (topic_group.partition(p).ownership == Ownership::kNone) free.push_back(p);
  }
  if (free.empty()) return;
  const absl::Time sent = io_clock_.Now();
  topic_group.balancing = true;
  lanes_.Send(
      topic_group.lane,
      TakeCommand(topic_group.topic, topic_group.group, free, groups_.consumer(), ttl_, count),
      [this, &topic_group, free, sent](absl::StatusOr<Reply> reply) {
        topic_group.balancing = false;
        const std::vector<uint32_t> taken = TakenPartitions(reply, free);
        for (uint32_t p : taken) {
          GroupStream& stream = topic_group.partition(p);
          if (!topic_group.core.has_sessions() || stream.held()) {
            // Left meanwhile: give it back at once.
            lanes_.Send(topic_group.lane,
                        ReleaseCommand(topic_group.topic, topic_group.group, p, groups_.consumer()),
                        [](absl::StatusOr<Reply>) {});
            continue;
          }
          SB_LOG(kDebug, "took partition ", p, " of '", topic_group.topic, "' for group '",
                 topic_group.group, "'");
          stream.ownership = Ownership::kTakingOver;
          stream.held_until = sent + ttl_;
          stream.reclaim_cursor = "0-0";
          stream.drained = false;
        }
        if (!taken.empty()) groups_.Kick(topic_group);
      });
}

void PartitionOwners::Drop(GroupStream& stream, const char* why) {
  SB_LOG(kWarning, "giving up partition ", *stream.partition, " of '", stream.group.topic,
         "' for group '", stream.group.group, "': ", why,
         "; what this process holds of it is not handed out any more");
  stream.ownership = Ownership::kNone;
  stream.drained = false;
  stream.reclaim_cursor = "0-0";
  stream.group.core.TakeWaiting(InPartition(*stream.partition));
}

void PartitionOwners::StartRelease(GroupStream& stream) {
  stream.ownership = Ownership::kReleasing;
  stream.group.core.TakeWaiting(InPartition(*stream.partition));
}

void PartitionOwners::FinishReleases(TopicGroup& topic_group) {
  for (uint32_t p = 0; p < topic_group.partitions(); ++p) {
    GroupStream& stream = topic_group.partition(p);
    if (stream.ownership != Ownership::kReleasing) continue;
    // Redeliveries due since: the next owner delivers them.
    topic_group.core.TakeWaiting(InPartition(p));
    if (topic_group.core.HoldsAny(InPartition(p))) continue;
    stream.ownership = Ownership::kNone;
    stream.drained = false;
    stream.reclaim_cursor = "0-0";
    lanes_.Send(topic_group.lane,
                ReleaseCommand(topic_group.topic, topic_group.group, p, groups_.consumer()),
                [](absl::StatusOr<Reply>) {});
  }
}

void PartitionOwners::Leave(TopicGroup& topic_group) {
  const bool connected = lanes_.ready(topic_group.lane);
  for (uint32_t p = 0; p < topic_group.partitions(); ++p) {
    GroupStream& stream = topic_group.partition(p);
    if (!stream.held()) continue;
    topic_group.core.TakeWaiting(InPartition(p));
    stream.ownership = Ownership::kNone;
    stream.drained = false;
    stream.reclaim_cursor = "0-0";
    // Unreachable: the key lapses by itself.
    if (connected) {
      lanes_.Send(topic_group.lane,
                  ReleaseCommand(topic_group.topic, topic_group.group, p, groups_.consumer()),
                  [](absl::StatusOr<Reply>) {});
    }
  }
  if (topic_group.member && connected) {
    lanes_.Send(topic_group.lane,
                LeaveCommand(topic_group.topic, topic_group.group, groups_.consumer()),
                [](absl::StatusOr<Reply>) {});
  }
  topic_group.member = false;
}

}  // namespace switchboard::broker::redis
