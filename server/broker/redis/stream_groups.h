// StreamGroups: the Redis backend's durable topics on the consuming side.
// Each (topic, Switchboard group) is a Redis consumer group on the topic's
// stream; this process is one consumer in it (DESIGN.md §3).
//
// Owned by RedisBroker's state, which hands it the consume sessions. It owns
// the leases (LeaseTable; Redis only fetches and acks), the TopicGroup
// records, and the BlockingReads of its groups; LeaseKeeper works on its
// groups too, through the methods marked below.
//   * first deliveries come from XREADGROUP, only while a consumer has
//     credits; `delivery_attempt` is Redis' delivery count;
//   * ack is XACK; nack, expiry and a closed stream redeliver at once
//     through XCLAIM to this process' consumer;
//   * after max_delivery_attempts the message is XADDed to the dead-letter
//     topic, then XACKed.
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
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/broker/broker.h"
#include "server/broker/lease_table.h"
#include "server/broker/redis/blocking_reads.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/topic_group.h"
#include "server/broker/topic_policy.h"
#include "server/common/clock.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::redis {

class StreamGroups {
 public:
  using TopicGroups = std::map<std::pair<std::string, std::string>, TopicGroup>;

  // Every reference must outlive this object.
  StreamGroups(event::Dispatcher& dispatcher, common::Clock& io_clock, std::string consumer,
               const TopicPolicies& policies, BrokerObserver& observer, CommandLanes& lanes,
               event::Anchor<ConnectionSet> connections, BlockingReadOptions read_options);

  StreamGroups(const StreamGroups&) = delete;
  StreamGroups& operator=(const StreamGroups&) = delete;

  // -- Sessions (RedisBroker) ---------------------------------------------------

  void AddSession(uint64_t id, ConsumeOptions options,
                  std::shared_ptr<SinkGuard<ConsumerSink>> sink);
  // Releases every lease the session holds: its messages go to the group's
  // other consumers now.
  void RemoveSession(uint64_t id);
  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done);
  // Ends every session with `status`.
  void CloseAll(const absl::Status& status);

  // `lane` is ready again: reads and claims of its groups resume (lost groups
  // show up as NOGROUP). Blocking reads need the shared lane (CLIENT
  // UNBLOCK), so the shared lane resumes every group.
  void OnLaneReady(size_t lane);

  // No new work from now on (shutdown).
  void Stop();

  BlockingReads& reads() { return reads_; }

  // -- For BlockingReads and LeaseKeeper ------------------------------------------

  const std::string& consumer() const { return consumer_; }
  TopicGroups& topic_groups() { return topic_groups_; }
  const LeaseTable& leases() const { return leases_; }

  // Credits the group's sessions have left, beyond the leases they hold, the
  // reads and claims in flight for them and the messages waiting for them.
  uint32_t FreeCredits(const TopicGroup& topic_group) const;

  // Moves a group forward: hands out waiting messages, claims redeliveries,
  // and reads new entries, as far as its credits go.
  void Kick(TopicGroup& topic_group);

  // The group vanished from Redis (a flush, or a restart without
  // persistence): create it again. What this process held went with it.
  void OnGroupLost(TopicGroup& topic_group);

  // Queues the entries of an XREADGROUP reply for their groups. Returns how
  // many per topic, index-aligned with `topics`.
  std::vector<size_t> TakeReadEntries(const absl::StatusOr<Reply>& reply,
                                      const std::vector<TopicGroup*>& topics);

  // Takes `message` into the group's waiting messages.
  void Own(TopicGroup& topic_group, Message message, uint32_t attempt);

  // XADDs the held message `id` to the dead-letter topic, then XACKs it.
  // When the XADD fails the entry stays pending, unrefreshed, and is
  // reclaimed later.
  void DeadLetter(TopicGroup& topic_group, const std::string& id, uint32_t attempts);

 private:
  TopicGroup& GetTopicGroup(const std::string& topic, const std::string& group);
  void ReleaseHeld(TopicGroup& topic_group);
  void EnsureGroupExists(TopicGroup& topic_group);
  void Probe(TopicGroup& topic_group);
  void HandOutReady(TopicGroup& topic_group);
  void ClaimRedeliveries(TopicGroup& topic_group);
  absl::Status Fail(Session& session, absl::string_view ack_id);
  void FailDelivery(TopicGroup& topic_group, const Lease& lease);
  void AppendDeadLetter(TopicGroup& topic_group, const std::string& id,
                        const std::string& dead_letter_id, OutgoingMessage dead_letter);
  void Acknowledge(TopicGroup& topic_group, const std::vector<std::string>& ids);
  void OnLeaseExpired(Lease lease);

  common::Clock& clock_;     // Leases.
  common::Clock& io_clock_;  // Real time, close to Redis' own.
  const std::string consumer_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  CommandLanes& lanes_;
  bool stopped_ = false;
  // std::map keeps addresses stable: sessions and reads point at groups.
  TopicGroups topic_groups_;
  std::map<uint64_t, Session> sessions_;
  BlockingReads reads_;
  // Last: its expiry callback uses the members above.
  LeaseTable leases_;
};

}  // namespace switchboard::broker::redis
