// The records of the Redis backend's consumer groups: a TopicGroup per
// (topic, Switchboard group), the consume sessions of it on this process, and
// the entries it holds.
//
// Owned by StreamGroups; read and changed by StreamGroups, BlockingReads and
// LeaseKeeper, all on the broker's dispatcher thread. Plain data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/broker/broker.h"
#include "server/broker/sink_guard.h"
#include "server/broker/topic_policy.h"

namespace switchboard::broker::redis {

struct TopicGroup;

// One local consume stream of a group on a topic.
struct Session {
  uint64_t id;
  TopicGroup* topic_group;
  uint32_t max_in_flight;
  absl::Duration ack_deadline;
  std::shared_ptr<SinkGuard<ConsumerSink>> sink;
};

// A message this process holds for a group, waiting for a session.
struct Held {
  std::string id;
  uint32_t attempt;  // Redis' delivery count once delivered.
};

// One Redis consumer group: a Switchboard group on one topic's stream.
struct TopicGroup {
  TopicGroup(std::string topic, std::string group, const TopicPolicy& policy, size_t lane)
      : topic(std::move(topic)), group(std::move(group)), policy(policy), lane(lane) {}

  enum class Existence { kUnknown, kCreating, kReady, kFailed };

  const std::string topic;
  const std::string group;
  const TopicPolicy& policy;
  const size_t lane;               // Where its commands go (CommandLanes).
  std::vector<Session*> sessions;  // In joining order; deliveries take turns.
  size_t next_turn = 0;
  Existence existence = Existence::kUnknown;
  // Every entry of this group's pending list that this process holds
  // (leased, waiting in `ready`, or being claimed), with its message.
  std::map<std::string, std::shared_ptr<const Message>> owned;
  std::deque<Held> ready;         // Read or claimed, waiting for credit.
  std::deque<Held> redeliveries;  // To claim again (XCLAIM) and deliver.
  uint32_t reserved = 0;          // Credits promised to reads and claims in flight.
  bool probing = false;           // A non-blocking read is in flight.
  bool drained = false;           // The last read found nothing new: wait in a blocking read.
  bool reclaiming = false;        // An XAUTOCLAIM is in flight (LeaseKeeper).
  std::string reclaim_cursor = "0-0";
};

}  // namespace switchboard::broker::redis
