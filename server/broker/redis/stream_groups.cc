#include "server/broker/redis/stream_groups.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/redis/stream_commands.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {

StreamGroups::StreamGroups(event::Dispatcher& dispatcher, common::Clock& io_clock,
                           std::string consumer, const TopicPolicies& policies,
                           BrokerObserver& observer, CommandLanes& lanes,
                           event::Anchor<ConnectionSet> connections,
                           BlockingReadOptions read_options)
    : clock_(dispatcher.clock()),
      io_clock_(io_clock),
      consumer_(std::move(consumer)),
      policies_(policies),
      observer_(observer),
      lanes_(lanes),
      reads_(dispatcher, std::move(connections), read_options, lanes, *this),
      leases_(dispatcher, [this](Lease lease) { OnLeaseExpired(std::move(lease)); }) {}

// -- Sessions -----------------------------------------------------------------

void StreamGroups::AddSession(uint64_t id, ConsumeOptions options,
                              std::shared_ptr<SinkGuard<ConsumerSink>> sink) {
  TopicGroup& topic_group = GetTopicGroup(options.topic, options.group);
  const absl::Duration ack_deadline = options.ack_deadline > absl::ZeroDuration()
                                          ? options.ack_deadline
                                          : topic_group.policy.ack_deadline;
  Session& session = sessions_
                         .try_emplace(id, Session{id, &topic_group, options.max_in_flight,
                                                  ack_deadline, std::move(sink)})
                         .first->second;
  topic_group.sessions.push_back(&session);
  reads_.EnsureReader(topic_group.group);
  Kick(topic_group);
}

void StreamGroups::RemoveSession(uint64_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  TopicGroup& topic_group = *it->second.topic_group;
  std::vector<Session*>& members = topic_group.sessions;
  const size_t index = std::find(members.begin(), members.end(), &it->second) - members.begin();
  members.erase(members.begin() + index);
  if (index < topic_group.next_turn) --topic_group.next_turn;
  if (topic_group.next_turn >= members.size()) topic_group.next_turn = 0;
  for (const Lease& lease : leases_.ReleaseSession(id)) FailDelivery(topic_group, lease);
  sessions_.erase(it);
  Kick(topic_group);
  reads_.ReleaseReaderIfIdle(topic_group.group);
}

void StreamGroups::Settle(uint64_t id, const LeaseUpdate& update,
                          absl::AnyInvocable<void(LeaseUpdateResult)> done) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& session = it->second;
  TopicGroup& topic_group = *session.topic_group;
  LeaseUpdateResult result;
  std::vector<std::string> acked;
  for (const std::string& ack_id : update.acks) {
    absl::StatusOr<Lease> lease = leases_.Release(ack_id, id);
    result.acks.push_back(lease.status());
    if (!lease.ok()) continue;
    topic_group.owned.erase(lease->message_id);
    acked.push_back(std::move(lease->message_id));
  }
  for (const std::string& ack_id : update.nacks) {
    result.nacks.push_back(Fail(session, ack_id));
  }
  for (const LeaseUpdate::Extension& extension : update.extensions) {
    result.extensions.push_back(
        extension.deadline > absl::ZeroDuration()
            ? leases_.Extend(extension.ack_id, id, clock_.Now() + extension.deadline)
            : Fail(session, extension.ack_id));
  }
  if (!acked.empty()) Acknowledge(topic_group, acked);
  session.sink->Invoke([&](ConsumerSink&) { done(std::move(result)); });
  Kick(topic_group);
}

void StreamGroups::CloseAll(const absl::Status& status) {
  for (auto& [id, session] : sessions_) {
    session.sink->Invoke([&](ConsumerSink& sink) { sink.OnClosed(status); });
  }
}

void StreamGroups::OnLaneReady(size_t lane) {
  for (auto& [key, topic_group] : topic_groups_) {
    if (lane == kSharedLane || topic_group.lane == lane) Kick(topic_group);
  }
}

void StreamGroups::Stop() {
  stopped_ = true;
  reads_.Stop();
}

TopicGroup& StreamGroups::GetTopicGroup(const std::string& topic, const std::string& group) {
  auto key = std::make_pair(topic, group);
  auto it = topic_groups_.find(key);
  if (it != topic_groups_.end()) return it->second;
  const TopicPolicy& policy = policies_.Resolve(topic);
  TopicGroup& created =
      topic_groups_.try_emplace(key, topic, group, policy, lanes_.LaneOf(policy)).first->second;
  reads_.AddTopic(created);
  return created;
}

