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
    for (GroupStream& stream : topic_group.streams) {
      if (stream.existence == GroupStream::Existence::kFailed) {
        stream.existence = GroupStream::Existence::kUnknown;
      }
    }
    RefreshOwned(topic_group);
    for (GroupStream& stream : topic_group.streams) {
      if (stream.readable()) groups_.Reclaim(stream, topic_group.policy.ack_deadline);
    }
    SampleLag(topic_group);
    ForgetEndedDelays(topic_group);
    groups_.owners().Balance(topic_group);
    groups_.Kick(topic_group);
  }
}

// Redis' own count of the entries the group has not read yet (XINFO GROUPS
// `lag`; nil while Redis cannot tell, after deletions), over all the
// topic's streams.
void LeaseKeeper::SampleLag(TopicGroup& topic_group) {
  if (topic_group.own_stream().existence != GroupStream::Existence::kReady ||
      !topic_group.core.has_sessions()) {
    return;
  }
  std::vector<Command> commands;
  for (const GroupStream& stream : topic_group.streams) {
    commands.push_back(GroupsInfoCommand(stream.key));
  }
  lanes_.Send(topic_group.lane, std::move(commands), [this, &topic_group](Replies replies) {
    std::optional<int64_t> total;
    for (const absl::StatusOr<Reply>& reply : replies) {
      if (!reply.ok() || reply->is_error()) continue;
      const std::optional<int64_t> lag = GroupLag(*reply, topic_group.group);
      if (lag.has_value()) total = total.value_or(0) + *lag;
    }
    if (total.has_value()) {
      observer_.OnConsumerLag(topic_group.topic, topic_group.group, static_cast<uint64_t>(*total));
    }
  });
}

// XCLAIM ... JUSTID resets the idle time of the entries this process holds
// without counting a delivery, so no replica reclaims a live lease.
void LeaseKeeper::RefreshOwned(TopicGroup& topic_group) {
  const auto& held = topic_group.core.held();
  auto next = held.begin();
  while (next != held.end()) {
    std::vector<std::string> ids;
    for (; next != held.end() && ids.size() < kRefreshBatch; ++next) {
      ids.push_back(next->first);
    }
    groups_.SendPerStream(
        topic_group, ids,
        [&](const GroupStream& stream, const std::vector<std::string>& entry_ids) {
          return RefreshIdleCommand(stream.key, topic_group.group, groups_.consumer(), entry_ids);
        },
        [this](GroupStream& stream, absl::StatusOr<Reply> reply) {
          if (IsNoGroup(reply)) groups_.OnGroupLost(stream);
        });
  }
}

// Forgets the recorded nack delays of the topic that are over, when this
// process recorded some.
void LeaseKeeper::ForgetEndedDelays(TopicGroup& topic_group) {
  if (!topic_group.delays_recorded) return;
  lanes_.Send(topic_group.lane,
              ForgetEndedDelaysCommand(topic_group.topic, groups_.io_clock().Now()),
              [](absl::StatusOr<Reply>) {});
}

}  // namespace switchboard::broker::redis
