#include "server/broker/redis/stream_groups.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/redis/partitions.h"
#include "server/broker/redis/stream_commands.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {
namespace {

using Existence = GroupStream::Existence;
using Ownership = GroupStream::Ownership;

// An entry of `stream` as a message of its group: the topic's name, and for
// a partition an id that says which.
Message Adopt(const GroupStream& stream, Message message) {
  message.topic = stream.group.topic;
  if (stream.partition) message.id = PartitionedId(message.id, *stream.partition);
  return message;
}

size_t IndexOf(const GroupStream& stream) { return stream.partition ? *stream.partition + 1 : 0; }

}  // namespace

TopicGroup::TopicGroup(StreamGroups& owner, ConsumerGroup& core, size_t lane)
    : owner(owner),
      core(core),
      topic(core.topic()),
      group(core.name()),
      policy(core.policy()),
      lane(lane) {
  streams.emplace_back(*this, topic, std::nullopt);
  for (uint32_t p = 0; p < policy.ordering_partitions; ++p) {
    streams.emplace_back(*this, PartitionStream(topic, p), p);
  }
}

GroupStream* TopicGroup::StreamOf(absl::string_view id) {
  const SplitId split = SplitMessageId(id);
  if (!split.partition) return &own_stream();
  if (*split.partition >= partitions()) return nullptr;
  return &partition(*split.partition);
}

StreamGroups::StreamGroups(event::Dispatcher& dispatcher, common::Clock& io_clock,
                           std::string consumer, const TopicPolicies& policies,
                           BrokerObserver& observer, CommandLanes& lanes,
                           event::Anchor<ConnectionSet> connections,
                           BlockingReadOptions read_options, absl::Duration partition_ttl,
                           absl::Duration partition_margin)
    : io_clock_(io_clock),
      consumer_(std::move(consumer)),
      policies_(policies),
      observer_(observer),
      lanes_(lanes),
      reads_(dispatcher, std::move(connections), read_options, lanes, *this),
      owners_(*this, lanes, io_clock, partition_ttl, partition_margin),
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
  for (TopicGroup* topic_group : topic_groups_) owners_.Leave(*topic_group);
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
  // A group's first session here: ask for its share of the partitions now.
  if (topic_group.partitions() > 0 && !topic_group.member) owners_.Balance(topic_group);
  if (topic_group.core.has_due()) ClaimRedeliveries(topic_group);
  std::vector<GroupStream*> to_probe;
  bool drained = false;
  for (GroupStream& stream : topic_group.streams) {
    if (stream.ownership == Ownership::kNone || stream.ownership == Ownership::kReleasing) {
      continue;
    }
    if (stream.existence != Existence::kReady) {
      EnsureGroupExists(stream);
    } else if (stream.ownership == Ownership::kTakingOver) {
      Reclaim(stream, absl::ZeroDuration());
    } else if (!stream.drained) {
      if (!stream.probing) to_probe.push_back(&stream);
    } else {
      drained = true;
    }
  }
  if (!to_probe.empty()) Probe(topic_group, to_probe);
  if (drained) reads_.EnsureBlocking(topic_group.group);
}

void StreamGroups::Idle(TopicGroup& topic_group) {
  if (lanes_.shared_ready() && lanes_.ready(topic_group.lane)) ReleaseWaiting(topic_group);
  owners_.Leave(topic_group);
  reads_.ReleaseReaderIfIdle(topic_group.group);
}

// A group without local sessions gives back what this process holds for it
// (read or released entries waiting for a consumer): marked idle past the ack
// deadline, they are reclaimed by the next pass of any replica (of the
// partition's next owner), this one included, instead of waiting here for a
// local consumer.
void StreamGroups::ReleaseWaiting(TopicGroup& topic_group) {
  std::vector<std::string> ids = topic_group.core.TakeWaiting();
  if (ids.empty()) return;
  SendPerStream(
      topic_group, ids,
      [&](const GroupStream& stream, const std::vector<std::string>& entry_ids) {
        return ReleaseIdleCommand(stream.key, topic_group.group, consumer_, entry_ids,
                                  topic_group.policy.ack_deadline);
      },
      [this](GroupStream& stream, absl::StatusOr<Reply> reply) {
        if (IsNoGroup(reply)) OnGroupLost(stream);
      });
}

