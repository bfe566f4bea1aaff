#include "server/broker/redis/lease_keeper.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "server/broker/redis/stream_commands.h"

namespace switchboard::broker::redis {
namespace {

// Ids per XCLAIM ... JUSTID when refreshing idle times.
constexpr size_t kRefreshBatch = 500;

}  // namespace

LeaseKeeper::LeaseKeeper(StreamGroups& groups, CommandLanes& lanes, BrokerObserver& observer)
    : groups_(groups), lanes_(lanes), observer_(observer) {}

void LeaseKeeper::Pass() {
  for (TopicGroup* each : groups_.topic_groups()) {
    TopicGroup& topic_group = *each;
    if (!lanes_.ready(topic_group.lane)) continue;
    if (topic_group.existence == TopicGroup::Existence::kFailed) {
      topic_group.existence = TopicGroup::Existence::kUnknown;
    }
    RefreshOwned(topic_group);
    Reclaim(topic_group);
    SampleLag(topic_group);
    ForgetEndedDelays(topic_group);
    groups_.Kick(topic_group);
  }
}

// Redis' own count of the entries the group has not read yet (XINFO GROUPS
// `lag`; nil while Redis cannot tell, after deletions).
void LeaseKeeper::SampleLag(TopicGroup& topic_group) {
  if (topic_group.existence != TopicGroup::Existence::kReady || !topic_group.core.has_sessions()) {
    return;
  }
  lanes_.Send(topic_group.lane, GroupsInfoCommand(topic_group.topic),
              [this, &topic_group](absl::StatusOr<Reply> reply) {
                if (!reply.ok()) return;
                std::optional<int64_t> lag = GroupLag(*reply, topic_group.group);
                if (lag.has_value()) {
                  observer_.OnConsumerLag(topic_group.topic, topic_group.group,
                                          static_cast<uint64_t>(*lag));
                }
              });
}

// XCLAIM ... JUSTID resets the idle time of the entries this process holds
// without counting a delivery, so no replica reclaims a live lease.
void LeaseKeeper::RefreshOwned(TopicGroup& topic_group) {
  if (topic_group.existence != TopicGroup::Existence::kReady) return;
  const auto& held = topic_group.core.held();
  auto next = held.begin();
  while (next != held.end()) {
    std::vector<std::string> ids;
    for (; next != held.end() && ids.size() < kRefreshBatch; ++next) {
      ids.push_back(next->first);
    }
    lanes_.Send(topic_group.lane,
                RefreshIdleCommand(topic_group.topic, topic_group.group, groups_.consumer(), ids),
                [this, &topic_group](absl::StatusOr<Reply> reply) {
                  if (IsNoGroup(reply)) groups_.OnGroupLost(topic_group);
                });
  }
}

// XAUTOCLAIM takes entries idle longer than the ack deadline: leases of a
// process that died (or entries this one could not ack). Their attempt is
// Redis' delivery count (XPENDING); one past the last attempt dead-letters.
void LeaseKeeper::Reclaim(TopicGroup& topic_group) {
  if (topic_group.existence != TopicGroup::Existence::kReady || topic_group.reclaiming ||
      !topic_group.core.has_sessions()) {
    return;
  }
  const uint32_t count = topic_group.core.FreeCredits();
  if (count == 0) return;
  topic_group.reclaiming = true;
  topic_group.core.Reserve(count);
  lanes_.Send(topic_group.lane,
              AutoClaimCommand(topic_group.topic, topic_group.group, groups_.consumer(),
                               topic_group.policy.ack_deadline, topic_group.reclaim_cursor, count),
              [this, &topic_group, count](absl::StatusOr<Reply> reply) {
                std::optional<AutoClaimed> claimed =
                    reply.ok() ? AutoClaimedEntries(*reply, topic_group.topic) : std::nullopt;
                if (!claimed) {
                  if (IsNoGroup(reply)) groups_.OnGroupLost(topic_group);
                  EndReclaim(topic_group, count);
                  return;
                }
                topic_group.reclaim_cursor = std::move(claimed->cursor);
                std::vector<Message> reclaimed;
                for (Message& message : claimed->messages) {
                  // Held here already: a refresh came late; keep the local lease.
                  if (!topic_group.core.holds(message.id)) reclaimed.push_back(std::move(message));
                }
                CountReclaimed(topic_group, count, std::move(reclaimed));
              });
}

// Looks up Redis' delivery count of each reclaimed entry, and the end of
// its nack delay if one was recorded, then hands them to the group.
void LeaseKeeper::CountReclaimed(TopicGroup& topic_group, uint32_t reserved,
                                 std::vector<Message> reclaimed) {
  if (reclaimed.empty()) {
    EndReclaim(topic_group, reserved);
    return;
  }
  std::vector<Command> commands;
  for (const Message& message : reclaimed) {
    commands.push_back(PendingEntryCommand(topic_group.topic, topic_group.group, message.id));
    commands.push_back(DelayEndCommand(topic_group.topic, topic_group.group, message.id));
  }
  lanes_.Send(
      topic_group.lane, std::move(commands),
      [this, &topic_group, reserved, reclaimed = std::move(reclaimed)](Replies replies) mutable {
        const absl::Time now = groups_.io_clock().Now();
        for (size_t i = 0; i < reclaimed.size(); ++i) {
          const std::optional<uint32_t> attempt = PendingDeliveryCount(replies[2 * i]);
          if (!attempt) continue;  // Left pending: reclaimed again later.
          const std::optional<absl::Time> delay_end = DelayEnd(replies[2 * i + 1]);
          // Past the last attempt (used up on the process that died), the
          // core dead-letters it.
          topic_group.core.Arrive(
              std::make_shared<const Message>(std::move(reclaimed[i])), *attempt,
              delay_end ? std::max(*delay_end - now, absl::ZeroDuration()) : absl::ZeroDuration());
        }
        EndReclaim(topic_group, reserved);
      });
}

// Forgets the recorded nack delays of the topic that are over, when this
// process recorded some.
void LeaseKeeper::ForgetEndedDelays(TopicGroup& topic_group) {
  if (!topic_group.delays_recorded) return;
  lanes_.Send(topic_group.lane,
              ForgetEndedDelaysCommand(topic_group.topic, groups_.io_clock().Now()),
              [](absl::StatusOr<Reply>) {});
}

// The reclaim pass is over: its credits go back to reads and claims, which
// it may have held up meanwhile.
void LeaseKeeper::EndReclaim(TopicGroup& topic_group, uint32_t reserved) {
  topic_group.reclaiming = false;
  topic_group.core.Unreserve(reserved);
  groups_.Kick(topic_group);
}

}  // namespace switchboard::broker::redis
