// ConsumerGroups: the consumer-group core every broker backend shares
// (DESIGN.md §2): consume sessions and their credits, the lease table,
// hand-out order, nack / expiry / release, and dead-letter decisions.
//
// A backend supplies only a GroupSource per group: where new messages come
// from, how a failed delivery is taken back for redelivery, what an ack and a
// dead letter do. The core decides everything else, the same way for every
// backend:
//   * a group's messages wait here until a session has a free credit;
//     redeliveries go out before new messages, and sessions with free credit
//     take turns, in joining order;
//   * a delivery that ends without an ack (nack, expiry, a closed stream)
//     is due again with its attempt + 1, or dead-lettered once it used
//     the topic's max_delivery_attempts. A nack may delay it (its own delay,
//     else the topic's retry_backoff by attempt): it waits here, held, until
//     then, and the source records the delay for other replicas;
//   * a message arriving with attempts used up elsewhere (a replica that
//     died) is dead-lettered at once;
//   * messages with an ordering key go out one at a time per key: while a
//     message of the key is in progress (handed out, due again, or waiting
//     out a delay) the later ones of the key wait, in publish order, without
//     holding a credit (at most kMaxBlockedMessages per group; beyond, the
//     source is asked for nothing more), and the next goes out once the one
//     in progress is acked or dead-lettered.
//
// Threading: construct anywhere; use and destroy on the dispatcher thread
// only, where every GroupSource call and sink callback runs. The core calls
// a source's methods from inside its own; a source may answer inline (the
// memory backend) or later (Redis), in which case it calls Pump() after.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/broker/broker.h"
#include "server/broker/lease_table.h"
#include "server/broker/topic_policy.h"
#include "server/common/clock.h"
#include "server/event/dispatcher.h"
#include "server/flow/sink_guard.h"

namespace switchboard::broker {

class ConsumerGroup;
class ConsumerGroups;

// The most messages a group keeps waiting behind the message in progress
// of their ordering key. They hold no credit, so without a bound one busy key
// could make a group read its whole stream.
inline constexpr size_t kMaxBlockedMessages = 10000;

// A failed delivery due again: the message and the attempt it will be.
struct DueDelivery {
  std::string id;
  uint32_t attempt;
};

// The backend's side of one consumer group. Owned by its ConsumerGroup.
class GroupSource {
 public:
  virtual ~GroupSource() = default;

  // The group has free credits (ConsumerGroup::FreeCredits()): take the
  // due redeliveries (TakeDue() then Redelivered()) and read new messages
  // (Arrive()), as far as they go. Called only while the group has sessions.
  virtual void Fill(ConsumerGroup& group) = 0;

  // The group has no session here: what waits in it may go to other
  // replicas (TakeWaiting()), or stay.
  virtual void Idle(ConsumerGroup& group) = 0;

  // Message `id`, nacked, is due again only after `delay`. A source shared
  // by replicas records it, so that a replica taking the message over (this
  // one died) waits too.
  virtual void RecordDelay(ConsumerGroup& group, const std::string& id, absl::Duration delay) = 0;

  // Messages acked: they leave the group. The core forgot them already.
  virtual void Acknowledge(ConsumerGroup& group, std::vector<std::string> ids) = 0;

  // `message` used its last attempt (`attempts` of them): append it to the
  // dead-letter topic (DeadLetterOf), then let it leave the group. The core
  // forgot it already.
  virtual void DeadLetter(ConsumerGroup& group, std::shared_ptr<const Message> message,
                          uint32_t attempts) = 0;
};

// A dead-lettered copy of `message`, with the attributes that say where it
// came from and after how many attempts.
OutgoingMessage DeadLetterOf(const Message& message, uint32_t attempts);

// One consumer group on one topic, as this process sees it: its local
// sessions and every message it holds (leased, waiting for credit, or due
// for redelivery).
class ConsumerGroup {
 public:
  // Held messages by id: hashed, not ordered (every lease settles one by id).
  using HeldMessages = absl::flat_hash_map<std::string, std::shared_ptr<const Message>>;