void StreamGroups::SendPerStream(
    TopicGroup& topic_group, const std::vector<std::string>& ids, PerStreamCommand make,
    absl::AnyInvocable<void(GroupStream&, absl::StatusOr<Reply>)> done) {
  std::map<size_t, std::vector<std::string>> by_stream;  // By index in topic_group.streams.
  for (const std::string& id : ids) {
    const GroupStream* stream = topic_group.StreamOf(id);
    if (stream == nullptr) continue;
    by_stream[IndexOf(*stream)].emplace_back(SplitMessageId(id).entry_id);
  }
  if (by_stream.empty()) return;
  std::vector<Command> commands;
  std::vector<GroupStream*> streams;
  for (const auto& [index, entry_ids] : by_stream) {
    GroupStream& stream = topic_group.streams[index];
    commands.push_back(make(stream, entry_ids));
    streams.push_back(&stream);
  }
  lanes_.Send(topic_group.lane, std::move(commands),
              [streams = std::move(streams), done = std::move(done)](Replies replies) mutable {
                for (size_t i = 0; i < streams.size(); ++i)
                  done(*streams[i], std::move(replies[i]));
              });
}

// An existing group (BUSYGROUP) is fine.
void StreamGroups::EnsureGroupExists(GroupStream& stream) {
  if (stream.existence != Existence::kUnknown) return;
  stream.existence = Existence::kCreating;
  TopicGroup& topic_group = stream.group;
  lanes_.Send(topic_group.lane, CreateGroupCommand(stream.key, topic_group.group),
              [this, &stream](absl::StatusOr<Reply> reply) {
                if (reply.ok() && (!reply->is_error() || HasErrorCode(reply->str, "BUSYGROUP"))) {
                  stream.existence = Existence::kReady;
                  stream.drained = false;
                  Kick(stream.group);
                  return;
                }
                const absl::Status error = reply.ok() ? reply->status() : reply.status();
                // UNAVAILABLE: retried when the connection is back. Anything
                // else: retried by the next maintenance pass.
                stream.existence = error.code() == absl::StatusCode::kUnavailable
                                       ? Existence::kUnknown
                                       : Existence::kFailed;
                if (stream.existence == Existence::kFailed) {
                  SB_LOG(kWarning, "cannot create consumer group '", stream.group.group, "' on '",
                         stream.key, "': ", error.message());
                }
              });
}

void StreamGroups::OnGroupLost(GroupStream& stream) {
  if (stream.existence != Existence::kReady) return;
  SB_LOG(kWarning, "consumer group '", stream.group.group, "' on '", stream.key,
         "' is gone from redis; creating it again");
  stream.existence = Existence::kUnknown;
  Kick(stream.group);
}

