#include "server/broker/memory/memory_broker.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/broker/lease_table.h"
#include "server/broker/memory/stream.h"
#include "server/broker/message_id.h"
#include "server/broker/sink_guard.h"
#include "server/broker/state_gate.h"
#include "server/broker/subscriber_buffer.h"
#include "server/broker/subscriber_index.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"

namespace switchboard::broker {
namespace {

using SubscriberGuard = SinkGuard<SubscriberSink>;
using ConsumerGuard = SinkGuard<ConsumerSink>;

// How often each group's lag is reported (on the dispatcher's clock).
constexpr absl::Duration kSampleInterval = absl::Seconds(1);

}  // namespace

// Everything the broker knows, owned by the dispatcher thread.
class MemoryBroker::State {
 public:
  State(event::Dispatcher& dispatcher, const TopicPolicies& policies, BrokerObserver& observer)
      : clock_(dispatcher.clock()),
        policies_(policies),
        observer_(observer),
        leases_(dispatcher, [this](Lease lease) { OnLeaseExpired(std::move(lease)); }),
        sample_timer_(dispatcher.CreateTimer([this] { Sample(); })) {}

  void Publish(const std::string& topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) {
    std::vector<std::string> ids = policies_.Resolve(topic).kind == TopicKind::kDurable
                                       ? AppendDurable(topic, std::move(messages))
                                       : FanOut(topic, std::move(messages));
    done(std::move(ids));
  }

  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<SubscriberGuard> sink) {
    subscriber_index_.Add(pattern, id);
    Subscriber& subscriber =
        subscribers_
            .try_emplace(id, Subscriber{std::move(pattern),
                                        SubscriberBuffer(policy.subscriber_buffer, policy.overflow),
                                        std::move(sink)})
            .first->second;
    subscriber.sink->Invoke([](SubscriberSink& sink) { sink.OnSubscribed(); });
    KeepSampling();
  }

  void RemoveSubscriber(uint64_t id) {
    auto it = subscribers_.find(id);
    if (it != subscribers_.end()) EraseSubscriber(it);
  }