  ConsumerGroup(ConsumerGroups& core, std::string topic, std::string name,
                const TopicPolicy& policy);

  ConsumerGroup(const ConsumerGroup&) = delete;
  ConsumerGroup& operator=(const ConsumerGroup&) = delete;

  const std::string& topic() const { return topic_; }
  const std::string& name() const { return name_; }
  const TopicPolicy& policy() const { return policy_; }
  GroupSource& source() { return *source_; }

  bool has_sessions() const { return !sessions_.empty(); }

  // The credits of every session together (their max_in_flight).
  uint32_t credits() const;

  // Credits the sessions have left, beyond the leases they hold, the
  // messages waiting for them, the redeliveries being taken back, and the
  // reads reserved by the source.
  uint32_t FreeCredits() const;

  // The source promises `count` credits to a read in flight (Reserve), and
  // gives them back when the read is over (Unreserve), before Arrive().
  void Reserve(uint32_t count) { reserved_ += count; }
  void Unreserve(uint32_t count) { reserved_ -= count; }

  // Whether the group holds message `id` (leased or waiting).
  bool holds(const std::string& id) const { return held_.count(id) > 0; }
  // Every message the group holds, by id, in no particular order.
  const HeldMessages& held() const { return held_; }

  // A message for the group: `attempt` 1 for a new one, more for one
  // delivered before (elsewhere), not to be handed out before `delay` has
  // passed (a nack's delay, recorded by the replica that took it). Past the
  // last attempt it is dead-lettered at once with `attempt` - 1 attempts.
  void Arrive(std::shared_ptr<const Message> message, uint32_t attempt,
              absl::Duration delay = absl::ZeroDuration());

  // Takes up to `count` due redeliveries, oldest first; each must come back
  // through Redelivered() (or Requeue()).
  std::vector<DueDelivery> TakeDue(size_t count);
  bool has_due() const { return !due_.empty(); }
  // A due redelivery was taken back (`present`), or is gone for good
  // (trimmed away, or its group lost).
  void Redelivered(const DueDelivery& due, bool present);
  // Redeliveries that could not be taken back now: due again, first.
  void Requeue(const std::vector<DueDelivery>& due);

  // Empties what waits for a session (new messages, redeliveries, due and
  // delayed ones, those behind their key) and forgets it. Returns their ids.
  std::vector<std::string> TakeWaiting();
  // The same for the messages whose id `which` selects.
  std::vector<std::string> TakeWaiting(absl::FunctionRef<bool(absl::string_view id)> which);

  // Whether the group holds a message whose id `which` selects.
  bool HoldsAny(absl::FunctionRef<bool(absl::string_view id)> which) const;

  // Leases this process's sessions of the group hold.
  size_t leases_in_flight() const;

  // Messages waiting behind the message in progress of their ordering key.
  size_t blocked() const { return blocked_count_; }

 private:
  friend class ConsumerGroups;

  // One local consume stream of the group.
  struct Session {
    uint64_t id;
    ConsumerGroup* group;
    uint32_t max_in_flight;
    absl::Duration ack_deadline;
    std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink;
  };

  struct Waiting {
    std::string id;
    uint32_t attempt;
  };

  // A nacked message waiting out its delay.
  struct Delayed {
    std::string id;
    uint32_t attempt;
    bool taken_back;  // Arrived delayed: handed out without taking it back.
  };

  // Hands waiting messages (redeliveries first) to the sessions with
  // credit, taking turns.
  void HandOut();
  // Message `id` leaves the group (acked, dead-lettered, gone): its
  // ordering key, if it was the key's message in progress, lets the next one
  // of the key go.
  void Forget(const std::string& id);
  // A delivery ended without an ack: due again (after `delay`), or
  // dead-lettered.
  void Fail(const Lease& lease, absl::Duration delay);
  // Waits `delay`, then is due (or, taken back already, waits for credit).
  void Delay(Delayed entry, absl::Duration delay);
  // The delays that are over: due or waiting for credit now.
  void EndDelays();