// -- Moving a group forward ---------------------------------------------------

uint32_t StreamGroups::FreeCredits(const TopicGroup& topic_group) const {
  int64_t free = 0;
  for (const Session* session : topic_group.sessions) {
    free += int64_t{session->max_in_flight} - int64_t(leases_.HeldBy(session->id));
  }
  free -= int64_t{topic_group.reserved} + int64_t(topic_group.ready.size());
  return free > 0 ? static_cast<uint32_t>(free) : 0;
}

void StreamGroups::Kick(TopicGroup& topic_group) {
  if (stopped_ || !lanes_.shared_ready() || !lanes_.ready(topic_group.lane)) return;
  if (topic_group.sessions.empty()) {
    ReleaseHeld(topic_group);
    return;
  }
  if (topic_group.existence != TopicGroup::Existence::kReady) {
    EnsureGroupExists(topic_group);
    return;
  }
  HandOutReady(topic_group);
  if (!topic_group.redeliveries.empty()) ClaimRedeliveries(topic_group);
  if (FreeCredits(topic_group) == 0) return;
  if (!topic_group.drained) {
    if (!topic_group.probing) Probe(topic_group);
    return;
  }
  reads_.EnsureBlocking(topic_group.group);
}

// A group without local sessions gives back what this process holds for it
// (read or released entries waiting for a consumer): marked idle past the ack
// deadline, they are reclaimed by the next pass of any replica, this one
// included, instead of waiting here for a local consumer.
void StreamGroups::ReleaseHeld(TopicGroup& topic_group) {
  std::vector<std::string> ids;
  for (const std::deque<Held>* held : {&topic_group.ready, &topic_group.redeliveries}) {
    for (const Held& entry : *held) ids.push_back(entry.id);
  }
  topic_group.ready.clear();
  topic_group.redeliveries.clear();
  if (ids.empty()) return;
  for (const std::string& id : ids) topic_group.owned.erase(id);
  lanes_.Send(topic_group.lane,
              ReleaseIdleCommand(topic_group.topic, topic_group.group, consumer_, ids,
                                 topic_group.policy.ack_deadline),
              [this, &topic_group](absl::StatusOr<Reply> reply) {
                if (IsNoGroup(reply)) OnGroupLost(topic_group);
              });
}

// An existing group (BUSYGROUP) is fine.
void StreamGroups::EnsureGroupExists(TopicGroup& topic_group) {
  if (topic_group.existence != TopicGroup::Existence::kUnknown) return;
  topic_group.existence = TopicGroup::Existence::kCreating;
  lanes_.Send(topic_group.lane, CreateGroupCommand(topic_group.topic, topic_group.group),
              [this, &topic_group](absl::StatusOr<Reply> reply) {
                if (reply.ok() && (!reply->is_error() || HasErrorCode(reply->str, "BUSYGROUP"))) {
                  topic_group.existence = TopicGroup::Existence::kReady;
                  topic_group.drained = false;
                  Kick(topic_group);
                  return;
                }
                const absl::Status error = reply.ok() ? reply->status() : reply.status();
                // UNAVAILABLE: retried when the connection is back. Anything
                // else: retried by the next maintenance pass.
                topic_group.existence = error.code() == absl::StatusCode::kUnavailable
                                            ? TopicGroup::Existence::kUnknown
                                            : TopicGroup::Existence::kFailed;
                if (topic_group.existence == TopicGroup::Existence::kFailed) {
                  SB_LOG(kWarning, "cannot create consumer group '", topic_group.group, "' on '",
                         topic_group.topic, "': ", error.message());
                }
              });
}

void StreamGroups::OnGroupLost(TopicGroup& topic_group) {
  if (topic_group.existence != TopicGroup::Existence::kReady) return;
  SB_LOG(kWarning, "consumer group '", topic_group.group, "' on '", topic_group.topic,
         "' is gone from redis; creating it again");
  topic_group.existence = TopicGroup::Existence::kUnknown;
  Kick(topic_group);
}

