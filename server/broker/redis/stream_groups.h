// StreamGroups: the Redis backend's durable topics on the consuming side.
// Each (topic, Switchboard group) is a Redis consumer group on each of the
// topic's streams (its own, and its ordering partitions: partitions.h); this
// process is one consumer in it (DESIGN.md §3).
//
// Owned by RedisBroker's state, which hands the consume sessions to its core.
// Sessions, leases, hand-out order and dead-letter decisions are the
// consumer-group core's (ConsumerGroups; Redis only fetches and acks); this
// class owns the core, is its source for every group (TopicGroup), and owns
// the BlockingReads and PartitionOwners of its groups; LeaseKeeper works on
// its groups too, through the methods marked below.
//   * first deliveries come from XREADGROUP, only while a consumer has
//     credits; `delivery_attempt` is Redis' delivery count;
//   * ack is XACK; a delivery due again (nack, expiry, a closed stream) is
//     taken back through XCLAIM to this process' consumer, which counts it;
//   * a dead letter is XADDed to the dead-letter topic, then XACKed;
//   * a partition is read only while this process owns it, and after taking
//     it over: every entry still pending in it is claimed first, in id order
//     (XAUTOCLAIM from the start, no minimum idle time), so a key's next
//     message never overtakes one the last owner left unsettled.
//
// Threading: every call and callback on the broker's dispatcher thread,
// whose clock times the leases. `io_clock` is real time, close to Redis'.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/broker/broker.h"
#include "server/broker/consumer_groups.h"
#include "server/broker/redis/blocking_reads.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/partition_owners.h"
#include "server/broker/redis/topic_group.h"
#include "server/broker/topic_policy.h"
#include "server/common/clock.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::redis {

class StreamGroups {
 public:
  // Every reference must outlive this object.
  StreamGroups(event::Dispatcher& dispatcher, common::Clock& io_clock, std::string consumer,
               const TopicPolicies& policies, BrokerObserver& observer, CommandLanes& lanes,
               event::Anchor<ConnectionSet> connections, BlockingReadOptions read_options,
               absl::Duration partition_ttl, absl::Duration partition_margin);

  StreamGroups(const StreamGroups&) = delete;
  StreamGroups& operator=(const StreamGroups&) = delete;

  // -- For RedisBroker ------------------------------------------------------------

  // The consume sessions, settles and closes go straight to the core.
  ConsumerGroups& core() { return core_; }

  // `lane` is ready again: reads and claims of its groups resume (lost groups
  // show up as NOGROUP). Blocking reads need the shared lane (CLIENT
  // UNBLOCK), so the shared lane resumes every group.
  void OnLaneReady(size_t lane);

  // No new work from now on (shutdown); the partitions held are given back.
  void Stop();

  BlockingReads& reads() { return reads_; }
  PartitionOwners& owners() { return owners_; }

  // -- For BlockingReads and LeaseKeeper ------------------------------------------

  const std::string& consumer() const { return consumer_; }
  // Real time, close to Redis' own: the clock of recorded nack delays.
  common::Clock& io_clock() { return io_clock_; }
  // Every group a session ever joined here.
  const std::vector<TopicGroup*>& topic_groups() const { return topic_groups_; }

  // Moves a group forward (ConsumerGroups::Pump): hands out waiting
  // messages, claims redeliveries, and reads new entries, as far as its
  // credits go.
  void Kick(TopicGroup& topic_group) { core_.Pump(topic_group.core); }

  // The group vanished from `stream` (a flush, or a restart without
  // persistence): create it again. What this process held went with it.
  void OnGroupLost(GroupStream& stream);

  // Queues the entries of an XREADGROUP reply for their groups. Returns how
  // many per stream, index-aligned with `streams`. Entries of a partition
  // this process no longer reads are left pending for its next owner.
  std::vector<size_t> TakeReadEntries(const absl::StatusOr<Reply>& reply,
                                      const std::vector<GroupStream*>& streams);

  // XAUTOCLAIMs entries of `stream` idle at least `min_idle`, from its
  // reclaim cursor, for the group's free credits, and hands them to the group
  // with Redis' delivery count as their attempt (and the rest of a recorded
  // nack delay). A partition being taken over becomes readable once the
  // cursor has gone round.
  void Reclaim(GroupStream& stream, absl::Duration min_idle);

  // Sends one command per stream of `ids` (message ids of the group's
  // streams), built by `make` with the stream's key and its entry ids, and
  // runs `done` with each reply. Ids of a partition the topic lacks are
  // skipped.
  using PerStreamCommand =
      absl::FunctionRef<Command(const GroupStream& stream, const std::vector<std::string>& ids)>;
  void SendPerStream(TopicGroup& topic_group, const std::vector<std::string>& ids,
                     PerStreamCommand make,
                     absl::AnyInvocable<void(GroupStream&, absl::StatusOr<Reply>)> done);

  // -- The core's source (TopicGroup's GroupSource methods) ----------------------

  // Claims due redeliveries and reads new entries for the free credits.
  void Fill(TopicGroup& topic_group);
  // No local session: gives back what waits, and the group's reader.
  void Idle(TopicGroup& topic_group);
  // Records the end of a nack's delay in Redis (NackDelaysKey), for the
  // replica that may take the entry over.
  void RecordDelay(TopicGroup& topic_group, const std::string& id, absl::Duration delay);
  // XACK. An ack that fails leaves the entry pending, unrefreshed: it is
  // reclaimed and delivered again after the ack deadline (at-least-once).
  void Acknowledge(TopicGroup& topic_group, const std::vector<std::string>& ids);
  // XADDs `message` to the dead-letter topic, then XACKs it. When the XADD
  // fails the entry stays pending, unrefreshed, and is reclaimed later.
  void DeadLetter(TopicGroup& topic_group, const Message& message, uint32_t attempts);

 private:
  std::unique_ptr<GroupSource> MakeTopicGroup(ConsumerGroup& group);
  void ReleaseWaiting(TopicGroup& topic_group);
  void EnsureGroupExists(GroupStream& stream);
  void Probe(TopicGroup& topic_group, const std::vector<GroupStream*>& streams);
  void ClaimRedeliveries(TopicGroup& topic_group);
  void CountReclaimed(GroupStream& stream, uint32_t reserved, std::vector<Message> reclaimed);
  void EndReclaim(GroupStream& stream, uint32_t reserved);
  void AppendDeadLetter(TopicGroup& topic_group, const std::string& id,
                        const std::string& dead_letter_id, OutgoingMessage dead_letter);

  common::Clock& io_clock_;  // Real time, close to Redis' own.
  const std::string consumer_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  CommandLanes& lanes_;
  BlockingReads reads_;
  PartitionOwners owners_;
  std::vector<TopicGroup*> topic_groups_;  // Owned by the core's groups.
  // Last: its groups' sources use the members above.
  ConsumerGroups core_;
};

}  // namespace switchboard::broker::redis