  ConsumerGroups& core_;
  const std::string topic_;
  const std::string name_;
  const TopicPolicy& policy_;
  std::unique_ptr<GroupSource> source_;
  std::vector<Session*> sessions_;  // In joining order; deliveries take turns.
  size_t next_turn_ = 0;
  HeldMessages held_;
  std::deque<Waiting> redelivered_;  // Taken back, waiting for credit.
  std::deque<Waiting> fresh_;        // Never delivered, waiting for credit.
  std::deque<DueDelivery> due_;      // To take back, then deliver.
  std::multimap<absl::Time, Delayed> delayed_;
  std::unique_ptr<event::Timer> delay_timer_;  // At the first end of delayed_.
  uint32_t redelivering_ = 0;                  // Taken by TakeDue(), not back yet.
  uint32_t reserved_ = 0;
  uint64_t arrived_ = 0;  // Messages that arrived or came back, ever.
  // By ordering key: the id of the key's message in progress, and the later
  // messages of the key, in publish order.
  absl::flat_hash_map<std::string, std::string> key_in_progress_;
  absl::flat_hash_map<std::string, std::deque<Waiting>> blocked_;
  size_t blocked_count_ = 0;
};

class ConsumerGroups {
 public:
  // Makes the source of a group the first time a session joins it.
  using SourceFactory = absl::AnyInvocable<std::unique_ptr<GroupSource>(ConsumerGroup& group)>;

  // Every reference must outlive this object.
  ConsumerGroups(event::Dispatcher& dispatcher, const TopicPolicies& policies,
                 BrokerObserver& observer, SourceFactory make_source);

  ConsumerGroups(const ConsumerGroups&) = delete;
  ConsumerGroups& operator=(const ConsumerGroups&) = delete;

  void AddSession(uint64_t id, ConsumeOptions options,
                  std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink);
  // Releases every lease the session holds: its messages go to the group's
  // other consumers now.
  void RemoveSession(uint64_t id);
  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done);
  // Ends every session with `status`.
  void CloseAll(const absl::Status& status);
  // Ends the sessions of `group` with `status`.
  void CloseSessions(ConsumerGroup& group, const absl::Status& status);
  // No source calls from now on (shutdown).
  void Stop() { stopped_ = true; }

  // Moves a group forward: hands out what waits, then asks its source to
  // fill the free credits (or, without sessions, tells it the group is
  // idle).
  void Pump(ConsumerGroup& group);

  bool has_sessions() const { return !sessions_.empty(); }

  // Every group a session ever joined, by (topic, group).
  std::map<std::pair<std::string, std::string>, ConsumerGroup>& groups() { return groups_; }

  // Reports every group's leases in flight to the observer.
  void ReportLeasesInFlight();

 private:
  friend class ConsumerGroup;

  ConsumerGroup& GetGroup(const std::string& topic, const std::string& name);
  // Ends a lease with an ack (`acked`), or a nack delayed by `delay` (zero:
  // the topic's retry_backoff).
  absl::Status EndLease(ConsumerGroup::Session& session, absl::string_view ack_id, bool acked,
                        absl::Duration delay, std::vector<std::string>& acked_ids);
  void OnLeaseExpired(Lease lease);

  event::Dispatcher& dispatcher_;
  common::Clock& clock_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  SourceFactory make_source_;
  bool stopped_ = false;
  // std::map keeps addresses stable: sessions point at their group.
  std::map<std::pair<std::string, std::string>, ConsumerGroup> groups_;
  std::map<uint64_t, ConsumerGroup::Session> sessions_;
  // Last: its expiry callback uses the members above.
  LeaseTable leases_;
};

}  // namespace switchboard::broker
