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
    : io_clock_(io_clock),
      consumer_(std::move(consumer)),
      policies_(policies),
      observer_(observer),
      lanes_(lanes),
      reads_(dispatcher, std::move(connections), read_options, lanes, *this),
      core_(dispatcher, policies, observer,
            [this](ConsumerGroup& group) { return MakeTopicGroup(group); }) {}

// -- For RedisBroker -------------------------------------------------------------

void StreamGroups::OnLaneReady(size_t lane) {
  for (TopicGroup* topic_group : topic_groups_) {
    if (lane == kSharedLane || topic_group->lane == lane) Kick(*topic_group);
  }
}

void StreamGroups::Stop() {
  core_.Stop();
  reads_.Stop();
}

std::unique_ptr<GroupSource> StreamGroups::MakeTopicGroup(ConsumerGroup& group) {
  auto topic_group = std::make_unique<TopicGroup>(*this, group, lanes_.LaneOf(group.policy()));
  topic_groups_.push_back(topic_group.get());
  reads_.AddTopic(*topic_group);
  return topic_group;
}

// -- The core's source ----------------------------------------------------------

void TopicGroup::Fill(ConsumerGroup&) { owner.Fill(*this); }
void TopicGroup::Idle(ConsumerGroup&) { owner.Idle(*this); }
void TopicGroup::RecordDelay(ConsumerGroup&, const std::string& id, absl::Duration delay) {
  owner.RecordDelay(*this, id, delay);
}
void TopicGroup::Acknowledge(ConsumerGroup&, std::vector<std::string> ids) {
  owner.Acknowledge(*this, ids);
}
void TopicGroup::DeadLetter(ConsumerGroup&, std::shared_ptr<const Message> message,
                            uint32_t attempts) {
  owner.DeadLetter(*this, *message, attempts);
}

void StreamGroups::Fill(TopicGroup& topic_group) {
  reads_.EnsureReader(topic_group.group);
  if (!lanes_.shared_ready() || !lanes_.ready(topic_group.lane)) return;
  if (topic_group.existence != TopicGroup::Existence::kReady) {
    EnsureGroupExists(topic_group);
    return;
  }
  if (topic_group.core.has_due()) ClaimRedeliveries(topic_group);
  if (topic_group.core.FreeCredits() == 0) return;
  if (!topic_group.drained) {
    if (!topic_group.probing) Probe(topic_group);
    return;
  }
  reads_.EnsureBlocking(topic_group.group);
}

void StreamGroups::Idle(TopicGroup& topic_group) {
  if (lanes_.shared_ready() && lanes_.ready(topic_group.lane)) ReleaseWaiting(topic_group);
  reads_.ReleaseReaderIfIdle(topic_group.group);
}

// A group without local sessions gives back what this process holds for it
// (read or released entries waiting for a consumer): marked idle past the ack
// deadline, they are reclaimed by the next pass of any replica, this one
// included, instead of waiting here for a local consumer.
void StreamGroups::ReleaseWaiting(TopicGroup& topic_group) {
  std::vector<std::string> ids = topic_group.core.TakeWaiting();
  if (ids.empty()) return;
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
  const uint32_t count = topic_group.core.FreeCredits();
  topic_group.probing = true;
  topic_group.core.Reserve(count);
  lanes_.Send(
      topic_group.lane,
      ReadGroupCommand(topic_group.group, consumer_, {topic_group.topic}, count, std::nullopt),
      [this, &topic_group, count](absl::StatusOr<Reply> reply) {
        topic_group.probing = false;
        topic_group.core.Unreserve(count);
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
      (*topic_group)
          ->core.Arrive(std::make_shared<const Message>(std::move(message)),
                        /*attempt=*/1);
      ++taken[topic_group - topics.begin()];
    }
  }
  return taken;
}

// XCLAIM to this process' consumer: Redis counts the delivery, and entries
// trimmed away meanwhile are not returned (they are gone for good).
void StreamGroups::ClaimRedeliveries(TopicGroup& topic_group) {
  std::vector<DueDelivery> due = topic_group.core.TakeDue(topic_group.core.FreeCredits());
  if (due.empty()) return;
  std::vector<std::string> ids;
  for (const DueDelivery& entry : due) ids.push_back(entry.id);
  lanes_.Send(topic_group.lane, ClaimCommand(topic_group.topic, topic_group.group, consumer_, ids),
              [this, &topic_group, due = std::move(due)](absl::StatusOr<Reply> reply) {
                if (!reply.ok() || reply->is_error()) {
                  // A lost group took them with it; anything else: again later.
                  const bool lost = IsNoGroup(reply);
                  if (lost) {
                    for (const DueDelivery& entry : due) {
                      topic_group.core.Redelivered(entry, /*present=*/false);
                    }
                    OnGroupLost(topic_group);
                  } else {
                    topic_group.core.Requeue(due);
                  }
                  return;
                }
                const std::set<std::string> present = ClaimedIds(*reply);
                for (const DueDelivery& entry : due) {
                  topic_group.core.Redelivered(entry, present.count(entry.id) > 0);
                }
                Kick(topic_group);
              });
}

// -- Ends of deliveries ---------------------------------------------------------

void StreamGroups::DeadLetter(TopicGroup& topic_group, const Message& message, uint32_t attempts) {
  AppendDeadLetter(topic_group, message.id, DeadLetterId(message.publish_time, io_clock_.Now()),
                   DeadLetterOf(message, attempts));
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

// If the command fails, a replica that takes the entry over delivers it
// without waiting; this one still waits.
void StreamGroups::RecordDelay(TopicGroup& topic_group, const std::string& id,
                               absl::Duration delay) {
  topic_group.delays_recorded = true;
  lanes_.Send(topic_group.lane,
              RecordDelayCommand(topic_group.topic, topic_group.group, id, io_clock_.Now() + delay),
              [](absl::StatusOr<Reply>) {});
}

void StreamGroups::Acknowledge(TopicGroup& topic_group, const std::vector<std::string>& ids) {
  lanes_.Send(topic_group.lane, AckCommand(topic_group.topic, topic_group.group, ids),
              [](absl::StatusOr<Reply>) {});
}

}  // namespace switchboard::broker::redis