// A non-blocking XREADGROUP on the command connection for the group's free
// credits.
void StreamGroups::Probe(TopicGroup& topic_group) {
  const uint32_t count = FreeCredits(topic_group);
  topic_group.probing = true;
  topic_group.reserved += count;
  lanes_.Send(
      topic_group.lane,
      ReadGroupCommand(topic_group.group, consumer_, {topic_group.topic}, count, std::nullopt),
      [this, &topic_group, count](absl::StatusOr<Reply> reply) {
        topic_group.probing = false;
        topic_group.reserved -= count;
        if (IsNoGroup(reply)) {
          OnGroupLost(topic_group);
          return;
        }
        // Transport failures: reads resume when the connection is
        // back, or on the next maintenance pass.
        if (!reply.ok()) return;
        if (reply->is_error()) {
          SB_LOG(kWarning, "reading group '", topic_group.group, "' of '", topic_group.topic,
                 "' failed: ", reply->str);
          topic_group.existence = TopicGroup::Existence::kFailed;
          return;
        }
        const size_t read = TakeReadEntries(reply, {&topic_group})[0];
        // Fewer than asked: nothing more is there for now.
        topic_group.drained = read < count;
        Kick(topic_group);
      });
}

std::vector<size_t> StreamGroups::TakeReadEntries(const absl::StatusOr<Reply>& reply,
                                                  const std::vector<TopicGroup*>& topics) {
  std::vector<size_t> taken(topics.size(), 0);
  if (!reply.ok()) return taken;
  for (StreamEntries& stream : ReadGroupEntries(*reply)) {
    auto topic_group = std::find_if(topics.begin(), topics.end(),
                                    [&](const TopicGroup* t) { return t->topic == stream.topic; });
    if (topic_group == topics.end()) continue;
    for (Message& message : stream.messages) {
      Own(**topic_group, std::move(message), /*attempt=*/1);
      ++taken[topic_group - topics.begin()];
    }
  }
  return taken;
}

void StreamGroups::Own(TopicGroup& topic_group, Message message, uint32_t attempt) {
  std::string id = message.id;
  topic_group.owned[id] = std::make_shared<const Message>(std::move(message));
  topic_group.ready.push_back(Held{std::move(id), attempt});
}

// Hands waiting messages to the sessions with credit, taking turns.
void StreamGroups::HandOutReady(TopicGroup& topic_group) {
  const size_t members = topic_group.sessions.size();
  std::vector<std::vector<Delivery>> batches(members);
  const absl::Time now = clock_.Now();
  for (size_t without_credit = 0; without_credit < members && !topic_group.ready.empty();) {
    const size_t turn = topic_group.next_turn;
    topic_group.next_turn = (turn + 1) % members;
    const Session& session = *topic_group.sessions[turn];
    if (leases_.HeldBy(session.id) >= session.max_in_flight) {
      ++without_credit;
      continue;
    }
    without_credit = 0;
    Held held = std::move(topic_group.ready.front());
    topic_group.ready.pop_front();
    if (held.attempt > 1) observer_.OnRedelivered(topic_group.topic, topic_group.group);
    Delivery& delivery = batches[turn].emplace_back();
    delivery.ack_id =
        leases_.Grant(Lease{session.id, held.id, held.attempt, now + session.ack_deadline});
    delivery.message = *topic_group.owned.at(held.id);
    delivery.delivery_attempt = held.attempt;
  }
  for (size_t i = 0; i < members; ++i) {
    if (batches[i].empty()) continue;
    topic_group.sessions[i]->sink->Invoke(
        [&](ConsumerSink& sink) { sink.OnDeliveries(std::move(batches[i])); });
  }
}

// XCLAIM to this process' consumer: Redis counts the delivery, and entries
// trimmed away meanwhile are not returned (they are gone for good).
void StreamGroups::ClaimRedeliveries(TopicGroup& topic_group) {
  const size_t count = std::min<size_t>(FreeCredits(topic_group), topic_group.redeliveries.size());
  if (count == 0) return;
  std::vector<Held> claimed(topic_group.redeliveries.begin(),
                            topic_group.redeliveries.begin() + count);
  topic_group.redeliveries.erase(topic_group.redeliveries.begin(),
                                 topic_group.redeliveries.begin() + count);
  topic_group.reserved += count;
  std::vector<std::string> ids;
  for (const Held& held : claimed) ids.push_back(held.id);
  lanes_.Send(topic_group.lane, ClaimCommand(topic_group.topic, topic_group.group, consumer_, ids),
              [this, &topic_group, claimed = std::move(claimed)](absl::StatusOr<Reply> reply) {
                topic_group.reserved -= claimed.size();
                if (!reply.ok() || reply->is_error()) {
                  // Try again later; a lost group took them with it.
                  if (IsNoGroup(reply)) {
                    for (const Held& held : claimed) topic_group.owned.erase(held.id);
                    OnGroupLost(topic_group);
                    return;
                  }
                  topic_group.redeliveries.insert(topic_group.redeliveries.begin(), claimed.begin(),
                                                  claimed.end());
                  return;
                }
                const std::set<std::string> present = ClaimedIds(*reply);
                for (const Held& held : claimed) {
                  if (present.count(held.id) > 0) {
                    topic_group.ready.push_back(held);
                  } else {
                    topic_group.owned.erase(held.id);
                  }
                }
                Kick(topic_group);
              });
}

