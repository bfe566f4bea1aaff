#include "server/broker/memory/memory_broker.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/broker/consumer_groups.h"
#include "server/broker/dedup_table.h"
#include "server/broker/memory/stream.h"
#include "server/broker/message_id.h"
#include "server/broker/state_gate.h"
#include "server/broker/subscriber_set.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"
#include "server/flow/sink_guard.h"

namespace switchboard::broker {
namespace {

using SubscriberGuard = flow::SinkGuard<SubscriberSink>;
using ConsumerGuard = flow::SinkGuard<ConsumerSink>;

// The most dedup ids remembered within their windows, all topics together
// (about 200 bytes each).
constexpr size_t kMaxDedupIds = 250000;

// How often each group's lag is reported (on the dispatcher's clock).
constexpr absl::Duration kSampleInterval = absl::Seconds(1);

}  // namespace

// Everything the broker knows, owned by the dispatcher thread.
class MemoryBroker::State {
 public:
  State(event::Dispatcher& dispatcher, const TopicPolicies& policies, BrokerObserver& observer,
        MemoryLimits limits)
      : clock_(dispatcher.clock()),
        policies_(policies),
        observer_(observer),
        limits_(limits),
        subscribers_(observer, [](const std::string&) {}),
        groups_(dispatcher, policies, observer,
                [this](ConsumerGroup& group) {
                  DurableTopic& topic = GetDurableTopic(group.topic());
                  topic.groups.push_back(&group);
                  return std::make_unique<StreamSource>(*this, topic.stream);
                }),
        sample_timer_(dispatcher.CreateTimer([this] { Sample(); })) {}

  void Publish(const std::string& topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) {
    if (policies_.Resolve(topic).kind == TopicKind::kEphemeral) {
      done(FanOut(topic, std::move(messages)));
      return;
    }
    done(AppendWithinLimits(topic, std::move(messages)));
  }

  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<SubscriberGuard> sink) {
    subscribers_.Add(id, std::move(pattern), policy, std::move(sink));
    subscribers_.Confirm(id);
    KeepSampling();
  }

  void RemoveSubscriber(uint64_t id) { subscribers_.Remove(id); }
  void SubscriberReady(uint64_t id) { subscribers_.Ready(id); }

  void AddSession(uint64_t id, ConsumeOptions options, std::shared_ptr<ConsumerGuard> sink) {
    if (absl::Status room = CheckRoomForTopic(options.topic); !room.ok()) {
      sink->Invoke([&](ConsumerSink& closed) { closed.OnClosed(room); });
      return;
    }
    KeepSampling();
    groups_.AddSession(id, std::move(options), std::move(sink));
  }