  void SubscriberReady(uint64_t id) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) return;
    if (std::optional<SubscriberBuffer::Handoff> next = it->second.buffer.Ready()) {
      HandOver(it->second, *next);
    }
  }

  void AddSession(uint64_t id, ConsumeOptions options, std::shared_ptr<ConsumerGuard> sink) {
    KeepSampling();
    DurableTopic& topic = GetDurableTopic(options.topic);
    Group& group =
        topic.groups.try_emplace(options.group, topic, topic.stream, options.group).first->second;
    const absl::Duration ack_deadline = options.ack_deadline > absl::ZeroDuration()
                                            ? options.ack_deadline
                                            : topic.policy.ack_deadline;
    Session& session = sessions_
                           .try_emplace(id, Session{id, &group, options.max_in_flight, ack_deadline,
                                                    std::move(sink)})
                           .first->second;
    group.sessions.push_back(&session);
    Pump(group);
  }

  // Releases every lease the session holds: its messages go to the group's
  // other consumers now.
  void RemoveSession(uint64_t id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    Group& group = *it->second.group;
    std::vector<Session*>& members = group.sessions;
    const size_t index = std::find(members.begin(), members.end(), &it->second) - members.begin();
    members.erase(members.begin() + index);
    if (index < group.next_turn) --group.next_turn;
    if (group.next_turn >= members.size()) group.next_turn = 0;
    for (const Lease& lease : leases_.ReleaseSession(id)) FailDelivery(group, lease);
    sessions_.erase(it);
    Pump(group);
  }

  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    Session& session = it->second;
    LeaseUpdateResult result;
    for (const std::string& ack_id : update.acks) {
      result.acks.push_back(EndLease(session, ack_id, LeaseEnd::kAcked));
    }
    for (const std::string& ack_id : update.nacks) {
      result.nacks.push_back(EndLease(session, ack_id, LeaseEnd::kFailed));
    }
    for (const LeaseUpdate::Extension& extension : update.extensions) {
      result.extensions.push_back(
          extension.deadline > absl::ZeroDuration()
              ? leases_.Extend(extension.ack_id, id, clock_.Now() + extension.deadline)
              : EndLease(session, extension.ack_id, LeaseEnd::kFailed));
    }
    session.sink->Invoke([&](ConsumerSink&) { done(std::move(result)); });
    Pump(*session.group);
  }

  void CloseAll(const absl::Status& status) {
    for (auto& [id, subscriber] : subscribers_) {
      subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(status); });
    }
    for (auto& [id, session] : sessions_) {
      session.sink->Invoke([&](ConsumerSink& sink) { sink.OnClosed(status); });
    }
  }

 private:
  struct DurableTopic;
  struct Session;

  struct Group {
    Group(DurableTopic& topic, const memory::Stream& stream, std::string name)
        : topic(topic), name(std::move(name)), progress(stream) {}

    DurableTopic& topic;
    const std::string name;
    memory::ConsumerGroup progress;
    std::vector<Session*> sessions;  // In joining order; deliveries take turns.
    size_t next_turn = 0;
  };

  struct DurableTopic {
    DurableTopic(std::string name, const TopicPolicy& policy)
        : name(std::move(name)), policy(policy), stream(policy.max_len) {}

    const std::string name;
    const TopicPolicy& policy;
    memory::Stream stream;
    std::map<std::string, Group> groups;
  };

  struct Session {
    uint64_t id;
    Group* group;
    uint32_t max_in_flight;
    absl::Duration ack_deadline;
    std::shared_ptr<ConsumerGuard> sink;
  };

  struct Subscriber {
    std::string pattern;
    SubscriberBuffer buffer;
    std::shared_ptr<SubscriberGuard> sink;
  };

  enum class LeaseEnd { kAcked, kFailed };

  std::shared_ptr<const Message> MakeMessage(const std::string& topic, OutgoingMessage message) {
    const absl::Time now = clock_.Now();
    return std::make_shared<const Message>(Message{
        ids_.Next(now), topic, std::move(message.payload), std::move(message.attributes), now});
  }

  DurableTopic& GetDurableTopic(const std::string& name) {
    auto it = durable_topics_.find(name);
    if (it != durable_topics_.end()) return it->second;
    return durable_topics_.try_emplace(name, name, policies_.Resolve(name)).first->second;
  }

  std::vector<std::string> AppendDurable(const std::string& topic_name,
                                         std::vector<OutgoingMessage> messages) {
    DurableTopic& topic = GetDurableTopic(topic_name);
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (OutgoingMessage& outgoing : messages) {
      std::shared_ptr<const Message> message = MakeMessage(topic_name, std::move(outgoing));
      ids.push_back(message->id);
      topic.stream.Append(std::move(message));
    }
    for (auto& [name, group] : topic.groups) Pump(group);
    return ids;
  }

  // Hands out messages to the group's sessions that have credit, taking turns,
  // until the credit or the messages run out.
  void Pump(Group& group) {
    const size_t members = group.sessions.size();
    std::vector<std::vector<Delivery>> batches(members);
    const absl::Time now = clock_.Now();
    for (size_t without_credit = 0; without_credit < members;) {
      const size_t turn = group.next_turn;
      group.next_turn = (turn + 1) % members;
      const Session& session = *group.sessions[turn];
      if (leases_.HeldBy(session.id) >= session.max_in_flight) {
        ++without_credit;
        continue;
      }
      std::optional<memory::ConsumerGroup::Claim> claim = group.progress.ClaimNext();
      if (!claim) break;
      without_credit = 0;
      if (claim->delivery_count > 1) observer_.OnRedelivered(group.topic.name, group.name);
      Delivery& delivery = batches[turn].emplace_back();
      delivery.ack_id = leases_.Grant(
          Lease{session.id, claim->message->id, claim->delivery_count, now + session.ack_deadline});
      delivery.message = *claim->message;
      delivery.delivery_attempt = claim->delivery_count;
    }
    for (size_t i = 0; i < members; ++i) {
      if (batches[i].empty()) continue;
      group.sessions[i]->sink->Invoke(
          [&](ConsumerSink& sink) { sink.OnDeliveries(std::move(batches[i])); });
    }
  }

  absl::Status EndLease(Session& session, absl::string_view ack_id, LeaseEnd end) {
    absl::StatusOr<Lease> lease = leases_.Release(ack_id, session.id);
    if (!lease.ok()) return lease.status();
    if (end == LeaseEnd::kAcked) {
      session.group->progress.Remove(lease->message_id);
    } else {
      FailDelivery(*session.group, *lease);
    }
    return absl::OkStatus();
  }

  // A delivery ended without an ack (nack, expiry, release): redeliver it, or
  // dead-letter it when it used the last attempt.
  void FailDelivery(Group& group, const Lease& lease) {
    const TopicPolicy& policy = group.topic.policy;
    if (lease.delivery_attempt < policy.max_delivery_attempts) {
      group.progress.Requeue(lease.message_id);
      return;
    }
    std::shared_ptr<const Message> message = group.progress.Remove(lease.message_id);
    std::vector<OutgoingMessage> dead_letter(1);
    dead_letter[0].payload = message->payload;
    dead_letter[0].attributes = message->attributes;
    dead_letter[0].attributes[kDeadLetterAttemptsAttribute] = absl::StrCat(lease.delivery_attempt);
    dead_letter[0].attributes[kDeadLetterOriginalIdAttribute] = message->id;
    dead_letter[0].attributes[kDeadLetterOriginalTopicAttribute] = message->topic;
    observer_.OnDeadLettered(group.topic.name, group.name);
    AppendDurable(absl::StrCat(group.topic.name, policy.dead_letter_suffix),
                  std::move(dead_letter));
  }

  void OnLeaseExpired(Lease lease) {
    Group& group = *sessions_.at(lease.session).group;
    observer_.OnLeaseExpired(group.topic.name, group.name);
    FailDelivery(group, lease);
    Pump(group);
  }

  std::vector<std::string> FanOut(const std::string& topic, std::vector<OutgoingMessage> messages) {
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (OutgoingMessage& outgoing : messages) {
      std::shared_ptr<const Message> message = MakeMessage(topic, std::move(outgoing));
      ids.push_back(message->id);
      for (uint64_t id : subscriber_index_.Match(topic)) Offer(subscribers_.find(id), message);
    }
    return ids;
  }

  void Offer(std::map<uint64_t, Subscriber>::iterator it,
             const std::shared_ptr<const Message>& message) {
    Subscriber& subscriber = it->second;
    SubscriberBuffer::PushResult pushed = subscriber.buffer.Push(message);
    if (pushed.dropped > 0) observer_.OnSubscriberDropped(message->topic, pushed.dropped);
    if (pushed.disconnect) {
      const absl::Status overflow = absl::ResourceExhaustedError(
          absl::StrCat("subscriber buffer of ", subscriber.buffer.capacity(),
                       " messages overflowed on topic '", message->topic, "'"));
      subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(overflow); });
      EraseSubscriber(it);
    } else if (pushed.handoff) {
      HandOver(subscriber, *pushed.handoff);
    }
  }

  void KeepSampling() {
    if (!sample_timer_->Enabled()) sample_timer_->Enable(kSampleInterval);
  }

  // Reports the lag of every group with a consumer, every group's leases in
  // flight and the subscriber buffers; rearms while there are consumers or
  // subscribers (so the sample after the last one left reports them gone).
  void Sample() {
    for (const auto& [name, topic] : durable_topics_) {
      for (const auto& [group_name, group] : topic.groups) {
        if (!group.sessions.empty()) {
          observer_.OnConsumerLag(name, group_name, group.progress.lag());
        }
        observer_.OnLeasesInFlight(name, group_name, leases_.HeldByAll(group.sessions));
      }
    }
    observer_.OnSubscriberBufferFill(FullestBufferByPattern(subscribers_));
    if (!sessions_.empty() || !subscribers_.empty()) sample_timer_->Enable(kSampleInterval);
  }

  static void HandOver(Subscriber& subscriber, const SubscriberBuffer::Handoff& handoff) {
    subscriber.sink->Invoke([&](SubscriberSink& sink) {
      sink.OnMessage(*handoff.message, handoff.dropped_since_last);
    });
  }

  void EraseSubscriber(std::map<uint64_t, Subscriber>::iterator it) {
    subscriber_index_.Remove(it->second.pattern, it->first);
    subscribers_.erase(it);
  }

  common::Clock& clock_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  MessageIdGenerator ids_;
  // std::map keeps addresses stable: groups point at their topic, sessions at
  // their group.
  std::map<std::string, DurableTopic> durable_topics_;
  std::map<uint64_t, Session> sessions_;
  std::map<uint64_t, Subscriber> subscribers_;
  SubscriberIndex subscriber_index_;
  // Last: their callbacks use the members above.
  LeaseTable leases_;
  std::unique_ptr<event::Timer> sample_timer_;
};