// One non-blocking XREADGROUP over `streams` for the group's free credits,
// shared out among them.
void StreamGroups::Probe(TopicGroup& topic_group, const std::vector<GroupStream*>& streams) {
  const uint32_t credits = topic_group.core.FreeCredits();
  if (credits == 0) return;
  const uint32_t count = (credits + streams.size() - 1) / streams.size();
  std::vector<absl::string_view> keys;
  for (GroupStream* stream : streams) {
    stream->probing = true;
    keys.push_back(stream->key);
  }
  topic_group.core.Reserve(credits);
  lanes_.Send(topic_group.lane,
              ReadGroupCommand(topic_group.group, consumer_, keys, count, std::nullopt),
              [this, &topic_group, streams, credits, count](absl::StatusOr<Reply> reply) {
                for (GroupStream* stream : streams) stream->probing = false;
                topic_group.core.Unreserve(credits);
                if (IsNoGroup(reply)) {
                  for (GroupStream* stream : streams) OnGroupLost(*stream);
                  return;
                }
                // Transport failures: reads resume when the connection is
                // back, or on the next maintenance pass.
                if (!reply.ok()) return;
                if (reply->is_error()) {
                  SB_LOG(kWarning, "reading group '", topic_group.group, "' of '",
                         topic_group.topic, "' failed: ", reply->str);
                  for (GroupStream* stream : streams) stream->existence = Existence::kFailed;
                  return;
                }
                const std::vector<size_t> read = TakeReadEntries(reply, streams);
                // Fewer than asked: nothing more is there for now.
                for (size_t i = 0; i < streams.size(); ++i) streams[i]->drained = read[i] < count;
                Kick(topic_group);
              });
}

std::vector<size_t> StreamGroups::TakeReadEntries(const absl::StatusOr<Reply>& reply,
                                                  const std::vector<GroupStream*>& streams) {
  std::vector<size_t> taken(streams.size(), 0);
  if (!reply.ok()) return taken;
  for (StreamEntries& entries : ReadGroupEntries(*reply)) {
    auto found = std::find_if(streams.begin(), streams.end(),
                              [&](const GroupStream* s) { return s->key == entries.topic; });
    if (found == streams.end()) continue;
    GroupStream& stream = **found;
    taken[found - streams.begin()] = entries.messages.size();
    // A partition given up meanwhile: its next owner takes these over.
    if (!stream.readable()) continue;
    for (Message& message : entries.messages) {
      stream.group.core.Arrive(std::make_shared<const Message>(Adopt(stream, std::move(message))),
                               /*attempt=*/1);
    }
  }
  return taken;
}

// XCLAIM to this process' consumer: Redis counts the delivery, and entries
// trimmed away meanwhile are not returned (they are gone for good).
void StreamGroups::ClaimRedeliveries(TopicGroup& topic_group) {
  auto due = std::make_shared<std::vector<DueDelivery>>(
      topic_group.core.TakeDue(topic_group.core.FreeCredits()));
  if (due->empty()) return;
  std::vector<std::string> ids;
  for (const DueDelivery& entry : *due) {
    if (topic_group.StreamOf(entry.id) == nullptr) {
      topic_group.core.Redelivered(entry, /*present=*/false);
    } else {
      ids.push_back(entry.id);
    }
  }
  SendPerStream(
      topic_group, ids,
      [&](const GroupStream& stream, const std::vector<std::string>& entry_ids) {
        return ClaimCommand(stream.key, topic_group.group, consumer_, entry_ids);
      },
      [this, &topic_group, due](GroupStream& stream, absl::StatusOr<Reply> reply) {
        std::vector<DueDelivery> of_stream;
        for (const DueDelivery& entry : *due) {
          if (topic_group.StreamOf(entry.id) == &stream) of_stream.push_back(entry);
        }
        if (!reply.ok() || reply->is_error()) {
          // A lost group took them with it; anything else: again later.
          if (IsNoGroup(reply)) {
            for (const DueDelivery& entry : of_stream) {
              topic_group.core.Redelivered(entry, /*present=*/false);
            }
            OnGroupLost(stream);
          } else {
            topic_group.core.Requeue(of_stream);
          }
          return;
        }
        const std::set<std::string> present = ClaimedIds(*reply);
        for (const DueDelivery& entry : of_stream) {
          const std::string entry_id(SplitMessageId(entry.id).entry_id);
          topic_group.core.Redelivered(entry, present.count(entry_id) > 0);
        }
        Kick(topic_group);
      });
}

// -- Reclaims -------------------------------------------------------------------