// -- Ends of deliveries ---------------------------------------------------------

absl::Status StreamGroups::Fail(Session& session, absl::string_view ack_id) {
  absl::StatusOr<Lease> lease = leases_.Release(ack_id, session.id);
  if (!lease.ok()) return lease.status();
  FailDelivery(*session.topic_group, *lease);
  return absl::OkStatus();
}

// A delivery ended without an ack (nack, expiry, release): redeliver it, or
// dead-letter it when it used the last attempt.
void StreamGroups::FailDelivery(TopicGroup& topic_group, const Lease& lease) {
  if (lease.delivery_attempt < topic_group.policy.max_delivery_attempts) {
    topic_group.redeliveries.push_back(Held{lease.message_id, lease.delivery_attempt + 1});
    return;
  }
  DeadLetter(topic_group, lease.message_id, lease.delivery_attempt);
}

void StreamGroups::DeadLetter(TopicGroup& topic_group, const std::string& id, uint32_t attempts) {
  auto owned = topic_group.owned.find(id);
  if (owned == topic_group.owned.end()) return;
  const Message& message = *owned->second;
  OutgoingMessage dead_letter = DeadLetterOf(message, attempts);
  const std::string dead_letter_id = DeadLetterId(message.publish_time, io_clock_.Now());
  topic_group.owned.erase(owned);
  AppendDeadLetter(topic_group, id, dead_letter_id, std::move(dead_letter));
}

void StreamGroups::AppendDeadLetter(TopicGroup& topic_group, const std::string& id,
                                    const std::string& dead_letter_id,
                                    OutgoingMessage dead_letter) {
  const std::string dead_letter_topic =
      absl::StrCat(topic_group.topic, topic_group.policy.dead_letter_suffix);
  Command command = StreamAppendCommand(
      dead_letter_topic, policies_.Resolve(dead_letter_topic).max_len, dead_letter_id, dead_letter);
  lanes_.Send(topic_group.lane, std::move(command),
              [this, &topic_group, id, dead_letter_id,
               dead_letter = std::move(dead_letter)](absl::StatusOr<Reply> reply) mutable {
                // The dead-letter stream is ahead of this host's clock: let Redis pick.
                if (reply.ok() && dead_letter_id != "*" && IsStaleIdError(*reply)) {
                  AppendDeadLetter(topic_group, id, "*", std::move(dead_letter));
                  return;
                }
                if (!reply.ok() || reply->is_error()) {
                  SB_LOG(kWarning, "cannot dead-letter ", id, " of '", topic_group.topic,
                         "': ", (reply.ok() ? reply->status() : reply.status()).message());
                  return;
                }
                observer_.OnDeadLettered(topic_group.topic, topic_group.group);
                Acknowledge(topic_group, {id});
              });
}

void StreamGroups::Acknowledge(TopicGroup& topic_group, const std::vector<std::string>& ids) {
  // An ack that fails leaves the entry pending, unrefreshed: it is reclaimed
  // and delivered again after the ack deadline (at-least-once).
  lanes_.Send(topic_group.lane, AckCommand(topic_group.topic, topic_group.group, ids),
              [](absl::StatusOr<Reply>) {});
}

void StreamGroups::OnLeaseExpired(Lease lease) {
  TopicGroup& topic_group = *sessions_.at(lease.session).topic_group;
  observer_.OnLeaseExpired(topic_group.topic, topic_group.group);
  FailDelivery(topic_group, lease);
  Kick(topic_group);
}

}  // namespace switchboard::broker::redis