MemoryBroker::MemoryBroker(event::Dispatcher& dispatcher, TopicPolicies policies,
                           BrokerObserver& observer)
    : dispatcher_(dispatcher),
      policies_(std::move(policies)),
      state_(std::make_unique<State>(dispatcher, policies_, observer)),
      gate_(dispatcher, state_.get(), absl::UnavailableError("the memory broker is shut down")) {}

MemoryBroker::~MemoryBroker() { Shutdown(); }

void MemoryBroker::Publish(std::string topic, std::vector<OutgoingMessage> messages,
                           PublishCallback done) {
  gate_.Publish(std::move(topic), std::move(messages), std::move(done));
}

absl::StatusOr<std::unique_ptr<Subscription>> MemoryBroker::Subscribe(absl::string_view topic,
                                                                      SubscriberSink& sink) {
  SB_ASSIGN_OR_RETURN(const TopicPolicy* policy, policies_.ResolveSubscribable(topic));
  return gate_.Subscribe(std::string(topic), *policy, sink);
}

absl::StatusOr<std::unique_ptr<ConsumerSession>> MemoryBroker::Consume(ConsumeOptions options,
                                                                       ConsumerSink& sink) {
  SB_RETURN_IF_ERROR(policies_.CheckConsumable(options.topic));
  return gate_.Consume(std::move(options), sink);
}

void MemoryBroker::WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) {
  gate_.Post([watcher = std::move(watcher)](State* state) mutable { watcher(state != nullptr); });
}

void MemoryBroker::Shutdown() {
  if (!gate_.Close()) return;
  // Runs after every closure posted while the gate was open.
  absl::Notification stopped;
  dispatcher_.Post([this, &stopped] {
    state_->CloseAll(gate_.shut_down_error());
    state_.reset();
    stopped.Notify();
  });
  stopped.WaitForNotification();
}

}  // namespace switchboard::broker
