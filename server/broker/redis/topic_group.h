// TopicGroup: the Redis backend's side of one consumer group (a Switchboard
// group on one topic, a Redis consumer group on each of the topic's
// streams): the GroupSource the consumer-group core
// (server/broker/consumer_groups.h) asks for messages, acks and dead
// letters, and the Redis state of the group, per stream (GroupStream).
//
// A topic has one stream, its own, plus `ordering_partitions` partition
// streams for messages with an ordering key (partitions.h). This process
// reads the topic's own stream always, and a partition stream only while it
// owns the partition for the group (PartitionOwners).
//
// Owned by the core's ConsumerGroup; made by StreamGroups, which does the
// work; read and changed by StreamGroups, BlockingReads, LeaseKeeper and
// PartitionOwners, all on the broker's dispatcher thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/broker.h"
#include "server/broker/consumer_groups.h"
#include "server/broker/topic_policy.h"

namespace switchboard::broker::redis {

class StreamGroups;
struct TopicGroup;

// One Redis stream of a group: the topic's own, or one ordering partition.
struct GroupStream {
  enum class Existence { kUnknown, kCreating, kReady, kFailed };

  // This process' hold on a partition (the topic's own stream is always
  // kOwned):
  //   kNone        another replica's, or nobody's: not read;
  //   kTakingOver  ours: first every entry still pending (the last owner's)
  //                is claimed, in id order, before anything new is read;
  //   kOwned       ours: read, claimed and reclaimed like the topic's stream;
  //   kReleasing   ours until the messages this process handed out are
  //                settled; nothing more is read; then given back.
  enum class Ownership { kNone, kTakingOver, kOwned, kReleasing };

  GroupStream(TopicGroup& group, std::string key, std::optional<uint32_t> partition)
      : group(group),
        key(std::move(key)),
        partition(partition),
        ownership(partition ? Ownership::kNone : Ownership::kOwned) {}

  // Whether new entries are read, and idle ones reclaimed, here.
  bool readable() const { return ownership == Ownership::kOwned; }
  // Whether this process holds the partition (or it is the topic's stream).
  bool held() const { return ownership != Ownership::kNone; }

  TopicGroup& group;
  const std::string key;                    // The stream's Redis key.
  const std::optional<uint32_t> partition;  // Nothing: the topic's own stream.
  Existence existence = Existence::kUnknown;
  bool probing = false;     // A non-blocking read is in flight.
  bool drained = false;     // The last read found nothing new: wait in a blocking read.
  bool reclaiming = false;  // An XAUTOCLAIM is in flight.
  std::string reclaim_cursor = "0-0";
  Ownership ownership;
  // Partitions held: the owner key lapses no sooner than this (real time).
  absl::Time held_until = absl::InfinitePast();
};

struct TopicGroup final : GroupSource {
  TopicGroup(StreamGroups& owner, ConsumerGroup& core, size_t lane);

  // GroupSource, done by StreamGroups.
  void Fill(ConsumerGroup&) override;
  void Idle(ConsumerGroup&) override;
  void RecordDelay(ConsumerGroup&, const std::string& id, absl::Duration delay) override;
  void Acknowledge(ConsumerGroup&, std::vector<std::string> ids) override;
  void DeadLetter(ConsumerGroup&, std::shared_ptr<const Message> message,
                  uint32_t attempts) override;

  // The topic's own stream.
  GroupStream& own_stream() { return streams.front(); }
  // The partition streams (none without ordering_partitions).
  size_t partitions() const { return streams.size() - 1; }
  GroupStream& partition(uint32_t p) { return streams[1 + p]; }
  // The stream message `id` is an entry of; nothing for a partition the
  // topic does not have.
  GroupStream* StreamOf(absl::string_view id);

  StreamGroups& owner;
  ConsumerGroup& core;  // Sessions, and every entry of the pending lists held here.
  const std::string& topic;
  const std::string& group;
  const TopicPolicy& policy;
  const size_t lane;                // Where its commands go (CommandLanes).
  std::deque<GroupStream> streams;  // The topic's own first; a deque keeps addresses.
  bool delays_recorded = false;     // This process recorded nack delays of the topic.
  bool member = false;              // In the group's members (partitions only).
  bool balancing = false;           // An ownership pass is in flight.
};

}  // namespace switchboard::broker::redis
