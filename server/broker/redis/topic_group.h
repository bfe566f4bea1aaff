// TopicGroup: the Redis backend's side of one consumer group (a Switchboard
// group on one topic's stream, a Redis consumer group): the GroupSource the
// consumer-group core (server/broker/consumer_groups.h) asks for messages,
// acks and dead letters, and the Redis state of the group.
//
// Owned by the core's ConsumerGroup; made by StreamGroups, which does the
// work; read and changed by StreamGroups, BlockingReads and LeaseKeeper, all
// on the broker's dispatcher thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/broker/broker.h"
#include "server/broker/consumer_groups.h"
#include "server/broker/topic_policy.h"

namespace switchboard::broker::redis {

class StreamGroups;

struct TopicGroup final : GroupSource {
  TopicGroup(StreamGroups& owner, ConsumerGroup& core, size_t lane)
      : owner(owner),
        core(core),
        topic(core.topic()),
        group(core.name()),
        policy(core.policy()),
        lane(lane) {}

  // GroupSource, done by StreamGroups.
  void Fill(ConsumerGroup&) override;
  void Idle(ConsumerGroup&) override;
  void RecordDelay(ConsumerGroup&, const std::string& id, absl::Duration delay) override;
  void Acknowledge(ConsumerGroup&, std::vector<std::string> ids) override;
  void DeadLetter(ConsumerGroup&, std::shared_ptr<const Message> message,
                  uint32_t attempts) override;

  enum class Existence { kUnknown, kCreating, kReady, kFailed };

  StreamGroups& owner;
  ConsumerGroup& core;  // Sessions, and every entry of the pending list held here.
  const std::string& topic;
  const std::string& group;
  const TopicPolicy& policy;
  const size_t lane;  // Where its commands go (CommandLanes).
  Existence existence = Existence::kUnknown;
  bool probing = false;          // A non-blocking read is in flight.
  bool drained = false;          // The last read found nothing new: wait in a blocking read.
  bool reclaiming = false;       // An XAUTOCLAIM is in flight (LeaseKeeper).
  bool delays_recorded = false;  // This process recorded nack delays of the topic.
  std::string reclaim_cursor = "0-0";
};

}  // namespace switchboard::broker::redis