void StreamGroups::Reclaim(GroupStream& stream, absl::Duration min_idle) {
  TopicGroup& topic_group = stream.group;
  if (stream.existence != Existence::kReady || stream.reclaiming ||
      !topic_group.core.has_sessions()) {
    return;
  }
  const uint32_t count = topic_group.core.FreeCredits();
  if (count == 0) return;
  stream.reclaiming = true;
  topic_group.core.Reserve(count);
  lanes_.Send(topic_group.lane,
              AutoClaimCommand(stream.key, topic_group.group, consumer_, min_idle,
                               stream.reclaim_cursor, count),
              [this, &stream, count](absl::StatusOr<Reply> reply) {
                std::optional<AutoClaimed> claimed =
                    reply.ok() ? AutoClaimedEntries(*reply, stream.key) : std::nullopt;
                if (!claimed) {
                  if (IsNoGroup(reply)) OnGroupLost(stream);
                  EndReclaim(stream, count);
                  return;
                }
                stream.reclaim_cursor = std::move(claimed->cursor);
                std::vector<Message> reclaimed;
                // A partition given up meanwhile keeps them pending for its
                // next owner.
                if (stream.readable() || stream.ownership == Ownership::kTakingOver) {
                  for (Message& message : claimed->messages) {
                    Message adopted = Adopt(stream, std::move(message));
                    // Held here already: a refresh came late; keep the local lease.
                    if (!stream.group.core.holds(adopted.id)) {
                      reclaimed.push_back(std::move(adopted));
                    }
                  }
                }
                CountReclaimed(stream, count, std::move(reclaimed));
              });
}

// Looks up Redis' delivery count of each reclaimed entry, and the end of
// its nack delay if one was recorded, then hands them to the group.
void StreamGroups::CountReclaimed(GroupStream& stream, uint32_t reserved,
                                  std::vector<Message> reclaimed) {
  if (reclaimed.empty()) {
    EndReclaim(stream, reserved);
    return;
  }
  TopicGroup& topic_group = stream.group;
  std::vector<Command> commands;
  for (const Message& message : reclaimed) {
    commands.push_back(
        PendingEntryCommand(stream.key, topic_group.group, SplitMessageId(message.id).entry_id));
    commands.push_back(DelayEndCommand(topic_group.topic, topic_group.group, message.id));
  }
  lanes_.Send(
      topic_group.lane, std::move(commands),
      [this, &stream, reserved, reclaimed = std::move(reclaimed)](Replies replies) mutable {
        const absl::Time now = io_clock_.Now();
        for (size_t i = 0; i < reclaimed.size(); ++i) {
          const std::optional<uint32_t> attempt = PendingDeliveryCount(replies[2 * i]);
          if (!attempt) continue;  // Left pending: reclaimed again later.
          const std::optional<absl::Time> delay_end = DelayEnd(replies[2 * i + 1]);
          // Past the last attempt (used up on the process that died),
          // the core dead-letters it.
          stream.group.core.Arrive(
              std::make_shared<const Message>(std::move(reclaimed[i])), *attempt,
              delay_end ? std::max(*delay_end - now, absl::ZeroDuration()) : absl::ZeroDuration());
        }
        EndReclaim(stream, reserved);
      });
}

// The reclaim is over: its credits go back to reads and claims, which it may
// have held up meanwhile. A partition taken over whose pending entries have
// all been claimed (the cursor went round) is read from now on.
void StreamGroups::EndReclaim(GroupStream& stream, uint32_t reserved) {
  stream.reclaiming = false;
  stream.group.core.Unreserve(reserved);
  if (stream.ownership == Ownership::kTakingOver && stream.reclaim_cursor == "0-0") {
    stream.ownership = Ownership::kOwned;
    stream.drained = false;
  }
  Kick(stream.group);
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
  SendPerStream(
      topic_group, ids,
      [&](const GroupStream& stream, const std::vector<std::string>& entry_ids) {
        return AckCommand(stream.key, topic_group.group, entry_ids);
      },
      [](GroupStream&, absl::StatusOr<Reply>) {});
}

}  // namespace switchboard::broker::redis