  void RemoveSession(uint64_t id) { groups_.RemoveSession(id); }

  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done) {
    groups_.Settle(id, update, std::move(done));
  }

  void CloseAll(const absl::Status& status) {
    subscribers_.CloseAll(status);
    groups_.CloseAll(status);
  }

 private:
  struct DurableTopic {
    explicit DurableTopic(const TopicPolicy& policy) : stream(policy.max_len, policy.max_bytes) {}

    memory::Stream stream;
    std::vector<ConsumerGroup*> groups;  // Every group reading it.
  };

  // A group's messages come from its topic's stream; acks and delays need
  // nothing more (one process), and waiting messages stay here while the
  // group has no consumer.
  class StreamSource final : public GroupSource {
   public:
    StreamSource(State& state, const memory::Stream& stream) : state_(state), cursor_(stream) {}

    void Fill(ConsumerGroup& group) override {
      for (const DueDelivery& due : group.TakeDue(group.FreeCredits())) {
        group.Redelivered(due, /*present=*/true);
      }
      for (uint32_t credits = group.FreeCredits(); credits > 0; --credits) {
        std::shared_ptr<const Message> message = cursor_.Next();
        if (message == nullptr) break;
        group.Arrive(std::move(message), /*attempt=*/1);
      }
    }
    void Idle(ConsumerGroup&) override {}
    void RecordDelay(ConsumerGroup&, const std::string&, absl::Duration) override {}
    void Acknowledge(ConsumerGroup&, std::vector<std::string>) override {}
    void DeadLetter(ConsumerGroup& group, std::shared_ptr<const Message> message,
                    uint32_t attempts) override {
      const std::string topic = absl::StrCat(group.topic(), group.policy().dead_letter_suffix);
      std::shared_ptr<const Message> dead_letter =
          state_.MakeMessage(topic, DeadLetterOf(*message, attempts));
      const uint64_t bytes = memory::RetainedBytes(*dead_letter);
      state_.observer_.OnDeadLettered(group.topic(), group.name());
      // Beyond the limits if need be: the broker holds the message already.
      state_.AppendDurable(topic, {std::move(dead_letter)}, {bytes});
    }

    uint64_t lag() const { return cursor_.lag(); }

   private:
    State& state_;
    memory::StreamCursor cursor_;
  };

  std::shared_ptr<const Message> MakeMessage(const std::string& topic, OutgoingMessage message) {
    const absl::Time now = clock_.Now();
    return std::make_shared<const Message>(
        Message{ids_.Next(now), topic, std::move(message.payload), std::move(message.attributes),
                now, std::move(message.ordering_key)});
  }

  DurableTopic& GetDurableTopic(const std::string& name) {
    auto it = durable_topics_.find(name);
    if (it != durable_topics_.end()) return it->second;
    return durable_topics_.try_emplace(name, policies_.Resolve(name)).first->second;
  }

  // RESOURCE_EXHAUSTED when `topic` would be a topic beyond limits.max_topics.
  absl::Status CheckRoomForTopic(const std::string& topic) {
    if (durable_topics_.count(topic) > 0 || durable_topics_.size() < limits_.max_topics) {
      return absl::OkStatus();
    }
    observer_.OnRetained(retained_bytes_, durable_topics_.size(), dedup_.size());
    return absl::ResourceExhaustedError(
        absl::StrCat("limits.max_topics: the memory broker holds ", durable_topics_.size(),
                     " durable topics, its limit; topic '", topic, "' is not created"));
  }

  // A publish: stored only if the topic exists or may be created, and the
  // broker's retained bytes stay within limits.max_memory_bytes once the
  // topic's own retention has trimmed. A message whose dedup_id was stored
  // within the topic's dedup window is answered with the first one's id and
  // not stored again (the same within the batch).
  absl::StatusOr<std::vector<std::string>> AppendWithinLimits(
      const std::string& topic_name, std::vector<OutgoingMessage> outgoing) {
    SB_RETURN_IF_ERROR(CheckRoomForTopic(topic_name));
    const TopicPolicy& policy = policies_.Resolve(topic_name);
    const absl::Time now = clock_.Now();
    // For each message: the id it is answered with when it is a duplicate,
    // else the index of the message it is stored as in `messages`.
    std::vector<std::optional<std::string>> duplicate_of(outgoing.size());
    std::vector<size_t> stored_as(outgoing.size(), 0);
    absl::flat_hash_map<std::string, size_t> batch_dedup_ids;  // To index in `messages`.
    std::vector<std::shared_ptr<const Message>> messages;
    std::vector<uint64_t> sizes;
    std::vector<std::string> dedup_ids;  // Of `messages`, to remember.
    uint64_t incoming = 0;
    for (size_t i = 0; i < outgoing.size(); ++i) {
      std::string dedup_id = std::move(outgoing[i].dedup_id);
      if (!dedup_id.empty()) {
        if (const std::string* first = dedup_.Find(topic_name, dedup_id, now)) {
          duplicate_of[i] = *first;
          continue;
        }
        auto [earlier, added] = batch_dedup_ids.try_emplace(dedup_id, messages.size());
        if (!added) {
          stored_as[i] = earlier->second;
          continue;
        }
      }
      stored_as[i] = messages.size();
      messages.push_back(MakeMessage(topic_name, std::move(outgoing[i])));
      sizes.push_back(memory::RetainedBytes(*messages.back()));
      dedup_ids.push_back(std::move(dedup_id));
      incoming += sizes.back();
    }
    if (!dedup_.HasRoomFor(batch_dedup_ids.size())) {
      return absl::ResourceExhaustedError(
          absl::StrCat("messages[].dedup_id: the memory broker remembers ", dedup_.size(),
                       " dedup ids within their windows, its limit of ", dedup_.max_entries()));
    }
    // A new topic's stream is made only to count: existing topics (every
    // publish but a topic's first) allocate nothing here.
    auto existing = durable_topics_.find(topic_name);
    const uint64_t after =
        existing != durable_topics_.end()
            ? retained_bytes_ - existing->second.stream.bytes() +
                  existing->second.stream.BytesAfterAppending(sizes)
            : retained_bytes_ +
                  memory::Stream(policy.max_len, policy.max_bytes).BytesAfterAppending(sizes);
    if (after > limits_.max_memory_bytes) {
      observer_.OnRetained(retained_bytes_, durable_topics_.size(), dedup_.size());
      return absl::ResourceExhaustedError(absl::StrCat(
          "limits.max_memory_bytes: the memory broker retains ", retained_bytes_,
          " bytes of its limit of ", limits_.max_memory_bytes, "; this publish of ", incoming,
          " bytes would go beyond it (consumers behind, or retention above the limit)"));
    }
    std::vector<std::string> stored_ids = AppendDurable(topic_name, std::move(messages), sizes);
    for (size_t m = 0; m < stored_ids.size(); ++m) {
      if (!dedup_ids[m].empty()) {
        dedup_.Remember(topic_name, dedup_ids[m], stored_ids[m], now + policy.dedup_window);
      }
    }
    std::vector<std::string> ids;
    ids.reserve(outgoing.size());
    for (size_t i = 0; i < outgoing.size(); ++i) {
      ids.push_back(duplicate_of[i] ? *duplicate_of[i] : stored_ids[stored_as[i]]);
    }
    return ids;
  }

  std::vector<std::string> AppendDurable(const std::string& topic_name,
                                         std::vector<std::shared_ptr<const Message>> messages,
                                         const std::vector<uint64_t>& sizes) {
    DurableTopic& topic = GetDurableTopic(topic_name);
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    retained_bytes_ -= topic.stream.bytes();
    for (size_t i = 0; i < messages.size(); ++i) {
      ids.push_back(messages[i]->id);
      topic.stream.Append(std::move(messages[i]), sizes[i]);
    }
    retained_bytes_ += topic.stream.bytes();
    observer_.OnRetained(retained_bytes_, durable_topics_.size(), dedup_.size());
    for (ConsumerGroup* group : topic.groups) groups_.Pump(*group);
    return ids;
  }

  std::vector<std::string> FanOut(const std::string& topic, std::vector<OutgoingMessage> messages) {
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (OutgoingMessage& outgoing : messages) {
      std::shared_ptr<const Message> message = MakeMessage(topic, std::move(outgoing));
      ids.push_back(message->id);
      subscribers_.Offer(message);
    }
    return ids;
  }

  void KeepSampling() {
    if (!sample_timer_->Enabled()) sample_timer_->Enable(kSampleInterval);
  }

  // Reports the lag of every group with a consumer, every group's leases in
  // flight and the subscriber buffers; rearms while there are consumers or
  // subscribers (so the sample after the last one left reports them gone).
  void Sample() {
    for (auto& [key, group] : groups_.groups()) {
      if (group.has_sessions()) {
        observer_.OnConsumerLag(key.first, key.second,
                                static_cast<StreamSource&>(group.source()).lag());
      }
    }
    groups_.ReportLeasesInFlight();
    subscribers_.ReportBufferFill();
    observer_.OnRetained(retained_bytes_, durable_topics_.size(), dedup_.size());
    if (groups_.has_sessions() || !subscribers_.empty()) sample_timer_->Enable(kSampleInterval);
  }

  common::Clock& clock_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  const MemoryLimits limits_;
  MessageIdGenerator ids_;
  uint64_t retained_bytes_ = 0;  // By every durable topic's stream.
  DedupTable dedup_{kMaxDedupIds};
  // std::map keeps addresses stable: sources read their topic's stream.
  std::map<std::string, DurableTopic> durable_topics_;
  SubscriberSet subscribers_;
  // After the topics: group sources read their streams.
  ConsumerGroups groups_;
  std::unique_ptr<event::Timer> sample_timer_;
};

MemoryBroker::MemoryBroker(event::Dispatcher& dispatcher, TopicPolicies policies,
                           BrokerObserver& observer, MemoryLimits limits)
    : dispatcher_(dispatcher),
      policies_(std::move(policies)),
      state_(std::make_unique<State>(dispatcher, policies_, observer, limits)),
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
